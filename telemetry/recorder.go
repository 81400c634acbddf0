package telemetry

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation is the name the Recorder's tracer and meter carry.
const instrumentationName = "github.com/necrostack/necro"

// Config says where a [Recorder] sends what it records. The zero value uses otel's
// global providers, as they are when [New] is called.
type Config struct {
	// TracerProvider makes the spans; nil means otel.GetTracerProvider(). A provider
	// whose spans are all no-ops (otel's default) turns tracing off.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the instruments; nil means otel.GetMeterProvider(). A
	// provider whose instruments are all disabled (otel's default) turns metrics off.
	MeterProvider metric.MeterProvider
	// CorrelationExemplars records each handling's correlation id, as the attribute
	// correlation_id, with the handler duration and latency measurements, for the
	// exemplars to carry beside the trace and span ids (the short key keeps an
	// OpenMetrics exemplar within its 128 runes). Set it only when MeterProvider has
	// the [MetricViews], which keep the id out of the series' attributes; otherwise
	// every flow would make a series.
	CorrelationExemplars bool
}

// A Destination names the queue a flow goes through, for the messaging attributes of
// spans and metrics.
type Destination struct {
	System string // messaging.system: "redis", "memory"
	Name   string // messaging.destination.name: the stream or queue name
	Group  string // messaging.consumer.group.name; empty when the store has none
}

// A Recorder records traces and metrics for the Spine, the organ actors and producers.
// A nil *Recorder records nothing, at no cost. A Recorder is safe for concurrent use,
// and one Recorder may serve several Spines.
type Recorder struct {
	tracer trace.Tracer             // nil: tracing off
	prop   propagation.TraceContext // reads the W3C headers in event metadata
	meter  metric.Meter
	inst   *instruments // nil: metrics off
	// correlate adds the correlation id to histogram measurements, for exemplars.
	correlate bool

	organs sync.Map // organ name → metric.MeasurementOption with its attribute set
	names  sync.Map // event type → its process span name
}

// New returns a Recorder for cfg's providers. It returns a nil Recorder, which records
// nothing, when both providers are no-ops, and an error when an instrument cannot be
// made.
func New(cfg Config) (*Recorder, error) {
	tp, mp := cfg.TracerProvider, cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	r := &Recorder{prop: propagation.TraceContext{}, correlate: cfg.CorrelationExemplars}
	if t := tp.Tracer(instrumentationName); records(t) {
		r.tracer = t
	}
	r.meter = mp.Meter(instrumentationName)
	inst, err := newInstruments(r.meter)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if inst.enabled() {
		r.inst = inst
	}
	if r.tracer == nil && r.inst == nil {
		return nil, nil
	}
	return r, nil
}

// records reports whether t makes real spans. A no-op tracer's span has no context of
// its own: it carries its parent's, or none. A real one gets a new span id, sampled or
// not. The probe span starts under an unsampled remote parent, so a parent-based
// sampler drops it, and it is never ended, so no processor exports it.
func records(t trace.Tracer) bool {
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true,
	})
	_, span := t.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "necro.probe")
	sc := span.SpanContext()
	return sc.IsValid() && sc.SpanID() != parent.SpanID()
}

// Tracing reports whether r records spans.
func (r *Recorder) Tracing() bool { return r != nil && r.tracer != nil }

// Metering reports whether r records metrics.
func (r *Recorder) Metering() bool { return r != nil && r.inst != nil }

func (d *Destination) attrs(kv []attribute.KeyValue) []attribute.KeyValue {
	if d.System != "" {
		kv = append(kv, attribute.String(attrSystem, d.System))
	}
	if d.Name != "" {
		kv = append(kv, attribute.String(attrDestination, d.Name))
	}
	if d.Group != "" {
		kv = append(kv, attribute.String(attrGroup, d.Group))
	}
	return kv
}

func (d *Destination) name() string {
	if d.Name != "" {
		return d.Name
	}
	return "necro"
}
