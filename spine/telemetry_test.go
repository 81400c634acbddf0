package spine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// observed is a Spine wired to real OpenTelemetry SDK providers: spans kept in memory,
// metrics read on demand, JSON logs in a buffer.
type observed struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	logs   *bytes.Buffer
	rec    *telemetry.Recorder
	log    *slog.Logger
}

func newObserved(t *testing.T) *observed {
	t.Helper()
	o := &observed{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(), logs: &bytes.Buffer{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader), sdkmetric.WithView(telemetry.MetricViews()...))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	rec, err := telemetry.New(telemetry.Config{TracerProvider: tp, MeterProvider: mp, CorrelationExemplars: true})
	if err != nil || rec == nil {
		t.Fatalf("telemetry.New = %v, %v; want a recorder", rec, err)
	}
	o.rec = rec
	o.log = telemetry.NewJSONLogger(&lockedWriter{w: o.logs}, slog.LevelInfo)
	return o
}

// lockedWriter serialises writes from the Spine's goroutines and the organs'.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (o *observed) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(o.logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// TestOneFlowOneCorrelationIDInSpansMetricsAndLogs runs a chain a → b → c plus an
// organ that always fails on b, and checks that the root's correlation id and trace
// are found in every span of the flow, in the metrics' exemplars, and in the log lines
// written inside it; that each process span's parent is the span that created its
// event; and that the dead letter shows as an error on its spans.
func TestOneFlowOneCorrelationIDInSpansMetricsAndLogs(t *testing.T) {
	o := newObserved(t)
	q := seedStore(t)
	errBroken := errors.New("broken on purpose")
	mounts := []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
			o.log.InfoContext(ctx, "organ A at work")
			child, err := necro.NewEvent("b", nil)
			return []necro.Event{child}, err
		})},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			child, err := necro.NewEvent("c", nil)
			return []necro.Event{child}, err
		})},
		{Name: "Broken", Organ: necro.NewOrgan([]string{"b"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			return nil, errBroken
		})},
		{Name: "C", Organ: necro.NewOrgan([]string{"c"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			return nil, nil
		})},
	}
	s, err := spine.New(q, mounts, spine.Config{Telemetry: o.rec, Logger: o.log,
		Retry: supervision.RetryPolicy{MaxAttempts: 2, Backoff: seedNoWait}})
	if err != nil {
		t.Fatal(err)
	}
	root := seedEvent(t, "a", nil)
	ctx, cancel := context.WithTimeout(t.Context(), seedRunLimit)
	defer cancel()
	if err := s.Emit(ctx, root); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Spans: one trace, rooted at the send span.
	spans := o.spans.Ended()
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	var send sdktrace.ReadOnlySpan
	process := map[string][]sdktrace.ReadOnlySpan{} // organ → its process spans
	for _, sp := range spans {
		byID[sp.SpanContext().SpanID()] = sp
		switch {
		case sp.Name() == "send memory":
			send = sp
		case strings.HasPrefix(sp.Name(), "process "):
			organ, _ := attr(sp, "necro.organ")
			process[organ.AsString()] = append(process[organ.AsString()], sp)
		}
	}
	if send == nil {
		t.Fatalf("no send span among %d spans", len(spans))
	}
	traceID := send.SpanContext().TraceID()
	want := map[string]int{"A": 1, "B": 1, "Broken": 2, "C": 1}
	for organ, n := range want {
		if len(process[organ]) != n {
			t.Fatalf("organ %s has %d process spans, want %d", organ, len(process[organ]), n)
		}
	}
	for organ, sps := range process {
		for _, sp := range sps {
			if sp.SpanContext().TraceID() != traceID {
				t.Errorf("%s span %s is in trace %s, want %s", organ, sp.Name(), sp.SpanContext().TraceID(), traceID)
			}
			if v, _ := attr(sp, "messaging.message.conversation_id"); v.AsString() != root.ID() {
				t.Errorf("%s span conversation_id = %q, want the root's id %q", organ, v.AsString(), root.ID())
			}
			if v, _ := attr(sp, "messaging.system"); v.AsString() != "memory" {
				t.Errorf("%s span messaging.system = %q, want memory", organ, v.AsString())
			}
			if sp.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("%s span kind = %v, want consumer", organ, sp.SpanKind())
			}
		}
	}
	parentOf := func(sp sdktrace.ReadOnlySpan) trace.SpanID { return sp.Parent().SpanID() }
	if parentOf(process["A"][0]) != send.SpanContext().SpanID() {
		t.Errorf("A's process span's parent is %s, want the send span %s", parentOf(process["A"][0]), send.SpanContext().SpanID())
	}
	for _, organ := range []string{"B", "Broken"} {
		for _, sp := range process[organ] {
			if parentOf(sp) != process["A"][0].SpanContext().SpanID() {
				t.Errorf("%s's process span's parent is %s, want A's process span (which emitted b)", organ, parentOf(sp))
			}
		}
	}
	if parentOf(process["C"][0]) != process["B"][0].SpanContext().SpanID() {
		t.Errorf("C's process span's parent is %s, want B's process span", parentOf(process["C"][0]))
	}
	// The broken organ: attempt 1 retried, attempt 2 dead-lettered; both are errors.
	var outcomes []string
	for _, sp := range process["Broken"] {
		if sp.Status().Code != codes.Error {
			t.Errorf("Broken span status = %v, want Error", sp.Status())
		}
		if v, _ := attr(sp, "error.type"); v.AsString() == "" {
			t.Errorf("Broken span has no error.type")
		}
		out, _ := attr(sp, "necro.outcome")
		outcomes = append(outcomes, out.AsString())
	}
	if strings.Join(outcomes, ",") != "retry,dead_letter" {
		t.Errorf("Broken spans' outcomes = %v, want [retry dead_letter]", outcomes)
	}
	var deadEvent bool
	for _, e := range process["Broken"][1].Events() {
		deadEvent = deadEvent || e.Name == "necro.dead_letter"
	}
	if !deadEvent {
		t.Errorf("the dead-lettered span has no necro.dead_letter event: %v", process["Broken"][1].Events())
	}

	// Logs: the organ's own line and the Spine's lines about the flow carry its ids.
	var sawOrgan, sawDead bool
	for _, l := range o.lines(t) {
		switch l["msg"] {
		case "organ A at work":
			sawOrgan = true
			if l["trace_id"] != traceID.String() || l["span_id"] != process["A"][0].SpanContext().SpanID().String() {
				t.Errorf("organ A's log line has trace %v span %v, want %s %s", l["trace_id"], l["span_id"], traceID,
					process["A"][0].SpanContext().SpanID())
			}
			if l["correlation_id"] != root.ID() || l["organ"] != "A" || l["event_type"] != "a" || l["event_id"] != root.ID() {
				t.Errorf("organ A's log line = %v, want correlation_id, event_id %s, event_type a, organ A", l, root.ID())
			}
		case "event dead-lettered", "organ failed; retrying":
			sawDead = sawDead || l["msg"] == "event dead-lettered"
			if l["correlation_id"] != root.ID() || l["trace_id"] != traceID.String() || l["organ"] != "Broken" {
				t.Errorf("line %q = %v, want correlation_id %s, trace_id %s, organ Broken", l["msg"], l, root.ID(), traceID)
			}
		}
		if _, ok := l["payload"]; ok {
			t.Errorf("a log line holds a payload: %v", l)
		}
	}
	if !sawOrgan || !sawDead {
		t.Fatalf("missing log lines (organ A's: %v, dead letter: %v):\n%s", sawOrgan, sawDead, o.logs)
	}

	// Metrics: the counters, and exemplars of the handler duration pointing at the
	// flow's trace with its correlation id.
	var rm metricdata.ResourceMetrics
	if err := o.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	var exemplars int
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					sums[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				if m.Name != "necro.handler.duration" {
					continue
				}
				for _, p := range d.DataPoints {
					if _, ok := p.Attributes.Value("correlation_id"); ok {
						t.Errorf("the correlation id is a series attribute of %s: %v", m.Name, p.Attributes)
					}
					for _, ex := range p.Exemplars {
						if trace.TraceID(ex.TraceID) != traceID {
							continue
						}
						for _, kv := range ex.FilteredAttributes {
							if kv.Key == "correlation_id" && kv.Value.AsString() == root.ID() {
								exemplars++
							}
						}
					}
				}
			}
		}
	}
	for name, v := range map[string]int64{"necro.events.processed": 4, "necro.events.emitted": 2,
		"necro.events.retried": 1, "necro.events.dead_lettered": 1, "necro.handler.failures": 2} {
		if sums[name] != v {
			t.Errorf("metric %s = %d, want %d (all: %v)", name, sums[name], v, sums)
		}
	}
	if exemplars == 0 {
		t.Errorf("no handler-duration exemplar carries the flow's trace id and correlation id")
	}
}

