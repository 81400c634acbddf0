package telemetry_test

// The end-to-end proof of tracing: a real Jaeger, a real Redis, two worker processes
// sharing one consumer group, and a producer. Every root's chain must come back from
// Jaeger's query API as one trace with every organ's process span, each the child of
// the span that created its event; a dead-lettered event's trace must show the error.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/jaegertest"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// workerEnv holds a traceWorker as JSON in a worker process; TestMain runs the worker
// instead of the tests when it is set.
const workerEnv = "NECRO_TRACE_WORKER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(runWorker(spec))
	}
	os.Exit(m.Run())
}

// traceWorker is what a worker process is told to do. Its telemetry comes from the
// OTEL_* environment, as a user's would.
type traceWorker struct {
	URL      string
	Consumer string
	Ready    string // the file created once the worker is about to serve
	Log      string // the file of the worker's JSON logs
}

// traceMounts: A handles "a" and emits "b", B handles "b" and emits "c", C handles "c";
// Doomed always fails on "doomed". Each handling pauses 5ms and each worker holds one
// delivery at a time (Window 1), so that both workers get a share of the work even on a
// loaded machine.
func traceMounts() []necro.Mount {
	organ := func(next string) necro.OrganFunc {
		return func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if next == "" {
				return nil, nil
			}
			child, err := necro.NewEvent(next, ev.PayloadJSON())
			return []necro.Event{child}, err
		}
	}
	return []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, organ("b"))},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, organ("c"))},
		{Name: "C", Organ: necro.NewOrgan([]string{"c"}, organ(""))},
		{Name: "Doomed", Organ: necro.NewOrgan([]string{"doomed"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			return nil, errors.New("the payment provider refused the card")
		})},
	}
}

// runWorker serves traceMounts from Redis with telemetry from the environment until
// SIGTERM, then drains, flushes its spans and exits 0.
func runWorker(spec string) int {
	var w traceWorker
	if err := json.Unmarshal([]byte(spec), &w); err != nil {
		fmt.Fprintf(os.Stderr, "worker: bad %s: %v\n", workerEnv, err)
		return 1
	}
	logFile, err := os.Create(w.Log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		return 1
	}
	defer logFile.Close()
	log := telemetry.NewJSONLogger(logFile, slog.LevelInfo)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	orphaned := make(chan struct{}) // stdin's EOF: the test process is gone
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // only its end matters
		close(orphaned)
	}()

	ctx := context.Background()
	prov, err := telemetry.Setup(ctx, telemetry.SetupConfig{})
	if err != nil || !prov.Tracing() {
		log.Error("telemetry setup", slog.Any("err", err))
		return 1
	}
	b, err := necroredis.Open(ctx, necroredis.Config{URL: w.URL, Consumer: w.Consumer, Block: 20 * time.Millisecond,
		Logger: log})
	if err != nil {
		log.Error("open backend", slog.Any("err", err))
		return 1
	}
	sp, err := spine.New(b, traceMounts(), spine.Config{Window: 1, Logger: log, Telemetry: prov.Recorder(),
		Retry: supervision.RetryPolicy{MaxAttempts: 2,
			Backoff: supervision.Backoff{Base: time.Nanosecond, Max: time.Nanosecond, Jitter: supervision.NoJitter}}})
	if err != nil {
		log.Error("new spine", slog.Any("err", err))
		return 1
	}
	if err := os.WriteFile(w.Ready, nil, 0o644); err != nil {
		log.Error("ready file", slog.Any("err", err))
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- sp.Serve(ctx) }()
	code := 0
	select {
	case <-term:
		drain, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := sp.Shutdown(drain); err != nil {
			code = 3
		}
		cancel()
		if err := <-served; err != nil {
			code = 3
		}
	case err := <-served:
		log.Error("Serve returned without being asked to stop", slog.Any("err", err))
		code = 2
	case <-orphaned:
		return 5
	}
	if err := b.Close(); err != nil {
		code = max(code, 4)
	}
	flush, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := prov.Shutdown(flush); err != nil {
		log.Error("telemetry shutdown", slog.Any("err", err))
		code = max(code, 6)
	}
	log.Info("worker stopped", slog.Int("exit", code), slog.Any("stats", sp.Stats()))
	return code
}

// otelEnv is the OTEL_* environment of every process of the test: OTLP over HTTP to
// the test's Jaeger, exported within 50ms.
func otelEnv(j *jaegertest.Server, service string) []string {
	return []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_METRICS_EXPORTER=none",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + j.OTLPHTTPEndpoint(),
		"OTEL_BSP_SCHEDULE_DELAY=50",
		"OTEL_SERVICE_NAME=" + service,
	}
}

