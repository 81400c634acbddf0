package telemetry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro"
)

// consumerKind is made once: an option converted to an interface per span would cost
// an allocation.
var consumerKind trace.SpanStartOption = trace.WithSpanKind(trace.SpanKindConsumer)

// processName returns "process <type>", made once per event type.
func (r *Recorder) processName(typ string) string {
	if n, ok := r.names.Load(typ); ok {
		return n.(string)
	}
	n, _ := r.names.LoadOrStore(typ, "process "+typ)
	return n.(string)
}

// maxLinks bounds the links a receive span keeps to the creation contexts of its batch.
const maxLinks = 128

// A Span is one span of a flow. The zero Span records nothing; every method is a no-op
// on it, so callers need not check whether tracing is on.
type Span struct{ p *spanState } // one word: the Spine keeps one per handling, traced or not

type spanState struct {
	s     trace.Span
	start time.Time // of a process span, so that End can place its end
}

// Recording reports whether the span records what it is told.
func (s Span) Recording() bool { return s.p != nil && s.p.s.IsRecording() }

// TraceContext returns the span's context in W3C form: the creation context of the
// events emitted inside it. It is zero for the zero Span.
func (s Span) TraceContext() necro.TraceContext {
	if s.p == nil {
		return necro.TraceContext{}
	}
	return formatTraceContext(s.p.s.SpanContext())
}

// formatTraceContext writes a span context as traceparent and tracestate headers.
func formatTraceContext(sc trace.SpanContext) necro.TraceContext {
	if !sc.IsValid() {
		return necro.TraceContext{}
	}
	var b [55]byte
	copy(b[:3], "00-")
	tid, sid := sc.TraceID(), sc.SpanID()
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & trace.FlagsSampled)})
	return necro.TraceContext{Parent: string(b[:]), State: sc.TraceState().String()}
}

