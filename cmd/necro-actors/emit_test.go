package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	goredis "github.com/redis/go-redis/v9"
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
		{"no redis", []string{"--type", "x"}, "", "no Redis URL"},
		{"empty redis", []string{"--type", "x", "--redis", ""}, "", "--redis is empty"},
		{"skip with type", []string{"--type", "x", "--skip", "2"}, "", "--skip"},
		{"skip negative", []string{"--skip", "-1"}, "{\"event_type\": \"x\"}\n", "--skip"},
		{"skip everything", []string{"--skip", "2"}, "{\"event_type\": \"x\"}\n{\"event_type\": \"y\"}\n", "no events after line 2"},
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

// A large input goes in, in many chunks, and every id is printed.
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

// bulkLines returns n lines of stdin, a blank line first, each event carrying its
// index i and pad bytes of padding.
func bulkLines(n, pad int) string {
	var b strings.Builder
	b.WriteString("\n")
	p := strings.Repeat("p", pad)
	for i := range n {
		fmt.Fprintf(&b, `{"event_type": "bulk", "payload": {"i": %d, "pad": "%s"}}`+"\n", i, p)
	}
	return b.String()
}

// streamIndexes returns the payload index i of each event in the default stream of
// srv, oldest first, and their ids.
func streamIndexes(t *testing.T, srv *redistest.Server) ([]int, []string) {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	msgs, err := rdb.XRange(t.Context(), necroredis.DefaultStream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	idx, ids := make([]int, len(msgs)), make([]string, len(msgs))
	for k, m := range msgs {
		raw, _ := m.Values["event"].(string)
		ev, err := necro.DecodeEvent([]byte(raw))
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		var p struct{ I int }
		if err := json.Unmarshal(ev.PayloadJSON(), &p); err != nil {
			t.Fatal(err)
		}
		idx[k], ids[k] = p.I, ev.ID()
	}
	return idx, ids
}

// A large input goes in chunk by chunk, each taking Redis a few milliseconds: with a
// client read timeout that one script of every line exceeds, emit still succeeds, and
// prints every id, each event in the stream once.
func TestEmitLargeInputNoFalseFailure(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const n = 60_000
	url := srv.URL() + "?read_timeout=50ms&write_timeout=5s"
	// One event first, as a warm server would have seen: Redis then knows the script,
	// and a script whose reply comes too late has still run.
	c := newCLI()
	if got := c.run(t, "emit", "--redis", url, "--type", "warm.up", "--payload", `{"i": -1}`); got != exitOK {
		t.Fatalf("emit --type: exit %d\n%s", got, c.output())
	}
	c = newCLI()
	c.stdin = strings.NewReader(bulkLines(n, 0))
	got := c.run(t, "emit", "--redis", url)
	if _, err := srv.Do("PING"); err != nil { // behind a script that may still run
		t.Fatal(err)
	}
	idx, ids := streamIndexes(t, srv)
	idx, ids = idx[1:], ids[1:]
	if got != exitOK {
		t.Fatalf("exit %d, and the stream holds %d of the %d events; stderr:\n%s", got, len(idx), n, c.stderr.String())
	}
	printed := strings.Fields(c.stdout.String())
	if !slices.Equal(printed, ids) {
		t.Errorf("printed %d ids, the stream holds %d events: want the same ids, in order", len(printed), len(ids))
	}
	for k, i := range idx {
		if i != k {
			t.Fatalf("stream entry %d holds event %d; want every line once, in order", k, i)
		}
	}
	if len(idx) != n {
		t.Errorf("the stream holds %d events, want %d", len(idx), n)
	}
}

// A real failure part-way (Redis out of memory) prints the ids of the events that
// went in, then one line naming the first line that did not and the command that
// resumes there; running that command enqueues the rest, each line once.
func TestEmitPartialFailureResumes(t *testing.T) {
	const n = 20_000
	input := bulkLines(n, 200)
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", asJSON), func(t *testing.T) {
			srv := redistest.Start(t, redistest.Config{Args: []string{"--maxmemory", "4mb", "--maxmemory-policy", "noeviction"}})
			args := []string{"emit", "--redis", srv.URL()}
			if asJSON {
				args = append(args, "--json")
			}
			c := newCLI()
			c.stdin = strings.NewReader(input)
			if got := c.run(t, args...); got != exitFailed {
				t.Fatalf("exit %d, want %d (the queue is full part-way)\n%s", got, exitFailed, c.output())
			}
			_, ids := streamIndexes(t, srv)
			k := len(ids)
			if k == 0 || k == n {
				t.Fatalf("the stream holds %d of %d events; the test wants a failure part-way", k, n)
			}
			var printed []string
			if asJSON {
				m := oneJSON(t, c.stdout.String())
				for _, id := range m["ids"].([]any) {
					printed = append(printed, id.(string))
				}
				// Line 1 is blank: event k is on line k+2.
				if m["enqueued"] != float64(k) || m["first_line_not_enqueued"] != float64(k+2) || m["skip"] != float64(k+1) {
					t.Errorf("printed %v with %d events in; want enqueued %d, first_line_not_enqueued %d, skip %d",
						m, k, k, k+2, k+1)
				}
			} else {
				printed = strings.Fields(c.stdout.String())
			}
			if !slices.Equal(printed, ids) {
				t.Fatalf("printed %d ids, the stream holds %d events: want exactly the ids that went in", len(printed), len(ids))
			}
			errs := errorLines(c.stderr.String())
			if len(errs) != 1 {
				t.Fatalf("stderr holds %d error lines, want one:\n%s", len(errs), c.stderr.String())
			}
			if want := fmt.Sprintf("line %d", k+2); !strings.Contains(errs[0], want) {
				t.Errorf("stderr %q does not name %s, the first line that did not go in", errs[0], want)
			}
			resume := regexp.MustCompile(`necro-actors (emit .*--skip \d+)`).FindStringSubmatch(errs[0])
			if resume == nil {
				t.Fatalf("stderr %q gives no command with --skip to resume", errs[0])
			}
			if _, err := srv.Do("CONFIG", "SET", "maxmemory", "0"); err != nil {
				t.Fatal(err)
			}
			c = newCLI()
			c.stdin = strings.NewReader(input)
			if got := c.run(t, strings.Fields(resume[1])...); got != exitOK {
				t.Fatalf("the resume command %q: exit %d\n%s", resume[1], got, c.output())
			}
			idx, _ := streamIndexes(t, srv)
			for k, i := range idx {
				if i != k {
					t.Fatalf("after the resume, stream entry %d holds event %d; want every line once, in order", k, i)
				}
			}
			if len(idx) != n {
				t.Errorf("after the resume the stream holds %d events, want %d", len(idx), n)
			}
		})
	}
}

