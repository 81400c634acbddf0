package telemetry_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// An event without a trace context, handled by two organs (and a child of one of them),
// is one trace with IDGenerator: the organs' process spans share the trace id the
// event's id names, and another event gets another trace.
func TestIDGeneratorMakesOneTracePerRootWithoutContext(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithIDGenerator(telemetry.IDGenerator()))
	rec, err := telemetry.New(telemetry.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	dest := &telemetry.Destination{System: "redis", Name: "s"}
	handle := func(ev necro.Event, organ string) (context.Context, telemetry.Span) {
		ctx, span := rec.Process(context.Background(), dest, ev, organ, time.Now())
		return ctx, span
	}
	root, other := mustEvent(t), mustEvent(t)
	_, a := handle(root, "A")
	child, err := necro.NewEvent("b", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	child = child.EmittedBy(root, "A", 0, a.TraceContext()) // created in A's span, as the Spine does
	_, bSpan := handle(root, "B")
	_, cSpan := handle(child, "C")
	_, oSpan := handle(other, "A")
	for _, s := range []telemetry.Span{a, bSpan, cSpan, oSpan} {
		s.End(time.Millisecond, 0)
	}
	spans := sr.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans ended, want 4", len(spans))
	}
	tid := func(i int) string { return spans[i].SpanContext().TraceID().String() }
	if tid(0) != tid(1) || tid(0) != tid(2) {
		t.Errorf("organ A, organ B and A's child are in traces %s, %s and %s; want one", tid(0), tid(1), tid(2))
	}
	if tid(3) == tid(0) {
		t.Errorf("another root is in the same trace %s", tid(3))
	}
	if spans[0].SpanContext().SpanID() == spans[1].SpanContext().SpanID() {
		t.Error("organ A's and organ B's spans have the same span id")
	}
}

// The sampler sees the same trace id at every handling of a root, so a ratio sampler
// keeps both organs' spans of a root or neither, and keeps about its ratio of roots:
// the derived ids are not biased the way a UUID's own bytes would be.
func TestIDGeneratorSamplesEachRootOnce(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithIDGenerator(telemetry.IDGenerator()),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5))))
	rec, err := telemetry.New(telemetry.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	const roots = 400
	for range roots {
		ev := mustEvent(t)
		for _, organ := range []string{"A", "B"} {
			_, span := rec.Process(context.Background(), &telemetry.Destination{}, ev, organ, time.Now())
			span.End(time.Millisecond, 0)
		}
	}
	byTrace := map[string]int{}
	for _, s := range sr.Ended() {
		byTrace[s.SpanContext().TraceID().String()]++
	}
	for id, n := range byTrace {
		if n != 2 {
			t.Errorf("trace %s holds %d of its root's 2 process spans", id, n)
		}
	}
	// Binomial(400, 0.5): 200 ± 10; 140–260 is six standard deviations either way.
	if n := len(byTrace); n < 140 || n > 260 {
		t.Errorf("%d of %d roots sampled at ratio 0.5", n, roots)
	}
}

func mustEvent(t *testing.T) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent("a", map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