func TestTracesInJaegerAcrossTwoWorkersSharingRedis(t *testing.T) {
	j := jaegertest.Start(t)
	srv := redistest.Start(t, redistest.Config{})
	dir := t.TempDir()

	// Two workers, each a process of its own with its own service name.
	var procs []*exec.Cmd
	for i := range 2 {
		w := traceWorker{URL: srv.URL(), Consumer: fmt.Sprintf("worker-%d", i+1),
			Ready: filepath.Join(dir, fmt.Sprintf("ready-%d", i+1)), Log: filepath.Join(dir, fmt.Sprintf("worker-%d.log", i+1))}
		spec, _ := json.Marshal(w)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), workerEnv+"="+string(spec)), otelEnv(j, "necro-"+w.Consumer)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = stdin.Close()      // an orphaned worker exits
			_ = cmd.Process.Kill() // harmless once it has exited
			_ = cmd.Wait()         // reaps it; its exit was checked below
		})
		procs = append(procs, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				if b, err := os.ReadFile(w.Log); err == nil {
					t.Logf("%s log:\n%s", w.Consumer, b)
				}
			}
		})
		waitFile(t, w.Ready, 30*time.Second)
	}

	// The producer: a send span per root, through the same OTEL_* variables.
	for _, kv := range otelEnv(j, "necro-producer") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx := t.Context()
	prov, err := telemetry.Setup(ctx, telemetry.SetupConfig{})
	if err != nil || !prov.Tracing() {
		t.Fatalf("producer telemetry: %v (tracing %v)", err, prov != nil && prov.Tracing())
	}
	b, err := necroredis.Open(ctx, necroredis.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := prov.Recorder()
	dest := telemetry.Destination{System: "redis", Name: b.Config().Stream}
	const roots = 12
	chains := map[string]bool{} // root id → true
	var doomedID string
	for i := range roots + 1 {
		typ := "a"
		if i == roots {
			typ = "doomed"
		}
		ev, err := necro.NewEvent(typ, map[string]any{"root": i})
		if err != nil {
			t.Fatal(err)
		}
		sctx, span, evs := rec.Send(ctx, dest, []necro.Event{ev})
		err = b.Enqueue(sctx, evs...)
		span.EndErr(err)
		if err != nil {
			t.Fatal(err)
		}
		if typ == "a" {
			chains[ev.ID()] = true
		} else {
			doomedID = ev.ID()
		}
	}
	if err := prov.Shutdown(ctx); err != nil {
		t.Fatalf("producer telemetry shutdown: %v", err)
	}

	// Wait until the work is done: nothing pending or waiting, one dead letter.
	deadline := time.Now().Add(60 * time.Second)
	for {
		h := b.Health(ctx)
		if h.Healthy && h.Lag == 0 && h.Pending == 0 && h.Delayed == 0 && h.DeadLetters == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the work did not finish: %+v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, cmd := range procs {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v", i+1, err)
		}
	}

	// Ask Jaeger: every root's trace, whole.
	var traces []jaegertest.Trace
	deadline = time.Now().Add(30 * time.Second)
	for {
		traces, err = j.Traces(ctx, "necro-producer", 100)
		if err == nil && complete(traces, roots) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger has %d traces of necro-producer (err %v), not yet all %d chains and the dead letter complete:\n%s",
				len(traces), err, roots+1, describe(traces))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(traces) != roots+1 {
		t.Fatalf("Jaeger has %d traces of necro-producer, want one per root: %d\n%s", len(traces), roots+1, describe(traces))
	}
	services := map[string]bool{}
	crossed := 0
	for _, tr := range traces {
		send := only(t, tr, "send necrostack:events")
		rootID, _ := send.Tag("messaging.message.id")
		id, _ := rootID.(string)
		if id == doomedID {
			checkDoomed(t, tr, send)
			continue
		}
		if !chains[id] {
			t.Fatalf("trace %s: its send span names message %v, which is no root of this test", tr.TraceID, rootID)
		}
		delete(chains, id)
		a, bb, c := only(t, tr, "process a"), only(t, tr, "process b"), only(t, tr, "process c")
		for _, link := range []struct{ child, parent jaegertest.Span }{{a, send}, {bb, a}, {c, bb}} {
			if link.child.ParentSpanID() != link.parent.SpanID {
				t.Errorf("trace %s: %s's parent is %s, want %s (%s)", tr.TraceID, link.child.OperationName,
					link.child.ParentSpanID(), link.parent.SpanID, link.parent.OperationName)
			}
		}
		workers := map[string]bool{}
		for _, sp := range []jaegertest.Span{a, bb, c} {
			if v, _ := sp.Tag("messaging.message.conversation_id"); v != id {
				t.Errorf("trace %s: %s has conversation_id %v, want the root's id %s", tr.TraceID, sp.OperationName, v, id)
			}
			for k, want := range map[string]any{"messaging.system": "redis", "messaging.destination.name": "necrostack:events",
				"messaging.consumer.group.name": "necrostack", "messaging.operation.type": "process"} {
				if v, _ := sp.Tag(k); v != want {
					t.Errorf("trace %s: %s has %s = %v, want %v", tr.TraceID, sp.OperationName, k, v, want)
				}
			}
			svc := tr.Processes[sp.ProcessID].ServiceName
			services[svc], workers[svc] = true, true
		}
		if len(workers) > 1 {
			crossed++
		}
	}
	if len(chains) > 0 {
		t.Errorf("no trace for roots %v", slices.Collect(maps.Keys(chains)))
	}
	if !services["necro-worker-1"] || !services["necro-worker-2"] {
		t.Errorf("process spans came from %v, want both workers", services)
	}
	t.Logf("%d chains, %d of them handled by both workers", roots, crossed)
}

