package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/necrostack/necro/internal/jaegertest"
)

// otelEnv is the environment that makes a necro-actors process export its spans to j,
// under the name service, sampling ratio of the traces it starts and following the
// parent's decision in the others.
func otelEnv(j *jaegertest.Server, service string, ratio float64) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + j.OTLPHTTPEndpoint(),
		"OTEL_TRACES_SAMPLER=parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG=" + strconv.FormatFloat(ratio, 'g', -1, 64),
		"OTEL_SERVICE_NAME=" + service,
	}
}

// A traceCount is what Jaeger holds of one run: the traces that begin with the handling
// of a root, and how many of them have every span they should.
type traceCount struct {
	Found    int
	Complete int
	Expected float64 // the traces the run started times the sampling ratio
}

// A traceShape is what the traces of a workload look like. A root carries no trace
// context, so its trace is the one its id names (telemetry.IDGenerator, which Setup
// installs): one trace per root, holding A's, B's and C's spans in the chain, and the
// four organs' spans in the fanout.
type traceShape struct {
	rootOp  string // the name of the span of a root's handling
	perRoot int    // traces a root starts
	spans   int    // process spans in each
}

func shapeOf(workload string) traceShape {
	if workload == "fanout" {
		return traceShape{rootOp: "process x", perRoot: 1, spans: 4}
	}
	return traceShape{rootOp: "process a", perRoot: 1, spans: 3}
}

// traceWait bounds the wait for a run's spans to settle in Jaeger; settleEvery is how
// often the count is read until two readings agree.
const (
	traceWait   = 15 * time.Second
	settleEvery = 500 * time.Millisecond
)

// countTraces counts the traces of service that begin with the handling of a root of
// the given shape. The process has flushed its spans on exit, and Jaeger stores them
// after its batch timeout, so the count is read until it stops changing.
func countTraces(ctx context.Context, j *jaegertest.Server, service string, shape traceShape) (traceCount, error) {
	ctx, cancel := context.WithTimeout(ctx, traceWait)
	defer cancel()
	last := traceCount{Found: -1}
	for {
		traces, err := j.TracesWith(ctx, service, shape.rootOp, 0)
		if err != nil && ctx.Err() == nil {
			return traceCount{}, err
		}
		var tc traceCount
		if err == nil {
			tc.Found = len(traces)
			for _, t := range traces {
				n := 0
				for _, sp := range t.Spans {
					if strings.HasPrefix(sp.OperationName, "process ") {
						n++
					}
				}
				if n == shape.spans {
					tc.Complete++
				}
			}
		}
		if err == nil && tc == last {
			return tc, nil
		}
		last = tc
		select {
		case <-ctx.Done():
			return last, nil // still changing when the wait ended: report the last reading
		case <-time.After(settleEvery):
		}
	}
}
