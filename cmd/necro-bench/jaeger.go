package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// jaegerStartTimeout bounds a Jaeger's start; a cold start takes a few seconds.
const jaegerStartTimeout = 60 * time.Second

// A jaegerProc is the suite's Jaeger: in-memory storage, OTLP over HTTP in, the query
// API out, both on free loopback ports and nothing else listening. (internal/jaegertest
// runs the same for tests, but needs a testing.TB.)
type jaegerProc struct {
	otlpPort, queryPort int
	cmd                 *exec.Cmd
	done                chan struct{} // closed when the process has exited
	log                 string
	http                *http.Client
}

// jaegerConfig is Jaeger v2's configuration: an OpenTelemetry Collector's with the
// jaeger_storage and jaeger_query extensions. The collector's own metrics and the query
// service's self-tracing are off, so that nothing binds a default port; the gRPC
// listeners, which the suite does not use, take port 0.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
extensions:
  jaeger_storage:
    backends:
      memstore: {memory: {max_traces: 500000}}
  jaeger_query:
    enable_tracing: false
    storage: {traces: memstore}
    http: {endpoint: "127.0.0.1:%d"}
    grpc: {endpoint: "127.0.0.1:0"}
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:%d"}
processors:
  batch: {timeout: 100ms}
exporters:
  jaeger_storage_exporter: {trace_storage: memstore}
`

// startJaeger runs bin with its configuration and log in dir, and returns once the
// query API answers and the OTLP receiver accepts connections.
func startJaeger(ctx context.Context, bin, dir string) (*jaegerProc, error) {
	// Two listeners open at once give two distinct free ports; they are closed before
	// Jaeger binds them. Another process could take one meanwhile; Jaeger then fails to
	// start and says so.
	var ports [2]int
	var lns [2]net.Listener
	for i := range lns {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns[:i] {
				_ = l.Close() // the error below is the one to report
			}
			return nil, fmt.Errorf("jaeger: find a free port: %w", err)
		}
		lns[i], ports[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range lns {
		_ = l.Close() // only the port number was wanted
	}
	j := &jaegerProc{otlpPort: ports[0], queryPort: ports[1], log: filepath.Join(dir, "jaeger.log"), http: &http.Client{}}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, j.queryPort, j.otlpPort), 0o600); err != nil {
		return nil, err
	}
	out, err := os.Create(j.log)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	j.cmd = exec.Command(bin, "--config", cfg)
	j.cmd.Stdout, j.cmd.Stderr = out, out
	dieWithParent(j.cmd)
	if err := j.cmd.Start(); err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	j.done = make(chan struct{})
	go func() {
		_ = j.cmd.Wait() // a stopped Jaeger's exit status says nothing new
		close(j.done)
	}()
	deadline := time.Now().Add(jaegerStartTimeout)
	for {
		err := j.ready(ctx)
		if err == nil {
			return j, nil
		}
		select {
		case <-j.done:
			return nil, fmt.Errorf("jaeger exited at start:\n%s", j.logTail())
		case <-ctx.Done():
			j.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			j.stop()
			return nil, fmt.Errorf("jaeger not ready within %s: %w\n%s", jaegerStartTimeout, err, j.logTail())
		}
	}
}

// ready reports why Jaeger cannot take spans and queries yet, or nil once it can.
func (j *jaegerProc) ready(ctx context.Context) error {
	conn, err := net.DialTimeout("tcp", hostPort(j.otlpPort), time.Second)
	if err != nil {
		return err
	}
	_ = conn.Close() // only the accept mattered
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var services []string
	return j.get(ctx, "/api/services", nil, &services)
}

// stop ends Jaeger: SIGTERM, then SIGKILL after 5s.
func (j *jaegerProc) stop() {
	j.http.CloseIdleConnections()
	_ = j.cmd.Process.Signal(syscall.SIGTERM) // it may have exited already
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
		_ = j.cmd.Process.Kill()
		<-j.done
	}
}

func (j *jaegerProc) logTail() string {
	b, err := os.ReadFile(j.log)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return lastLines(string(b), 20)
}

// otelEnv is the environment that makes a necro-actors process export its spans here,
// under the name service, sampling ratio of the traces it starts and following the
// parent's decision in the others.
func (j *jaegerProc) otelEnv(service string, ratio float64) []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + hostPort(j.otlpPort),
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
func (j *jaegerProc) countTraces(ctx context.Context, service string, shape traceShape) (traceCount, error) {
	ctx, cancel := context.WithTimeout(ctx, traceWait)
	defer cancel()
	last := traceCount{Found: -1}
	for {
		var traces []struct {
			Spans []struct {
				OperationName string `json:"operationName"`
			} `json:"spans"`
		}
		q := url.Values{"service": {service}, "operation": {shape.rootOp}, "limit": {"500000"},
			"start": {"0"}, "end": {strconv.FormatInt(time.Now().Add(time.Hour).UnixMicro(), 10)}}
		err := j.get(ctx, "/api/traces", q, &traces)
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

// get reads the query API's answer to path into data.
func (j *jaegerProc) get(ctx context.Context, path string, query url.Values, data any) error {
	u := "http://" + hostPort(j.queryPort) + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := j.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("jaeger GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaeger GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	answer := struct {
		Data   any `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}{Data: data}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("jaeger GET %s: %w", path, err)
	}
	if len(answer.Errors) > 0 {
		return fmt.Errorf("jaeger GET %s: %s", path, answer.Errors[0].Msg)
	}
	return nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