// The line printed after a failure part-way names what went in, what may have, what
// did not, and the --skip that resumes.
func TestEmitPartialMessage(t *testing.T) {
	lines := []int{3, 4, 6, 7, 8, 9} // after --skip 2, with a blank line 5
	cause := errors.New("boom")
	tests := []struct {
		name string
		p    partial
		want []string
	}{
		{"refused", partial{lines: lines, in: 2, skipped: 2, err: cause, resume: "necro-actors emit --json"},
			[]string{"2 events went in, up to line 4", "line 6 and those after it did not: boom", "necro-actors emit --json --skip 4"}},
		{"unknown", partial{lines: lines, in: 2, unknown: 2, skipped: 2, err: cause, resume: "necro-actors emit"},
			[]string{"up to line 4", "lines 6-7 may or may not have gone in", "line 8 and those after it did not", "--skip 4", "--skip 7"}},
		{"unknown to the end", partial{lines: lines, in: 0, unknown: 6, skipped: 2, err: cause, resume: "necro-actors emit"},
			[]string{"no event went in for certain", "lines 3-9 may or may not", "--skip 2", "--skip 9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("message %q lacks %q", got, w)
				}
			}
			if strings.Contains(tt.p.String(), "\n") {
				t.Errorf("message %q is more than one line", got)
			}
		})
	}
	for in, want := range map[string]string{"redis://h:6379/0": "redis://h:6379/0", "it's here": `'it'\''s here'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// SIGINT or SIGTERM stops an emit between two chunks: the ids of those that went in
// are printed, and the line after them names where to resume (exit 5).
func TestEmitStopsOnSignal(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const n = 50_000
	c := newCLI()
	c.stdin = strings.NewReader(bulkLines(n, 0))
	p := c.start(t, "emit", "--redis", srv.URL())
	c.stdout.next(t) // the first chunk is in
	c.signals <- sigterm
	if got := p.wait(t, c); got != exitPending {
		t.Fatalf("exit %d, want %d\n%s", got, exitPending, c.output())
	}
	_, ids := streamIndexes(t, srv)
	if printed := strings.Fields(c.stdout.String()); !slices.Equal(printed, ids) || len(ids) == 0 || len(ids) == n {
		t.Fatalf("printed %d ids, the stream holds %d of %d; want the same, some but not all", len(printed), len(ids), n)
	}
	errs := errorLines(c.stderr.String())
	if want := fmt.Sprintf("--skip %d", len(ids)+1); len(errs) != 1 || !strings.Contains(errs[0], "stopped by a signal") ||
		!strings.Contains(errs[0], want) {
		t.Errorf("stderr should say in one line that a signal stopped it, and %q:\n%s", want, c.stderr.String())
	}
}
