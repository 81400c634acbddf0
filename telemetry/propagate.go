package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro"
)

// carrier lets a propagator read and write a necro.TraceContext as headers.
type carrier struct{ tc *necro.TraceContext }

func (c carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.tc.Parent
	case "tracestate":
		return c.tc.State
	}
	return ""
}

func (c carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.tc.Parent = value
	case "tracestate":
		c.tc.State = value
	}
}

func (c carrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// TraceContextOf returns the trace context of ctx's current span, in W3C form; it is
// zero when ctx holds no valid span context or r does not trace.
func (r *Recorder) TraceContextOf(ctx context.Context) necro.TraceContext {
	if !r.Tracing() {
		return necro.TraceContext{}
	}
	return formatTraceContext(trace.SpanContextFromContext(ctx)) // zero for an invalid context
}

// Inject returns ev created in ctx's current span, for a program that enqueues events
// itself inside a span of its own: their handling then joins that span's trace. An
// event that already has a trace context, or a ctx without a span, gives ev unchanged.
func (r *Recorder) Inject(ctx context.Context, ev necro.Event) necro.Event {
	if !ev.TraceContext().IsZero() {
		return ev
	}
	tc := r.TraceContextOf(ctx)
	if tc.IsZero() {
		return ev
	}
	return ev.WithTraceContext(tc)
}

// Extract returns ctx with the event's creation context as its remote parent span
// context; ctx is returned unchanged when the event has none or r does not trace.
func (r *Recorder) Extract(ctx context.Context, ev necro.Event) context.Context {
	tc := ev.TraceContext()
	if !r.Tracing() || tc.IsZero() {
		return ctx
	}
	return r.prop.Extract(ctx, carrier{&tc})
}

// sampledHeader reports whether a W3C traceparent says its trace is sampled, without
// parsing the rest: version 00 puts the flags in the last two hex digits.
func sampledHeader(tp string) (sampled, ok bool) {
	if len(tp) != 55 || tp[:3] != "00-" {
		return false, false
	}
	f := tp[54]
	var v byte
	switch {
	case f >= '0' && f <= '9':
		v = f - '0'
	case f >= 'a' && f <= 'f':
		v = f - 'a' + 10
	default:
		return false, false
	}
	return v&1 == 1, true
}