// Send starts the span of a producer enqueuing events ("send <destination>") as a child
// of ctx's span, and returns ctx with the span and the events created in it: each event
// without a trace context of its own gets the span's. End the span with the enqueue's
// error. With tracing off it returns its arguments and the zero Span.
func (r *Recorder) Send(ctx context.Context, dest Destination, events []necro.Event) (context.Context, Span, []necro.Event) {
	if !r.Tracing() {
		return ctx, Span{}, events
	}
	kv := dest.attrs(make([]attribute.KeyValue, 0, 8))
	kv = append(kv, attribute.String(attrOperationType, "send"), attribute.String(attrOperationName, "send"))
	if len(events) == 1 {
		kv = eventAttrs(kv, events[0])
	} else {
		kv = append(kv, attribute.Int(attrBatchCount, len(events)))
	}
	ctx, span := r.tracer.Start(ctx, "send "+dest.name(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(kv...))
	tc := formatTraceContext(span.SpanContext())
	out := events
	for i, ev := range events {
		if !ev.TraceContext().IsZero() {
			continue
		}
		if &out[0] == &events[0] {
			out = append([]necro.Event(nil), events...) // the caller's slice stays as it was
		}
		out[i] = ev.WithTraceContext(tc)
	}
	return ctx, Span{&spanState{s: span}}, out
}

// Receive records the span of one pull that handed out n events ("receive
// <destination>"), from start to now, linked to the creation context of each event (up
// to 128); event(i) returns the i-th. It is a root span: a batch mixes events of many
// traces.
func (r *Recorder) Receive(ctx context.Context, dest *Destination, n int, event func(i int) necro.Event, start time.Time) {
	if !r.Tracing() || n == 0 {
		return
	}
	kv := dest.attrs(make([]attribute.KeyValue, 0, 6))
	kv = append(kv, attribute.String(attrOperationType, "receive"), attribute.String(attrOperationName, "receive"),
		attribute.Int(attrBatchCount, n))
	_, span := r.tracer.Start(ctx, "receive "+dest.name(), trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(start), trace.WithAttributes(kv...))
	if span.IsRecording() {
		for i := range min(n, maxLinks) {
			if sc := trace.SpanContextFromContext(r.Extract(context.Background(), event(i))); sc.IsValid() {
				span.AddLink(trace.Link{SpanContext: sc})
			}
		}
	}
	span.End()
}

// Process starts the span of one organ handling ev ("process <type>"), whose parent is
// the event's creation context, beginning at start. It returns ctx with the span, for
// the handler. An event whose trace is known to be unsampled gets no span at all: its
// children inherit its context, which keeps the whole chain unsampled at almost no
// cost. With tracing off it returns ctx and the zero Span.
func (r *Recorder) Process(ctx context.Context, dest *Destination, ev necro.Event, organ string, start time.Time) (context.Context, Span) {
	if !r.Tracing() {
		return ctx, Span{}
	}
	tc := ev.TraceContext()
	if sampled, ok := sampledHeader(tc.Parent); ok && !sampled {
		return ctx, Span{}
	}
	pctx := r.Extract(ctx, ev)
	if tc.IsZero() {
		// No creation context: every handling of the event, in any organ or worker,
		// joins the one trace its id names (with IDGenerator in the provider).
		pctx = withRootTrace(ctx, ev.ID())
	}
	// The attributes are set once the span is known to record: an unsampled span
	// would only copy them and throw them away. The sampler still sees the span kind and
	// name, and the parent, which is what the standard samplers decide on.
	ctx, span := r.tracer.Start(pctx, r.processName(ev.Type()), consumerKind, trace.WithTimestamp(start))
	if span.IsRecording() {
		kv := dest.attrs(make([]attribute.KeyValue, 0, 14))
		kv = eventAttrs(append(kv, attribute.String(attrOperationType, "process"), attribute.String(attrOperationName, "process"),
			attribute.String(attrOrgan, organ), attribute.Int(attrAttempt, ev.Attempt())), ev)
		span.SetAttributes(kv...)
	}
	return ctx, Span{&spanState{s: span, start: start}}
}

func eventAttrs(kv []attribute.KeyValue, ev necro.Event) []attribute.KeyValue {
	kv = append(kv, attribute.String(attrMessageID, ev.ID()), attribute.String(attrConversationID, ev.Correlation()),
		attribute.String(attrEventType, ev.Type()), attribute.Int(attrDepth, ev.Depth()))
	if c := ev.Meta().CausationID; c != "" {
		kv = append(kv, attribute.String(attrCausation, c))
	}
	return kv
}

// Fail records a failed handling: the error as an exception event (with the stack of a
// panic), error.type, and an error status.
func (s Span) Fail(err error) {
	if !s.Recording() || err == nil {
		return
	}
	typ := ErrorType(err)
	opts := []trace.EventOption{trace.WithAttributes(attribute.String("exception.type", typ))}
	var pe *necro.PanicError
	if errors.As(err, &pe) {
		s.p.s.AddEvent("necro.panic", trace.WithAttributes(attribute.String("necro.panic.value", fmt.Sprint(pe.Value))))
		opts = append(opts, trace.WithAttributes(attribute.String("exception.stacktrace", string(pe.Stack))))
	}
	if errors.Is(err, necro.ErrHandlerTimeout) {
		s.p.s.AddEvent("necro.timeout")
	}
	s.p.s.RecordError(err, opts...)
	s.p.s.SetAttributes(attribute.String(attrErrorType, typ))
	s.p.s.SetStatus(codes.Error, err.Error())
}

// Note adds a span event named name, with a reason, for what happened to the flow:
// "necro.abandoned", "necro.quarantined", "necro.budget_exceeded".
func (s Span) Note(name, reason string) {
	if !s.Recording() {
		return
	}
	if reason == "" {
		s.p.s.AddEvent(name)
		return
	}
	s.p.s.AddEvent(name, trace.WithAttributes(attribute.String(attrReason, reason)))
}

// Retrying records that the failed handling will be retried as attempt, after delay.
func (s Span) Retrying(attempt int, delay time.Duration) {
	if !s.Recording() {
		return
	}
	s.p.s.SetAttributes(attribute.String(attrOutcome, "retry"))
	s.p.s.AddEvent("necro.retry", trace.WithAttributes(attribute.Int(attrAttempt, attempt),
		attribute.Int64(attrDelay, delay.Milliseconds())))
}

// Settled records what became of the event after this handling: "ack", "retry",
// "dead_letter", "nack" or "given_up" (logged and acked). A dead letter is an error.
func (s Span) Settled(outcome, reason string) {
	if !s.Recording() {
		return
	}
	s.p.s.SetAttributes(attribute.String(attrOutcome, outcome))
	if outcome == "dead_letter" {
		s.p.s.AddEvent("necro.dead_letter", trace.WithAttributes(attribute.String(attrReason, reason)))
		s.p.s.SetStatus(codes.Error, "dead-lettered: "+reason)
	}
}

// End ends a process span when the handling that took d was over, with the number of
// events emitted in it. The Spine ends it when it settles the event, which may be later.
func (s Span) End(d time.Duration, children int) {
	if s.p == nil {
		return
	}
	if s.p.s.IsRecording() {
		s.p.s.SetAttributes(attribute.Int(attrChildren, children))
	}
	s.p.s.End(trace.WithTimestamp(s.p.start.Add(d)))
}

// Context returns ctx holding the span, so that what is logged with it carries the
// span's ids. The zero Span gives ctx.
func (s Span) Context(ctx context.Context) context.Context {
	if s.p == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, s.p.s)
}

// EndErr ends a send span with the enqueue's error, if any.
func (s Span) EndErr(err error) {
	if s.p == nil {
		return
	}
	if err != nil && s.p.s.IsRecording() {
		s.p.s.RecordError(err)
		s.p.s.SetAttributes(attribute.String(attrErrorType, ErrorType(err)))
		s.p.s.SetStatus(codes.Error, err.Error())
	}
	s.p.s.End()
}

// ErrorType names the kind of a handling failure for error.type, a low-cardinality
// label: "panic", "timeout", "fan_out_exceeded", "invalid_event", "canceled",
// "permanent", or else the Go type of the first error in the chain that is not a
// plain wrapper or message (so fmt.Errorf("charge: %w", &MyError{}) gives
// "*shop.MyError"), and "error" when there is none.
func ErrorType(err error) string {
	var pe *necro.PanicError
	switch {
	case errors.As(err, &pe):
		return "panic"
	case errors.Is(err, necro.ErrHandlerTimeout):
		return "timeout"
	case errors.Is(err, necro.ErrFanOutExceeded):
		return "fan_out_exceeded"
	case errors.Is(err, necro.ErrInvalidEvent):
		return "invalid_event"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch t := fmt.Sprintf("%T", e); t {
		case "*fmt.wrapError", "*fmt.wrapErrors", "*errors.errorString", "*errors.joinError", "necro.permanentError":
		default:
			return t
		}
	}
	if necro.IsPermanent(err) {
		return "permanent"
	}
	return "error"
}