// TestTracingOffLeavesEventsUntraced checks the default: without a Recorder the Spine makes no
// trace context at all, so children carry none.
func TestTracingOffLeavesEventsUntraced(t *testing.T) {
	q := seedStore(t)
	var got []necro.TraceContext
	mounts := []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			child, err := necro.NewEvent("b", nil)
			return []necro.Event{child}, err
		})},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
			got = append(got, ev.TraceContext())
			return nil, nil
		})},
	}
	s, err := spine.New(q, mounts, spine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), seedRunLimit)
	defer cancel()
	if err := s.Emit(ctx, seedEvent(t, "a", nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].IsZero() {
		t.Fatalf("B saw trace contexts %v, want one zero context", got)
	}
}

// Ready says the Spine can take work only while it serves and is not draining.
func TestReadyWhileServingNotDraining(t *testing.T) {
	q := seedStore(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	mounts := []necro.Mount{{Name: "Slow", Organ: necro.NewOrgan([]string{"slow"}, func(context.Context, necro.Event) ([]necro.Event, error) {
		started <- struct{}{}
		<-release
		return nil, nil
	})}}
	s, err := spine.New(q, mounts, spine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Ready(ctx); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Ready before Serve = %v, want not running", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	if err := s.Emit(ctx, seedEvent(t, "slow", nil)); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready while serving = %v, want nil", err)
	}
	s.Stop()
	if err := s.Ready(ctx); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Errorf("Ready while draining = %v, want draining", err)
	}
	close(release)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err == nil {
		t.Errorf("Ready after Serve returned = nil, want an error")
	}
}

