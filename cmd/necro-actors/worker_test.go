package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// startWorker starts a worker of the chain app on srv and returns it once its ready
// line is out, with that line.
func startWorker(t *testing.T, srv *redistest.Server, args ...string) (*cli, *proc, map[string]any) {
	t.Helper()
	c := newCLI()
	code := c.start(t, append([]string{"worker", "chain", "--redis", srv.URL()}, args...)...)
	ready := c.stdout.nextJSON(t)
	if ready["event"] != "ready" {
		t.Fatalf("first line %v, want the ready line\n%s", ready, c.output())
	}
	return c, code, ready
}

// emit enqueues JSON lines with the emit command.
func emit(t *testing.T, srv *redistest.Server, lines ...string) {
	t.Helper()
	c := newCLI()
	c.stdin = strings.NewReader(strings.Join(lines, "\n"))
	if got := c.run(t, "emit", "--redis", srv.URL()); got != exitOK {
		t.Fatalf("emit: exit %d\n%s", got, c.output())
	}
}

// watch sets ch as the hook p and removes it when the test ends.
func watch[T any](t *testing.T, p interface{ Store(*chan T) }, ch chan T) {
	p.Store(&ch)
	t.Cleanup(func() { p.Store(nil) })
}

// A worker joins the group, says so, handles what emit enqueues, and at SIGTERM drains
// and exits 0, leaving nothing pending.
func TestWorkerServesAndDrains(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	seen := make(chan int, 3) // one per emitted event
	watch(t, &chainSeen, seen)
	c, code, ready := startWorker(t, srv, "--consumer", "worker-1", "--json")
	for k, want := range map[string]any{"app": "chain", "stream": "necrostack:events", "group": "necrostack",
		"consumer": "worker-1", "pid": float64(os.Getpid())} {
		if ready[k] != want {
			t.Errorf("ready line %s = %v, want %v", k, ready[k], want)
		}
	}

	emit(t, srv, `{"event_type": "chain.start", "payload": {"n": 1}}`, `{"event_type": "chain.start", "payload": {"n": 2}}`,
		`{"event_type": "chain.start", "payload": {"n": -3}}`)
	for range 3 {
		select {
		case <-seen:
		case <-time.After(20 * time.Second):
			t.Fatalf("the worker did not handle the emitted events\n%s", c.output())
		}
	}
	c.signals <- sigterm
	if got := code.wait(t, c); got != exitOK {
		t.Fatalf("exit %d after SIGTERM, want 0\n%s", got, c.output())
	}
	if l := c.stdout.nextJSON(t); l["event"] != "draining" {
		t.Errorf("line %v, want draining", l)
	}
	stopped := c.stdout.nextJSON(t)
	for k, want := range map[string]any{"event": "stopped", "drained": true, "processed": 6.0, "emitted": 3.0,
		"dead_lettered": 1.0, "consumer": "worker-1"} {
		if stopped[k] != want {
			t.Errorf("stopped line %s = %v, want %v", k, stopped[k], want)
		}
	}
	if res, _ := stopped["results"].(map[string]any); res == nil || len(res["done"].([]any)) != 2 {
		t.Errorf("stopped line results = %v, want done [1 2]", stopped["results"])
	}
	h := openStore(t, srv).Health(t.Context())
	if !h.Healthy || h.Pending != 0 || h.Lag != 0 || h.DeadLetters != 1 {
		t.Errorf("after the drain: %+v; want pending 0, lag 0, one dead letter", h)
	}
}

