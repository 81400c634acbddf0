package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

func decodeLine(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		t.Fatalf("log line %q is not JSON: %v", b, err)
	}
	return m
}

// The handler adds the flow's ids inside a flow, nothing outside one, keeps a record's
// own value for a key it already has, and puts the ids at the top level even when the
// logger has a group.
func TestLogHandlerAddsFlowIDs(t *testing.T) {
	root, err := necro.NewEvent("order.placed", map[string]any{"card": "4111 1111 1111 1111"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := necro.NewEvent("payment.captured", nil)
	if err != nil {
		t.Fatal(err)
	}
	child = child.EmittedBy(root, "Payment", 0, necro.TraceContext{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
	var buf bytes.Buffer
	log := telemetry.NewJSONLogger(&buf, nil)
	ctx := telemetry.WithFlow(context.Background(), telemetry.Flow{Event: child, Organ: "Shipping"})

	log.InfoContext(ctx, "shipping")
	m := decodeLine(t, buf.Bytes())
	want := map[string]any{"correlation_id": root.ID(), "event_id": child.ID(), "event_type": "payment.captured",
		"organ": "Shipping", "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, m[k], v, m)
		}
	}
	if bytes.Contains(buf.Bytes(), []byte("4111")) {
		t.Errorf("the payload reached the log: %s", buf.Bytes())
	}

	buf.Reset()
	log.InfoContext(ctx, "own organ", slog.String("organ", "mine"))
	if m := decodeLine(t, buf.Bytes()); m["organ"] != "mine" {
		t.Errorf("organ = %v, want the record's own value mine", m["organ"])
	}

	buf.Reset()
	log.WithGroup("req").InfoContext(ctx, "grouped", slog.Int("n", 1))
	m = decodeLine(t, buf.Bytes())
	if m["event_id"] != child.ID() {
		t.Errorf("with a group, event_id = %v, want it at the top level: %v", m["event_id"], m)
	}
	if g, _ := m["req"].(map[string]any); g["n"] != float64(1) {
		t.Errorf("the record's own attributes left their group: %v", m)
	}

	buf.Reset()
	log.InfoContext(context.Background(), "outside")
	for _, k := range []string{"trace_id", "span_id", "correlation_id", "event_id", "event_type", "organ"} {
		if _, ok := decodeLine(t, buf.Bytes())[k]; ok {
			t.Errorf("a line outside any flow has %s", k)
		}
	}
}

// Inside a recording span the span's ids win over the event's creation context.
func TestLogHandlerPrefersTheSpan(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	rec, err := telemetry.New(telemetry.Config{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := necro.NewEvent("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := rec.Process(context.Background(), &telemetry.Destination{System: "memory", Name: "memory"}, ev, "A", time.Now())
	defer span.End(0, 0)
	var buf bytes.Buffer
	telemetry.NewJSONLogger(&buf, nil).InfoContext(telemetry.WithFlow(ctx, telemetry.Flow{Event: ev, Organ: "A"}), "x")
	tc := span.TraceContext().Parent // 00-<trace>-<span>-01
	m := decodeLine(t, buf.Bytes())
	if m["trace_id"] != tc[3:35] || m["span_id"] != tc[36:52] {
		t.Errorf("trace_id %v span_id %v, want the span's %s %s", m["trace_id"], m["span_id"], tc[3:35], tc[36:52])
	}
}

// A nil Recorder is the default and records nothing: every method is a no-op.
func TestNilRecorderDoesNothing(t *testing.T) {
	var rec *telemetry.Recorder
	ev, err := necro.NewEvent("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if rec.Tracing() || rec.Metering() {
		t.Fatal("a nil Recorder says it records")
	}
	sctx, span, evs := rec.Send(ctx, telemetry.Destination{}, []necro.Event{ev})
	if sctx != ctx || len(evs) != 1 || !evs[0].TraceContext().IsZero() || span.Recording() {
		t.Errorf("Send on a nil Recorder changed something: %v %v %v", sctx, evs, span)
	}
	span.EndErr(nil)
	pctx, ps := rec.Process(ctx, &telemetry.Destination{}, ev, "A", time.Now())
	if pctx != ctx || !ps.TraceContext().IsZero() {
		t.Errorf("Process on a nil Recorder = %v, %v", pctx, ps)
	}
	ps.Fail(context.Canceled)
	ps.Settled("dead_letter", "x")
	ps.End(time.Millisecond, 0)
	rec.Handled(ctx, ev, "A", time.Millisecond, nil)
	rec.Latency(ctx, ev, time.Now())
	if got := rec.Inject(ctx, ev); !got.TraceContext().IsZero() {
		t.Errorf("Inject on a nil Recorder stamped %v", got.TraceContext())
	}
	stop, err := rec.Observe(telemetry.Destination{}, func(context.Context) (telemetry.Figures, bool) {
		t.Error("a nil Recorder called its reader")
		return telemetry.Figures{}, false
	})
	if err != nil {
		t.Fatal(err)
	}
	stop()
}

// New with no-op providers (otel's defaults) returns a nil Recorder: off costs nothing.
func TestNewWithNoopProvidersIsOff(t *testing.T) {
	rec, err := telemetry.New(telemetry.Config{})
	if err != nil || rec != nil {
		t.Fatalf("New(Config{}) with otel's default providers = %v, %v; want nil, nil", rec, err)
	}
}

type cardError struct{ code string }

func (e *cardError) Error() string { return "card refused: " + e.code }

func TestErrorTypeIsLowCardinality(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&necro.PanicError{Value: "x"}, "panic"},
		{fmt.Errorf("handle: %w", necro.ErrHandlerTimeout), "timeout"},
		{fmt.Errorf("charge order 17: %w", &cardError{"51"}), "*telemetry_test.cardError"},
		{errors.New("order 17 is broken"), "error"},
		{fmt.Errorf("order %d: %w", 17, errors.New("broken")), "error"},
		{necro.Permanent(errors.New("blocked")), "permanent"},
		{necro.Permanent(&cardError{"05"}), "*telemetry_test.cardError"},
	} {
		if got := telemetry.ErrorType(c.err); got != c.want {
			t.Errorf("ErrorType(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
