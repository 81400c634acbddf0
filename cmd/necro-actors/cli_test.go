package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
	goredis "github.com/redis/go-redis/v9"
)

// The test apps stand in for the bundled ones, so that these tests do not depend on
// them: "chain" is a two-organ chain with an organ that fails on purpose, "loop" an
// organ that emits its own event type forever.
func init() {
	goredis.SetLogger(discardRedisLog{}) // as main does
	apps["chain"] = newChainApp
	apps["loop"] = func(appOptions) (app, error) { return loopApp{}, nil }
}

// chainApp: organ first turns each chain.start {"n": n} into a chain.next, or a
// chain.slow when n is 0; organ second records n, and fails permanently when n is
// negative, so that event is dead-lettered; organ slow handles chain.slow by waiting
// until its ctx ends. The input is a JSON
// array of numbers, [1, 2, -3] by default.
type chainApp struct {
	opts appOptions
	nums []int

	mu   sync.Mutex
	done []int // the n that second handled
}

// chainSeen, when set, hears the n of every chain.next that organ second handled,
// failed or not; slowStarted hears each chain.slow that organ slow began. The tests
// that set them do not run in parallel.
var (
	chainSeen   atomic.Pointer[chan int]
	slowStarted atomic.Pointer[chan string]
)

func newChainApp(opts appOptions) (app, error) {
	a := &chainApp{opts: opts, nums: []int{1, 2, -3}}
	if opts.Input != "" {
		data, err := os.ReadFile(opts.Input)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(data, &a.nums); err != nil {
			return nil, fmt.Errorf("%s: %w", opts.Input, err)
		}
	}
	return a, nil
}

func (a *chainApp) Mounts() []necro.Mount {
	first := necro.NewOrgan([]string{"chain.start"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		typ := "chain.next"
		if n, _ := ev.Payload()["n"].(json.Number); n == "0" {
			typ = "chain.slow"
		}
		next, err := necro.NewEvent(typ, ev.PayloadJSON())
		return []necro.Event{next}, err
	})
	second := necro.NewOrgan([]string{"chain.next"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		var p struct{ N int }
		if err := ev.DecodePayload(&p); err != nil {
			return nil, necro.Permanent(err)
		}
		if ch := chainSeen.Load(); ch != nil {
			defer func() { *ch <- p.N }()
		}
		if p.N < 0 {
			return nil, necro.Permanent(fmt.Errorf("n %d is negative", p.N))
		}
		a.mu.Lock()
		a.done = append(a.done, p.N)
		a.mu.Unlock()
		return nil, nil
	})
	slow := necro.NewOrgan([]string{"chain.slow"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		if ch := slowStarted.Load(); ch != nil {
			*ch <- ev.ID()
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	return []necro.Mount{{Name: "first", Organ: first}, {Name: "second", Organ: second}, {Name: "slow", Organ: slow}}
}

func (a *chainApp) Config(base spine.Config) spine.Config {
	base.Retry = supervision.RetryPolicy{MaxAttempts: 2, Backoff: supervision.Backoff{Base: time.Millisecond}}
	return base
}

func (a *chainApp) Roots() ([]necro.Event, error) {
	roots := make([]necro.Event, len(a.nums))
	for i, n := range a.nums {
		var err error
		if roots[i], err = necro.NewEvent("chain.start", map[string]int{"n": n}); err != nil {
			return nil, err
		}
	}
	return roots, nil
}

func (a *chainApp) Begin(w io.Writer) {
	fmt.Fprintf(w, "chain: %d roots\n", len(a.nums))
	if !a.opts.Quiet {
		for _, n := range a.nums {
			fmt.Fprintf(w, "  root %d\n", n)
		}
	}
}

func (a *chainApp) Report(w io.Writer, st spine.Stats, dead []backend.DeadLetter, _ time.Duration) error {
	fmt.Fprintf(w, "processed %d, emitted %d, dead letters %d\n", st.Processed, st.Emitted, len(dead))
	fmt.Fprintf(w, "done: %v\n", a.Results().(map[string][]int)["done"])
	for _, dl := range dead {
		fmt.Fprintf(w, "dead: %s %s (%s)\n", dl.Organ, dl.Event.Type(), dl.Reason)
	}
	return nil
}

func (a *chainApp) Results() any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return map[string][]int{"done": slices.Sorted(slices.Values(a.done))}
}

// loopApp's organ answers every loop.tick with another: only the step budget ends it.
type loopApp struct{}

func (loopApp) Mounts() []necro.Mount {
	tick := necro.NewOrgan([]string{"loop.tick"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		next, err := necro.NewEvent("loop.tick", nil)
		return []necro.Event{next}, err
	})
	return []necro.Mount{{Name: "tick", Organ: tick}}
}
func (loopApp) Config(base spine.Config) spine.Config { base.MaxSteps = 50; return base }
func (loopApp) Roots() ([]necro.Event, error) {
	ev, err := necro.NewEvent("loop.tick", nil)
	return []necro.Event{ev}, err
}
func (loopApp) Begin(io.Writer) {}
func (loopApp) Report(w io.Writer, st spine.Stats, _ []backend.DeadLetter, _ time.Duration) error {
	_, err := fmt.Fprintf(w, "ticks: %d\n", st.Processed)
	return err
}
func (loopApp) Results() any { return nil }

// A cli runs commands the way main does, with buffers for stdout and stderr, a signal
// channel the test controls, and an environment of its own.
type cli struct {
	stdin   io.Reader
	stdout  *lineWriter
	stderr  *lineWriter
	signals chan os.Signal
	vars    map[string]string
}

func newCLI() *cli {
	// A test sends at most two signals, and sends them without waiting for the command.
	return &cli{stdout: newLineWriter(), stderr: newLineWriter(), signals: make(chan os.Signal, 2), vars: map[string]string{}}
}

func (c *cli) env() *env {
	stdin := c.stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	return &env{stdin: stdin, stdout: c.stdout, stderr: c.stderr, signals: c.signals,
		getenv: func(k string) string { return c.vars[k] }}
}

// run runs one command to its end and returns its exit code.
func (c *cli) run(t *testing.T, args ...string) int {
	t.Helper()
	return run(t.Context(), args, c.env())
}

// A proc is a command running in the background.
type proc struct {
	done chan struct{} // closed when the command has returned
	code int           // its exit code, once done
}

// start runs one command in the background; the test ends only after it.
func (c *cli) start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.code = run(t.Context(), args, c.env())
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Errorf("%q still running 30s after the test ended", args)
		}
	})
	return p
}