// A second signal during the drain stops the worker at once: exit 5, and the event it
// was handling stays pending in the group, where another worker takes it at once.
func TestWorkerSecondSignalLeavesPending(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	started := make(chan string, 2) // one per emitted event
	watch(t, &slowStarted, started)
	c, code, _ := startWorker(t, srv, "--consumer", "worker-1")
	emit(t, srv, `{"event_type": "chain.slow"}`, `{"event_type": "chain.slow"}`)
	select {
	case <-started: // the organ handles one event at a time: the other waits for it
	case <-time.After(20 * time.Second):
		t.Fatalf("the slow organ never started\n%s", c.output())
	}

	c.signals <- sigterm
	if l := c.stdout.nextJSON(t); l["event"] != "draining" {
		t.Fatalf("line %v after SIGTERM, want draining\n%s", l, c.output())
	}
	c.signals <- sigterm
	if got := code.wait(t, c); got != exitPending {
		t.Fatalf("exit %d after a second SIGTERM, want %d\n%s", got, exitPending, c.output())
	}
	if stopped := c.stdout.nextJSON(t); stopped["event"] != "stopped" || stopped["drained"] != false {
		t.Errorf("stopped line %v, want drained false", stopped)
	}
	if errs := errorLines(c.stderr.String()); len(errs) != 1 || !strings.Contains(errs[0], "second signal") ||
		!strings.Contains(errs[0], "pending") {
		t.Errorf("stderr should say in one line that a second signal left work pending:\n%s", c.stderr.String())
	}

	other := openStore(t, srv)
	// The event being handled is pending; the other one is pending too when the worker
	// had pulled it, and still unread otherwise.
	if h := other.Health(t.Context()); h.Pending < 1 || h.Pending+h.Lag != 2 {
		t.Fatalf("after the stop: pending %d, lag %d; want the slow event pending and none lost", h.Pending, h.Lag)
	}
	// Given back, not just left behind: another consumer takes them without waiting
	// out ClaimAfter.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var types []string
	for len(types) < 2 && ctx.Err() == nil {
		ds, err := other.Pull(ctx, 2)
		if err != nil {
			t.Fatalf("pull: %v (got %q so far)", err, types)
		}
		for _, d := range ds {
			types = append(types, d.Event.Type())
		}
	}
	if len(types) != 2 || types[0] != "chain.slow" || types[1] != "chain.slow" {
		t.Errorf("another consumer took %q, want the two chain.slow events", types)
	}
}

// The drain is bounded by --drain-timeout: past it the worker stops as at a second
// signal.
func TestWorkerDrainTimeout(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	started := make(chan string, 1) // one emitted event
	watch(t, &slowStarted, started)
	c, code, _ := startWorker(t, srv, "--drain-timeout", "100ms")
	emit(t, srv, `{"event_type": "chain.slow"}`)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatalf("the slow organ never started\n%s", c.output())
	}
	c.signals <- sigterm
	if got := code.wait(t, c); got != exitPending {
		t.Fatalf("exit %d, want %d\n%s", got, exitPending, c.output())
	}
	if !strings.Contains(c.stderr.String(), "within --drain-timeout 100ms") {
		t.Errorf("stderr should name the drain timeout:\n%s", c.stderr.String())
	}
}

// With --metrics-addr the worker serves /readyz and /metrics, at the address its ready
// line gives.
func TestWorkerEndpoints(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	c, code, ready := startWorker(t, srv, "--metrics-addr", "127.0.0.1:0")
	addr, _ := ready["metrics_addr"].(string)
	if addr == "" {
		t.Fatalf("ready line %v has no metrics_addr", ready)
	}
	get := func(path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(body)
	}
	if status, body := get("/readyz"); status != http.StatusOK || body != "redis: ok\nspine: ok\n" {
		t.Errorf("GET /readyz = %d %q, want 200 with both checks ok", status, body)
	}
	if status, body := get("/metrics"); status != http.StatusOK || !strings.Contains(body, "# TYPE") {
		t.Errorf("GET /metrics = %d, want 200 with metrics:\n%.500s", status, body)
	}
	c.signals <- sigterm
	if got := code.wait(t, c); got != exitOK {
		t.Fatalf("exit %d, want 0\n%s", got, c.output())
	}
}

func TestWorkerUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no redis", []string{"worker", "chain"}, "a worker serves a Redis stream"},
		{"no app", []string{"worker", "--redis", necroredis.DefaultURL}, "name the app"},
		{"bad window", []string{"worker", "chain", "--window", "-1"}, "--window must not be negative"},
		{"bad drain", []string{"worker", "chain", "--drain-timeout", "0s"}, "--drain-timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI()
			if got := c.run(t, tt.args...); got != exitUsage {
				t.Errorf("exit %d, want %d\n%s", got, exitUsage, c.output())
			}
			if !strings.Contains(c.stderr.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, c.stderr.String())
			}
		})
	}
}
