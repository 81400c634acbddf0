package necro

// A TraceContext is the W3C trace context an event was created in: the values of the
// traceparent and tracestate headers. Package telemetry writes and reads it; to the rest
// of the runtime it is two opaque strings that travel with the event through every
// store, retry, dead letter and replay.
type TraceContext struct {
	Parent string // traceparent, such as "00-<32 hex trace id>-<16 hex span id>-01"
	State  string // tracestate, often empty
}

// IsZero reports whether tc carries no trace context.
func (tc TraceContext) IsZero() bool { return tc.Parent == "" }

// TraceContext returns the trace context of the event's creation.
func (ev Event) TraceContext() TraceContext {
	if ev.e == nil {
		return TraceContext{}
	}
	return TraceContext{Parent: ev.e.meta.TraceParent, State: ev.e.meta.TraceState}
}

// WithTraceContext returns a copy of ev created in tc; the rest of its lineage is kept.
// The id, type, timestamp and payload are shared, not copied. tc is taken as it is: it
// comes from a tracer, which writes valid headers, and a reader ignores one it cannot
// parse.
func (ev Event) WithTraceContext(tc TraceContext) Event {
	if ev.e == nil {
		return ev
	}
	c := ev.e.clone()
	c.meta.TraceParent, c.meta.TraceState = tc.Parent, tc.State
	return Event{c}
}