// output is what the command wrote, for failure messages.
func (c *cli) output() string {
	return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", c.stdout.String(), c.stderr.String())
}

// A lineWriter keeps what a command writes and hands over each complete line, for
// tests that wait for a worker's lines.
type lineWriter struct {
	mu    sync.Mutex
	all   bytes.Buffer
	part  []byte
	lines chan string
}

func newLineWriter() *lineWriter {
	// Lines are handed over while the command writes: a command writes a handful of
	// lines a test waits for, and the rest (logs) only if nobody reads, so a Write
	// never blocks: lines past the buffer are kept in all only.
	return &lineWriter{lines: make(chan string, 64)}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- string(w.part[:i]):
		default:
		}
		w.part = w.part[i+1:]
	}
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// next waits for the next line.
func (w *lineWriter) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("no line after 20s; so far:\n%s", w.String())
		return ""
	}
}

// nextJSON waits for the next line and decodes it as a JSON object.
func (w *lineWriter) nextJSON(t *testing.T) map[string]any {
	t.Helper()
	l := w.next(t)
	var m map[string]any
	if err := json.Unmarshal([]byte(l), &m); err != nil {
		t.Fatalf("line %q is not a JSON object: %v", l, err)
	}
	return m
}

// wait waits for a background command's exit code.
func (p *proc) wait(t *testing.T, c *cli) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not end within 30s\n%s", c.output())
		return -1
	}
}

// oneJSON decodes s as exactly one JSON object and nothing else.
func oneJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, s)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		t.Fatalf("stdout holds more than one JSON value (%v):\n%s", err, s)
	}
	return m
}

// openStore opens the default stream and group of srv as the test's own consumer,
// closed when the test ends.
func openStore(t *testing.T, srv *redistest.Server) *necroredis.Backend {
	t.Helper()
	b, err := necroredis.Open(t.Context(), necroredis.Config{URL: srv.URL(), Consumer: "test-observer"})
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() }) // a test that closes it first makes this ErrClosed
	return b
}

