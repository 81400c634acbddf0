package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// pullAll pulls n events from the default stream and group of srv, as the test's own
// consumer.
func pullAll(t *testing.T, srv *redistest.Server, n int) []necro.Event {
	t.Helper()
	b := openStore(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out []necro.Event
	for len(out) < n {
		ds, err := b.Pull(ctx, n-len(out))
		if err != nil {
			t.Fatalf("pull: %v after %d of %d events", err, len(out), n)
		}
		for _, d := range ds {
			out = append(out, d.Event)
		}
	}
	return out
}

// emit with --type enqueues one event and prints its id.
func TestEmitFromFlags(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const id = "6f1c3a52-1b2e-4c3d-9e4f-5a6b7c8d9e0f"
	c := newCLI()
	if got := c.run(t, "emit", "--redis", srv.URL(), "--type", "order.placed", "--payload", `{"qty": 3}`, "--id", id); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	if got := c.stdout.String(); got != id+"\n" {
		t.Errorf("stdout %q, want the id", got)
	}
	ev := pullAll(t, srv, 1)[0]
	if ev.ID() != id || ev.Type() != "order.placed" || string(ev.PayloadJSON()) != `{"qty":3}` {
		t.Errorf("enqueued %v with payload %s", ev, ev.PayloadJSON())
	}

	c = newCLI()
	if got := c.run(t, "emit", "--redis", srv.URL(), "--type", "ping", "--json"); got != exitOK {
		t.Fatalf("--json: exit %d\n%s", got, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	if ids, _ := m["ids"].([]any); m["enqueued"] != 1.0 || len(ids) != 1 {
		t.Errorf("--json printed %v, want one id", m)
	}
}

// emit without --type reads one event per line of stdin, in either shape, and
// enqueues them in order.
func TestEmitFromStdin(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const wireID = "0b8e4c1a-5d6f-4a7b-8c9d-0e1f2a3b4c5d"
	c := newCLI()
	c.stdin = strings.NewReader(`{"event_type": "a", "payload": {"n": 1}}

{"event_type": "b"}
{"id": "` + wireID + `", "timestamp": "2026-01-02T03:04:05.000006+00:00", "event_type": "c", "payload": {"n": 3}}
`)
	if got := c.run(t, "emit", "--redis", srv.URL(), "--json"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	ids, _ := m["ids"].([]any)
	if m["enqueued"] != 3.0 || len(ids) != 3 || ids[2] != wireID {
		t.Fatalf("printed %v, want three ids, the last %s", m, wireID)
	}
	evs := pullAll(t, srv, 3)
	var got []string
	for i, ev := range evs {
		if ev.ID() != ids[i] {
			t.Errorf("event %d has id %s, printed %s", i, ev.ID(), ids[i])
		}
		got = append(got, ev.Type()+" "+string(ev.PayloadJSON()))
	}
	if want := []string{`a {"n":1}`, `b {}`, `c {"n":3}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("enqueued %q, want %q", got, want)
	}
	if ts := evs[2].Timestamp(); !ts.Equal(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)) {
		t.Errorf("the wire event's timestamp became %v", ts)
	}
}

// A bad line is reported with its number and what is wrong, and nothing is enqueued,
// not even the good lines before it.
func TestEmitBadLine(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	good := `{"event_type": "ok"}`
	tests := []struct {
		name string
		line string
		want string
	}{
		{"not JSON", `{"event_type": "x"`, "line 3: not JSON"},
		{"not an object", `["x"]`, "line 3: a JSON array, not an object"},
		{"no type", `{"payload": {}}`, `line 3: "event_type" is missing`},
		{"blank type", `{"event_type": "  "}`, "line 3: event_type: "},
		{"type not a string", `{"event_type": 7}`, `line 3: "event_type" is not a string`},
		{"unknown key", `{"event_type": "x", "paylaod": {}}`, `line 3: unknown key "paylaod"`},
		{"payload not an object", `{"event_type": "x", "payload": [1]}`, "line 3: payload: "},
		{"bad id", `{"event_type": "x", "id": "42"}`, "line 3: id: "},
		{"wire shape without id", `{"timestamp": "2026-01-02T03:04:05Z", "event_type": "x"}`, "line 3: "},
		{"repeated id", `{"event_type": "x", "id": "6f1c3a52-1b2e-4c3d-9e4f-5a6b7c8d9e0f"}`, "line 3: id 6f1c3a52-1b2e-4c3d-9e4f-5a6b7c8d9e0f is already on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI()
			c.stdin = strings.NewReader(`{"event_type": "x", "id": "6f1c3a52-1b2e-4c3d-9e4f-5a6b7c8d9e0f"}` + "\n" + good + "\n" + tt.line + "\n" + good + "\n")
			if got := c.run(t, "emit", "--redis", srv.URL()); got != exitUsage {
				t.Errorf("exit %d, want %d\n%s", got, exitUsage, c.output())
			}
			errs := errorLines(c.stderr.String())
			if len(errs) != 1 || !strings.Contains(errs[0], tt.want) || !strings.Contains(errs[0], "nothing was enqueued") {
				t.Errorf("stderr should say in one line %q and that nothing was enqueued:\n%s", tt.want, c.stderr.String())
			}
			if c.stdout.String() != "" {
				t.Errorf("stdout %q, want nothing", c.stdout.String())
			}
		})
	}
	if h := openStore(t, srv).Health(t.Context()); h.StreamLength != 0 {
		t.Errorf("the stream holds %d entries after bad input, want none", h.StreamLength)
	}
}

// Several bad lines: the first is named and the others counted.
func TestEmitSeveralBadLines(t *testing.T) {
	c := newCLI()
	c.stdin = strings.NewReader("{}\n{\"event_type\": \"ok\"}\n[]\n7\n")
	if got := c.run(t, "emit", "--redis", necroredis.DefaultURL); got != exitUsage {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	if want := `stdin line 1: "event_type" is missing (and 2 more bad lines); nothing was enqueued`; !strings.Contains(c.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, c.stderr.String())
	}
}

func TestEmitUsage(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"payload without type", []string{"--payload", "{}"}, "", "--payload needs --type"},
		{"id without type", []string{"--id", "6f1c3a52-1b2e-4c3d-9e4f-5a6b7c8d9e0f"}, "", "--id needs --type"},
		{"nothing on stdin", nil, "\n\n", "no events: give --type, or JSON lines on stdin"},
		{"payload not an object", []string{"--type", "x", "--payload", "[1]"}, "", "--payload: "},
		{"payload not JSON", []string{"--type", "x", "--payload", "{"}, "", "--payload: "},
		{"bad id", []string{"--type", "x", "--id", "nope"}, "", "--id: "},
		{"blank type", []string{"--type", " "}, "", "--type: "},
		{"an argument", []string{"--type", "x", "extra"}, "", "emit takes no arguments"},
		{"no redis", []string{"--type", "x", "--redis", ""}, "", "no Redis URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI()
			c.stdin = strings.NewReader(tt.stdin)
			args := append([]string{"emit"}, tt.args...)
			if !strings.Contains(tt.name, "redis") {
				args = append(args, "--redis", necroredis.DefaultURL) // never reached: the input is checked first
			}
			if got := c.run(t, args...); got != exitUsage {
				t.Errorf("exit %d, want %d\n%s", got, exitUsage, c.output())
			}
			if !strings.Contains(c.stderr.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, c.stderr.String())
			}
		})
	}
}

// A large input goes in one all-or-none enqueue.
func TestEmitManyLines(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const n = 20_000
	var b strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{"event_type": "bulk", "payload": map[string]int{"i": i}})
		b.Write(line)
		b.WriteByte('\n')
	}
	c := newCLI()
	c.stdin = strings.NewReader(b.String())
	if got := c.run(t, "emit", "--redis", srv.URL(), "--json"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	if m := oneJSON(t, c.stdout.String()); m["enqueued"] != float64(n) {
		t.Errorf("enqueued %v, want %d", m["enqueued"], n)
	}
	if h := openStore(t, srv).Health(t.Context()); h.Lag != n {
		t.Errorf("lag %d, want %d", h.Lag, n)
	}
}

// With tracing on, each event emit enqueues starts a trace of its own (its send span),
// and the spans are flushed before emit exits.
func TestEmitTraces(t *testing.T) {
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	srv := redistest.Start(t, redistest.Config{})
	c := newCLI()
	c.stdin = strings.NewReader("{\"event_type\": \"a\"}\n{\"event_type\": \"b\"}\n")
	if got := c.run(t, "emit", "--redis", srv.URL()); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	if posts.Load() == 0 {
		t.Error("no spans reached the collector: emit did not flush them")
	}
	evs := pullAll(t, srv, 2)
	traceID := func(ev necro.Event) string {
		parts := strings.Split(ev.TraceContext().Parent, "-")
		if len(parts) != 4 {
			t.Fatalf("event %s has traceparent %q", ev.Type(), ev.TraceContext().Parent)
		}
		return parts[1]
	}
	if a, b := traceID(evs[0]), traceID(evs[1]); a == b {
		t.Errorf("both events are in trace %s; want a trace each", a)
	}
}
