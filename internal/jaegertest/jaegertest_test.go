package jaegertest_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro/internal/jaegertest"
)

// send exports a parent span and its child, with attributes and an event on the child,
// as service, then shuts the provider down so that they are flushed. It returns their
// span contexts.
func send(t *testing.T, exp sdktrace.SpanExporter, service string) (parent, child trace.SpanContext) {
	t.Helper()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	)
	tracer := tp.Tracer("jaegertest")
	ctx, p := tracer.Start(t.Context(), "parent")
	_, c := tracer.Start(ctx, "child", trace.WithAttributes(
		attribute.String("necro.organ", "billing"),
		attribute.Int64("necro.attempt", 2),
		attribute.Int64("necro.big", 1<<60), // past JavaScript's integers: Jaeger sends a string
		attribute.Bool("necro.retry", true),
	))
	c.AddEvent("necro.dead_letter", trace.WithAttributes(attribute.String("reason", "refused")))
	time.Sleep(2 * time.Millisecond) // a duration Jaeger's microseconds can see
	c.End()
	p.End()
	if err := tp.Shutdown(t.Context()); err != nil {
		t.Fatalf("flush spans to Jaeger: %v", err)
	}
	return p.SpanContext(), c.SpanContext()
}

func TestSpansSentOverOTLPComeBackFromTheQueryAPI(t *testing.T) {
	jaeger := jaegertest.Start(t)
	ctx := t.Context()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(jaeger.OTLPGRPCEndpoint()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	parent, child := send(t, exp, "jaegertest-grpc")

	traces := jaeger.WaitForTraces(t, ctx, "jaegertest-grpc", func(trs []jaegertest.Trace) bool {
		return len(trs) > 0 && len(trs[0].Spans) >= 2
	})
	if len(traces) != 1 {
		t.Fatalf("Traces(jaegertest-grpc) returned %d traces, want 1", len(traces))
	}
	tr := traces[0]
	if tr.TraceID != parent.TraceID().String() {
		t.Errorf("trace ID %s, want %s", tr.TraceID, parent.TraceID())
	}
	spans := map[string]jaegertest.Span{}
	for _, sp := range tr.Spans {
		spans[sp.OperationName] = sp
	}
	p, c := spans["parent"], spans["child"]
	if len(tr.Spans) != 2 || p.SpanID != parent.SpanID().String() || c.SpanID != child.SpanID().String() {
		t.Fatalf("spans %+v, want parent %s and child %s", tr.Spans, parent.SpanID(), child.SpanID())
	}
	if got := c.ParentSpanID(); got != p.SpanID {
		t.Errorf("child's ParentSpanID() = %q, want the parent's %q", got, p.SpanID)
	}
	if got := p.ParentSpanID(); got != "" {
		t.Errorf("parent's ParentSpanID() = %q, want none", got)
	}
	for key, want := range map[string]any{
		"necro.organ": "billing", "necro.attempt": int64(2), "necro.big": int64(1 << 60), "necro.retry": true,
	} {
		if got, ok := c.Tag(key); !ok || got != want {
			t.Errorf("child's Tag(%q) = %#v, %v; want %#v", key, got, ok, want)
		}
	}
	if got, ok := c.Tag("no.such.tag"); ok {
		t.Errorf("Tag(no.such.tag) = %#v, true; want none", got)
	}
	if len(c.Logs) != 1 || !slices.ContainsFunc(c.Logs[0].Fields, func(kv jaegertest.KeyValue) bool {
		return kv.Key == "event" && kv.Value == "necro.dead_letter"
	}) {
		t.Errorf("child's logs %+v, want the necro.dead_letter event", c.Logs)
	}
	if got := tr.Processes[c.ProcessID].ServiceName; got != "jaegertest-grpc" {
		t.Errorf("child's service %q, want jaegertest-grpc", got)
	}
	if c.Duration < 2*time.Millisecond || p.Duration < c.Duration {
		t.Errorf("durations: parent %s, child %s; want child at least 2ms and parent no shorter", p.Duration, c.Duration)
	}
	if since := time.Since(p.StartTime); since < 0 || since > time.Minute {
		t.Errorf("parent started at %s, %s ago; want within the last minute", p.StartTime, since)
	}

	byID, err := jaeger.Trace(ctx, parent.TraceID().String())
	if err != nil || byID.TraceID != tr.TraceID || len(byID.Spans) != 2 {
		t.Errorf("Trace(%s) = %d spans of %s, %v; want both spans", parent.TraceID(), len(byID.Spans), byID.TraceID, err)
	}
	if _, err := jaeger.Trace(ctx, "0123456789abcdef0123456789abcdef"); !errors.Is(err, jaegertest.ErrNotFound) {
		t.Errorf("Trace of an unknown ID: %v, want ErrNotFound", err)
	}
	if services, err := jaeger.Services(ctx); err != nil || !slices.Equal(services, []string{"jaegertest-grpc"}) {
		t.Errorf("Services() = %q, %v; want [jaegertest-grpc]", services, err)
	}
	if ops, err := jaeger.Operations(ctx, "jaegertest-grpc"); err != nil || !slices.Equal(ops, []string{"child", "parent"}) {
		t.Errorf("Operations(jaegertest-grpc) = %q, %v; want [child parent]", ops, err)
	}
}

// Two Jaegers at once, one fed over OTLP HTTP: each has its own ports and keeps its own
// spans.
func TestTwoServersKeepTheirOwnSpans(t *testing.T) {
	a, b := jaegertest.Start(t), jaegertest.Start(t)
	if a.OTLPGRPCEndpoint() == b.OTLPGRPCEndpoint() || a.QueryURL() == b.QueryURL() {
		t.Fatalf("both servers listen on %s and %s", a.OTLPGRPCEndpoint(), a.QueryURL())
	}
	ctx := t.Context()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(b.OTLPHTTPEndpoint()+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	parent, _ := send(t, exp, "jaegertest-http")
	traces := b.WaitForTraces(t, ctx, "jaegertest-http", func(trs []jaegertest.Trace) bool {
		return len(trs) == 1 && len(trs[0].Spans) == 2
	})
	if traces[0].TraceID != parent.TraceID().String() {
		t.Errorf("trace ID %s, want %s", traces[0].TraceID, parent.TraceID())
	}
	if services, err := a.Services(ctx); err != nil || len(services) != 0 {
		t.Errorf("the other server's Services() = %q, %v; want none", services, err)
	}
}

func TestWaitForTracesFailsWhenTheSpansNeverCome(t *testing.T) {
	jaeger := jaegertest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() { // Fatalf ends the goroutine it runs on, as it would a test's
		defer close(done)
		jaeger.WaitForTraces(rec, ctx, "nobody", func(trs []jaegertest.Trace) bool { return len(trs) > 0 })
	}()
	<-done
	if !rec.failed {
		t.Error("WaitForTraces returned without failing, want a failure once ctx ended")
	}
}

// recorder is a testing.TB whose Fatalf only records the failure.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.TB.Logf("recorded: "+format, args...)
	runtime.Goexit()
}