// Every command that talks to Redis sorts its failures into exit codes, in one line of
// stderr that never shows the password.
func TestRedisFailureExitCodes(t *testing.T) {
	const password = "corr3ct-horse-battery"
	srv := redistest.Start(t, redistest.Config{Password: password})
	const wrong = "wr0ng-pass-word"
	wrongURL := strings.Replace(srv.URL(), password, wrong, 1)
	closedPort := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close() // nothing listens there any more: that is the point
		return addr
	}()
	urls := []struct {
		name   string
		url    string
		want   int
		secret string
	}{
		{"wrong password", wrongURL, exitAuth, wrong},
		{"malformed URL", "redis://:" + wrong + "@127.0.0.1:port/0", exitUsage, wrong},
		{"not a redis scheme", "http://:" + wrong + "@127.0.0.1:6379/0", exitUsage, wrong},
		{"unreachable", "redis://:" + wrong + "@" + closedPort + "/0", exitUnreachable, wrong},
	}
	commands := [][]string{
		{"run", "chain", "--redis"},
		{"worker", "chain", "--redis"},
		{"emit", "--type", "t", "--redis"},
	}
	for _, u := range urls {
		for _, cmd := range commands {
			t.Run(u.name+"/"+cmd[0], func(t *testing.T) {
				c := newCLI()
				start := time.Now()
				got := c.run(t, append(slices.Clone(cmd), u.url)...)
				if got != u.want {
					t.Errorf("exit code %d, want %d\n%s", got, u.want, c.output())
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("took %v, want a quick answer", d)
				}
				out := c.stdout.String() + c.stderr.String()
				if n := strings.Count(out, u.secret); n != 0 {
					t.Errorf("the password appears %d times in the output:\n%s", n, c.output())
				}
				if errs := errorLines(c.stderr.String()); len(errs) != 1 || !strings.HasPrefix(errs[0], "necro-actors "+cmd[0]+": ") {
					t.Errorf("stderr has %d error lines, want one (beside JSON logs):\n%s", len(errs), c.stderr.String())
				}
			})
		}
	}
}

// The URL may come from a file or from NECRO_REDIS_URL instead of the command line;
// two ways at once is a usage error.
func TestRedisURLSources(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	file := t.TempDir() + "/url"
	if err := os.WriteFile(file, []byte(srv.URL()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	if got := c.run(t, "emit", "--type", "from.file", "--redis-url-file", file); got != exitOK {
		t.Fatalf("emit --redis-url-file: exit %d\n%s", got, c.output())
	}
	c = newCLI()
	c.vars["NECRO_REDIS_URL"] = srv.URL()
	if got := c.run(t, "emit", "--type", "from.env"); got != exitOK {
		t.Fatalf("emit with NECRO_REDIS_URL: exit %d\n%s", got, c.output())
	}
	if h := openStore(t, srv).Health(t.Context()); h.Lag != 2 {
		t.Errorf("lag %d after two emits, want 2 (%+v)", h.Lag, h)
	}
	c = newCLI()
	if got := c.run(t, "emit", "--type", "x", "--redis", srv.URL(), "--redis-url-file", file); got != exitUsage {
		t.Errorf("--redis and --redis-url-file: exit %d, want %d\n%s", got, exitUsage, c.output())
	}
}

// Each command's -h exits 0 and lists its flags.
func TestHelp(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"run":    {"-redis", "-input", "-seed", "-no-random-failures", "-quiet", "-json", "-metrics-addr", "apps: ", "chain"},
		"worker": {"-redis", "-consumer", "-window", "-metrics-addr", "-drain-timeout", "-json", "apps: ", "chain"},
		"emit":   {"-redis", "-type", "-payload", "-id", "-json", "nothing is enqueued"},
	} {
		for _, h := range []string{"-h", "--help"} {
			t.Run(cmd+h, func(t *testing.T) {
				c := newCLI()
				if got := c.run(t, cmd, h); got != exitOK {
					t.Errorf("exit %d, want 0\n%s", got, c.output())
				}
				for _, f := range flags {
					if !strings.Contains(c.stderr.String(), f) {
						t.Errorf("help lacks %q:\n%s", f, c.stderr.String())
					}
				}
			})
		}
	}
}

// errorLines returns the lines of stderr that are not JSON logs.
func errorLines(stderr string) []string {
	var out []string
	for l := range strings.Lines(stderr) {
		if !json.Valid([]byte(l)) {
			out = append(out, strings.TrimSuffix(l, "\n"))
		}
	}
	return out
}

// sigterm is what a supervisor sends.
var sigterm os.Signal = syscall.SIGTERM