// checkDoomed checks the dead-lettered event's trace: two failed attempts under the send
// span, errors, and the dead letter on the last.
func checkDoomed(t *testing.T, tr jaegertest.Trace, send jaegertest.Span) {
	t.Helper()
	spans := named(tr, "process doomed")
	if len(spans) != 2 {
		t.Fatalf("dead-letter trace %s has %d process spans, want 2 attempts:\n%s", tr.TraceID, len(spans), describe([]jaegertest.Trace{tr}))
	}
	var outcomes []string
	for _, sp := range spans {
		if sp.ParentSpanID() != send.SpanID {
			t.Errorf("attempt span %s's parent is %s, want the send span %s", sp.SpanID, sp.ParentSpanID(), send.SpanID)
		}
		if v, _ := sp.Tag("otel.status_code"); v != "ERROR" {
			t.Errorf("attempt span %s has otel.status_code %v, want ERROR", sp.SpanID, v)
		}
		if v, _ := sp.Tag("error.type"); v == nil || v == "" {
			t.Errorf("attempt span %s has no error.type", sp.SpanID)
		}
		out, _ := sp.Tag("necro.outcome")
		s, _ := out.(string)
		outcomes = append(outcomes, s)
	}
	slices.Sort(outcomes)
	if !slices.Equal(outcomes, []string{"dead_letter", "retry"}) {
		t.Errorf("attempt outcomes %v, want one retry and one dead_letter", outcomes)
	}
	for _, sp := range spans {
		out, _ := sp.Tag("necro.outcome")
		if out != "dead_letter" {
			continue
		}
		if !hasLog(sp, "necro.dead_letter") || !hasLog(sp, "exception") {
			t.Errorf("the dead-lettered span has logs %+v, want necro.dead_letter and exception events", sp.Logs)
		}
	}
}

// complete reports whether traces hold every chain whole and the dead letter's attempts.
func complete(traces []jaegertest.Trace, roots int) bool {
	if len(traces) < roots+1 {
		return false
	}
	for _, tr := range traces {
		if len(named(tr, "send necrostack:events")) != 1 {
			return false
		}
		if len(named(tr, "process doomed")) == 0 && len(tr.Spans) < 4 {
			return false
		}
		if n := len(named(tr, "process doomed")); n > 0 && n < 2 {
			return false
		}
	}
	return true
}

func describe(traces []jaegertest.Trace) string {
	var out []byte
	for _, tr := range traces {
		out = fmt.Appendf(out, "trace %s:\n", tr.TraceID)
		for _, sp := range tr.Spans {
			out = fmt.Appendf(out, "  %s %s parent %s service %s\n", sp.SpanID, sp.OperationName, sp.ParentSpanID(),
				tr.Processes[sp.ProcessID].ServiceName)
		}
	}
	return string(out)
}

func waitFile(t *testing.T, path string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s", path, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// only returns the one span of tr named name.
func only(t *testing.T, tr jaegertest.Trace, name string) jaegertest.Span {
	t.Helper()
	spans := named(tr, name)
	if len(spans) != 1 {
		t.Fatalf("trace %s has %d spans named %q, want 1:\n%s", tr.TraceID, len(spans), name, describe([]jaegertest.Trace{tr}))
	}
	return spans[0]
}

func named(tr jaegertest.Trace, name string) []jaegertest.Span {
	var out []jaegertest.Span
	for _, sp := range tr.Spans {
		if sp.OperationName == name {
			out = append(out, sp)
		}
	}
	return out
}

// hasLog reports whether the span has a log (a span event) named name.
func hasLog(sp jaegertest.Span, name string) bool {
	for _, l := range sp.Logs {
		for _, f := range l.Fields {
			if f.Key == "event" && f.Value == name {
				return true
			}
		}
	}
	return false
}