// At the default level the Spine logs lifecycle, not events: handling ten times as many
// events writes no more lines.
func TestLogVolumeDoesNotGrowWithEvents(t *testing.T) {
	lines := func(n int) int {
		var buf bytes.Buffer
		log := telemetry.NewJSONLogger(&lockedWriter{w: &buf}, nil)
		q := seedStore(t)
		mounts := []necro.Mount{{Name: "A", Organ: necro.NewOrgan([]string{"a"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			child, err := necro.NewEvent("b", nil)
			return []necro.Event{child}, err
		})}, {Name: "B", Organ: necro.NewOrgan([]string{"b"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			return nil, nil
		})}}
		s, err := spine.New(q, mounts, spine.Config{Logger: log, MaxSteps: spine.Unlimited})
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			if err := s.Emit(t.Context(), seedEvent(t, "a", nil)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := s.Stats().Processed; got != int64(2*n) {
			t.Fatalf("processed %d, want %d", got, 2*n)
		}
		return strings.Count(buf.String(), "\n")
	}
	few, many := lines(100), lines(1000)
	if many > few {
		t.Errorf("1,000 roots wrote %d log lines, 100 roots %d: the log grows with events at Info", many, few)
	}
}

// What goes wrong shows on the process spans as span events: panics (with the stack),
// timeouts, abandoned calls, quarantines and budget breaches. Each pull has a receive
// span linked to the events it handed out.
func TestSpanEventsForFailures(t *testing.T) {
	o := newObserved(t)
	q := seedStore(t)
	unblock := make(chan struct{})
	t.Cleanup(func() { close(unblock) })
	mounts := []necro.Mount{
		{Name: "Panicky", Organ: necro.NewOrgan([]string{"p"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			panic("boom")
		})},
		{Name: "Deaf", Organ: necro.NewOrgan([]string{"d"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			<-unblock // ignores its ctx until the test ends
			return nil, nil
		})},
		{Name: "Wide", Organ: necro.NewOrgan([]string{"w"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			var out []necro.Event
			for range 3 {
				ev, err := necro.NewEvent("x", nil)
				if err != nil {
					return nil, err
				}
				out = append(out, ev)
			}
			return out, nil
		})},
		{Name: "Deep", Organ: necro.NewOrgan([]string{"deep"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			ev, err := necro.NewEvent("deep", nil)
			return []necro.Event{ev}, err
		})},
	}
	s, err := spine.New(q, mounts, spine.Config{Telemetry: o.rec, Logger: o.log,
		MaxFanOut: 2, MaxDepth: 1, HandlerTimeout: 30 * time.Millisecond, AbandonAfter: 30 * time.Millisecond,
		Retry:   supervision.RetryPolicy{MaxAttempts: 1},
		Restart: supervision.OneForOne{MaxRestarts: 1, Window: time.Minute, Backoff: seedTiny, Quarantine: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), seedRunLimit)
	defer cancel()
	var roots []necro.Event
	for _, typ := range []string{"p", "p", "p", "d", "w", "deep"} {
		roots = append(roots, seedEvent(t, typ, nil))
	}
	if err := s.Emit(ctx, roots...); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}

	events := map[string]map[string]int{} // organ → span event name → count
	var receive, receivedLinks int
	for _, sp := range o.spans.Ended() {
		if sp.Name() == "receive memory" {
			receive++
			receivedLinks += len(sp.Links())
			if n, _ := attr(sp, "messaging.batch.message_count"); n.AsInt64() < 1 {
				t.Errorf("receive span with message_count %v", n)
			}
			continue
		}
		organ, ok := attr(sp, "necro.organ")
		if !ok {
			continue
		}
		if events[organ.AsString()] == nil {
			events[organ.AsString()] = map[string]int{}
		}
		for _, e := range sp.Events() {
			events[organ.AsString()][e.Name]++
			if e.Name == "exception" && organ.AsString() == "Panicky" {
				var stack bool
				for _, kv := range e.Attributes {
					stack = stack || (kv.Key == "exception.stacktrace" && strings.Contains(kv.Value.AsString(), "goroutine"))
				}
				if !stack {
					t.Errorf("Panicky's exception event has no stack: %v", e.Attributes)
				}
			}
		}
	}
	for organ, want := range map[string][]string{
		"Panicky": {"necro.panic", "exception", "necro.quarantined", "necro.dead_letter"},
		"Deaf":    {"necro.abandoned", "necro.timeout", "exception"},
		"Wide":    {"necro.budget_exceeded", "necro.dead_letter"},
		"Deep":    {"necro.budget_exceeded"},
	} {
		for _, name := range want {
			if events[organ][name] == 0 {
				t.Errorf("%s's spans have no %s event; they have %v", organ, name, events[organ])
			}
		}
	}
	if receive == 0 || receivedLinks < len(roots) {
		t.Errorf("%d receive spans with %d links, want at least one span linking the %d roots", receive, receivedLinks, len(roots))
	}
}

// A program may drop its Spine before it shuts telemetry down: the collection after
// the Spine is garbage still reports what it did (the example programs' last export
// at shutdown lost necro.events.processed this way, when a GC came first), and the
// one after that no longer does.
func TestCountsOutliveTheSpineForOneCollection(t *testing.T) {
	o := newObserved(t)
	q := seedStore(t)
	processed := func() (int64, bool) {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := o.reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "necro.events.processed" && len(d.DataPoints) > 0 {
					return d.DataPoints[0].Value, true
				}
			}
		}
		return 0, false
	}
	func() { // the Spine is reachable only inside
		s, err := spine.New(q, []necro.Mount{{Name: "A", Organ: necro.NewOrgan([]string{"a"},
			func(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil })}},
			spine.Config{Telemetry: o.rec, Logger: o.log})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			ev, err := necro.NewEvent("a", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Enqueue(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}()
	for range 5 { // a cleanup runs after the collection that found the Spine unreachable
		runtime.GC()
	}
	if n, ok := processed(); !ok || n != 3 {
		t.Errorf("the collection after the Spine went: processed %d (reported %v), want 3", n, ok)
	}
	if n, ok := processed(); ok {
		t.Errorf("the next collection still reports processed %d for a Spine that is gone", n)
	}
}
