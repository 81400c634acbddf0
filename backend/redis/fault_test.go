package redis_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// The fault tests run workers as real processes: the test binary itself, started again
// with workerEnv holding a faultWorker as JSON. TestMain sees it and runs the worker
// instead of the tests, so a worker can be killed with SIGKILL as a crash would, or
// stopped with SIGTERM as an orchestrator would.
const workerEnv = "NECRO_FAULT_WORKER"

// failpointEnv arms a crash point in a worker built with the necro_failpoint tag (see
// backend/redis/failpoint.go and failpoint_test.go).
const failpointEnv = "NECRO_REDIS_FAILPOINT"

// Bounds for a loaded CI machine: generous, since only a hang or a loss should fail.
const (
	completeWithin = 90 * time.Second // every (type, root) pair handled
	settleWithin   = 30 * time.Second // nothing pending after the last handle
	exitWithin     = 45 * time.Second // a worker's exit after SIGTERM; it drains first
	readyWithin    = 30 * time.Second // a worker's start, Open included
	workerDrain    = 20 * time.Second // the worker's own bound on Shutdown
	pollEvery      = 50 * time.Millisecond
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(runWorker(spec))
	}
	os.Exit(m.Run())
}

// faultWorker is what a worker process is told to do.
type faultWorker struct {
	URL      string
	Stream   string
	Group    string
	Consumer string
	Out      string        // the file each handle appends "<type> <root> <event id>\n" to
	Log      string        // the file of the worker's JSON logs
	Ready    string        // the file created once the worker is about to serve
	Pause    time.Duration // how long each handle sleeps after writing its line
}

// chainPayload is the payload of every event of the workload.
type chainPayload struct {
	Root int `json:"root"`
	Step int `json:"step"`
}

// Worker exit codes; 0 is a clean stop after SIGTERM.
const (
	exitSetup       = 1 // the worker could not start
	exitServeEnded  = 2 // Serve returned without being asked to stop
	exitDrainFailed = 3 // Shutdown ran out of time
	exitCloseFailed = 4
	exitOrphaned    = 5 // the test process went away
)

// runWorker serves the three-organ chain from Redis until SIGTERM, then drains and
// closes. It returns the process's exit code.
func runWorker(spec string) int {
	var w faultWorker
	if err := json.Unmarshal([]byte(spec), &w); err != nil {
		fmt.Fprintf(os.Stderr, "worker: bad %s: %v\n", workerEnv, err)
		return exitSetup
	}
	logFile, err := os.OpenFile(w.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker: open log: %v\n", err)
		return exitSetup
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	out, err := os.OpenFile(w.Out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Error("open output", slog.Any("err", err))
		return exitSetup
	}
	defer out.Close()

	// SIGTERM is caught before the store is opened, so that one sent early still drains.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	// Stdin is a pipe whose other end only the test process holds: EOF means the test
	// process is gone (a test timeout, say), and a worker left alone must not go on.
	orphaned := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // only its end matters
		close(orphaned)
	}()
	log.Info("worker starting", slog.String("consumer", w.Consumer), slog.Duration("pause", w.Pause),
		slog.String("failpoint", os.Getenv(failpointEnv)), slog.Int("pid", os.Getpid()))

	ctx := context.Background()
	openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	b, err := necroredis.Open(openCtx, necroredis.Config{
		URL: w.URL, Stream: w.Stream, Group: w.Group, Consumer: w.Consumer,
		ClaimAfter: time.Second, Block: 20 * time.Millisecond, Logger: log,
	})
	cancel()
	if err != nil {
		log.Error("open backend", slog.Any("err", err))
		return exitSetup
	}
	sp, err := spine.New(b, faultMounts(out, w.Pause), spine.Config{
		Window:         32,
		BackendBackoff: supervision.Backoff{Max: 500 * time.Millisecond},
		Logger:         log,
	})
	if err != nil {
		log.Error("new spine", slog.Any("err", err))
		_ = b.Close() // the setup error is the one to report
		return exitSetup
	}
	if err := os.WriteFile(w.Ready, nil, 0o644); err != nil {
		log.Error("write ready file", slog.Any("err", err))
		_ = b.Close() // the setup error is the one to report
		return exitSetup
	}

	served := make(chan error, 1)
	go func() { served <- sp.Serve(ctx) }()
	code := 0
	select {
	case <-term:
		log.Info("SIGTERM; draining")
		start := time.Now()
		drainCtx, cancel := context.WithTimeout(ctx, workerDrain)
		err := sp.Shutdown(drainCtx)
		cancel()
		serveErr := <-served
		log.Info("drained", slog.Duration("took", time.Since(start)), slog.Any("shutdown_err", err), slog.Any("serve_err", serveErr))
		if err != nil || serveErr != nil {
			code = exitDrainFailed
		}
	case err := <-served:
		log.Error("Serve returned without being asked to stop", slog.Any("err", err))
		code = exitServeEnded
	case <-orphaned:
		log.Error("the test process is gone; exiting at once")
		return exitOrphaned
	}
	st := sp.Stats()
	if err := b.Close(); err != nil {
		log.Error("close backend", slog.Any("err", err))
		code = max(code, exitCloseFailed)
	}
	log.Info("worker stopped", slog.Int("exit", code), slog.Any("metrics", b.Metrics()),
		slog.Int64("processed", st.Processed), slog.Int64("emitted", st.Emitted),
		slog.Int64("backend_errors", st.BackendErrors), slog.Int64("ack_errors", st.AckErrors),
		slog.Any("handler_errors", st.HandlerErrors))
	return code
}

// faultMounts is the chain workload: A handles "a" and emits a "b", B handles "b" and
// emits a "c", C handles "c". Every handle appends one line to out, in a single write to
// a file opened with O_APPEND, so lines written before a SIGKILL survive it; then it
// sleeps for pause, so that kills land mid-handle.
func faultMounts(out *os.File, pause time.Duration) []necro.Mount {
	organ := func(next string) necro.OrganFunc {
		return func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
			var p chainPayload
			if err := ev.DecodePayload(&p); err != nil {
				return nil, necro.Permanent(err)
			}
			if _, err := out.Write(fmt.Appendf(nil, "%s %d %s\n", ev.Type(), p.Root, ev.ID())); err != nil {
				return nil, err
			}
			if pause > 0 {
				t := time.NewTimer(pause)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				}
			}
			if next == "" {
				return nil, nil
			}
			child, err := necro.NewEvent(next, chainPayload{Root: p.Root, Step: p.Step + 1})
			return []necro.Event{child}, err
		}
	}
	return []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, organ("b"))},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, organ("c"))},
		{Name: "C", Organ: necro.NewOrgan([]string{"c"}, organ(""))},
	}
}

// chainTypes are the event types every root goes through.
var chainTypes = []string{"a", "b", "c"}

// A pair is one (event type, root) the workload must handle.
type pair struct {
	typ  string
	root int
}

func (p pair) String() string { return fmt.Sprintf("%s/%d", p.typ, p.root) }

// A tally is what the workers' output files say was handled.
type tally struct {
	ids      map[pair][]string // every handle of each pair, by event id, in file order
	who      map[pair][]string // the worker of each of those handles
	byWorker map[string]int    // handles per worker
	odd      []string          // lines that are not of the workload
}

func (tl tally) handles() int {
	n := 0
	for _, c := range tl.byWorker {
		n += c
	}
	return n
}

// lost lists the expected pairs never handled, in order.
func (tl tally) lost(roots int) []pair {
	var out []pair
	for i := range roots {
		for _, typ := range chainTypes {
			if p := (pair{typ, i}); len(tl.ids[p]) == 0 {
				out = append(out, p)
			}
		}
	}
	return out
}

// duplicates lists the pairs handled more than once, sorted.
func (tl tally) duplicates() []pair {
	var out []pair
	for p, ids := range tl.ids {
		if len(ids) > 1 {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b pair) int {
		if a.root != b.root {
			return a.root - b.root
		}
		return strings.Compare(a.typ, b.typ)
	})
	return out
}

// A faultRig is one fault test's world: its own redis-server, a fresh stream and
// group, R roots, and the worker processes it started.
type faultRig struct {
	t             *testing.T
	srv           *redistest.Server
	rdb           *goredis.Client // inspects the server
	stream, group string
	roots         int
	dir           string
	workers       []*faultProc
}

// A faultProc is one worker process.
type faultProc struct {
	name                    string // its consumer name
	out, log, stderr, ready string
	cmd                     *exec.Cmd
	done                    chan struct{} // closed when the process has exited
	state                   *os.ProcessState
	stopped                 bool // killed or stopped on purpose, or expected to crash
}

// newRig starts a redis-server for the test. When the test fails, the workers' logs are
// attached to the failure.
func newRig(t *testing.T, cfg redistest.Config, roots int) *faultRig {
	t.Helper()
	r := &faultRig{t: t, srv: redistest.Start(t, cfg), stream: unique("necro:fault:"), group: unique("fault-"),
		roots: roots, dir: t.TempDir()}
	r.rdb = goredis.NewClient(&goredis.Options{Addr: r.srv.Addr()})
	t.Cleanup(func() {
		_ = r.rdb.Close() // the test is over; nothing depends on it
		for _, w := range r.workers {
			if w.running() {
				_ = w.cmd.Process.Kill() // the test is over; an error says it exited already
				<-w.done
			}
		}
		if t.Failed() {
			for _, w := range r.workers {
				t.Logf("worker %s (%s):\n--- log ---\n%s--- stderr ---\n%s", w.name, w.exitText(),
					tail(w.log, 40_000), tail(w.stderr, 10_000))
			}
		}
	})
	return r
}

// tail returns the end of a file, at most n bytes.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	if len(b) > n {
		b = append([]byte("...\n"), b[len(b)-n:]...)
	}
	return string(b)
}

// enqueue adds the roots, {"root": i} of type "a", to the stream.
func (r *faultRig) enqueue() {
	r.t.Helper()
	producer := open(r.t, r.srv, necroredis.Config{Stream: r.stream, Group: r.group, Consumer: "producer"})
	var evs []necro.Event
	for i := range r.roots {
		ev, err := necro.NewEvent("a", chainPayload{Root: i, Step: 1})
		if err != nil {
			r.t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for batch := range slices.Chunk(evs, 100) {
		if err := producer.Enqueue(r.t.Context(), batch...); err != nil {
			r.t.Fatalf("enqueue %d roots: %v", len(batch), err)
		}
	}
	if err := producer.Close(); err != nil {
		r.t.Fatalf("close the producer: %v", err)
	}
}

// workerOpts are the settings that vary between the workers of a test.
type workerOpts struct {
	pause     time.Duration
	failpoint string // failpointEnv's value; "" arms none
	waitReady bool   // wait until the worker is about to serve
}

// start runs a worker process with the given consumer name.
func (r *faultRig) start(name string, o workerOpts) *faultProc {
	r.t.Helper()
	w := &faultProc{name: name, done: make(chan struct{})}
	for _, f := range []struct {
		p    *string
		ext  string
		make bool
	}{{&w.out, "out", true}, {&w.log, "log", true}, {&w.stderr, "stderr", false}, {&w.ready, "ready", false}} {
		*f.p = filepath.Join(r.dir, name+"."+f.ext)
		if f.make {
			if err := os.WriteFile(*f.p, nil, 0o644); err != nil {
				r.t.Fatal(err)
			}
		}
	}
	spec, err := json.Marshal(faultWorker{URL: r.srv.URL(), Stream: r.stream, Group: r.group, Consumer: name,
		Out: w.out, Log: w.log, Ready: w.ready, Pause: o.pause})
	if err != nil {
		r.t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, workerEnv+"=") && !strings.HasPrefix(kv, failpointEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, workerEnv+"="+string(spec))
	if o.failpoint != "" {
		env = append(env, failpointEnv+"="+o.failpoint)
	}
	stderr, err := os.Create(w.stderr)
	if err != nil {
		r.t.Fatal(err)
	}
	// The worker's stdin is a pipe whose write end stays here: it sees EOF when this
	// process ends, however it ends, and exits rather than serve forever.
	lifeline, keep, err := os.Pipe()
	if err != nil {
		r.t.Fatal(err)
	}
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env, w.cmd.Stdin, w.cmd.Stdout, w.cmd.Stderr = env, lifeline, stderr, stderr
	err = w.cmd.Start()
	lifeline.Close() // the worker has its own copy
	if err != nil {
		stderr.Close()
		keep.Close()
		r.t.Fatalf("start worker %s: %v", name, err)
	}
	go func() {
		_ = w.cmd.Wait() // the exit status is read from ProcessState
		stderr.Close()
		keep.Close()
		w.state = w.cmd.ProcessState
		close(w.done)
	}()
	r.workers = append(r.workers, w)
	if o.waitReady {
		r.waitReady(w)
	}
	return w
}

// waitReady waits until the worker has opened the store and is about to serve.
func (r *faultRig) waitReady(w *faultProc) {
	r.t.Helper()
	deadline := time.Now().Add(readyWithin)
	for {
		if _, err := os.Stat(w.ready); err == nil {
			return
		}
		if !w.running() {
			r.t.Fatalf("worker %s %s before it was ready", w.name, w.exitText())
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("worker %s not ready within %v", w.name, readyWithin)
		}
		time.Sleep(pollEvery)
	}
}

func (w *faultProc) running() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// exitText says how the worker ended, or that it runs.
func (w *faultProc) exitText() string {
	if w.running() {
		return "running"
	}
	return "exited: " + w.state.String()
}

// kill ends the worker with SIGKILL, as a crash would, and waits until it is gone.
func (r *faultRig) kill(w *faultProc) {
	r.t.Helper()
	w.stopped = true
	_ = w.cmd.Process.Signal(syscall.SIGKILL) // it may have exited already; the state tells
	<-w.done
	r.t.Logf("worker %s killed with SIGKILL", w.name)
}

// terminate sends SIGTERM and waits for the worker to exit 0 after draining.
func (r *faultRig) terminate(w *faultProc) {
	r.t.Helper()
	w.stopped = true
	start := time.Now()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Errorf("SIGTERM to worker %s: %v (%s)", w.name, err, w.exitText())
	}
	select {
	case <-w.done:
	case <-time.After(exitWithin):
		r.t.Fatalf("worker %s did not exit within %v of SIGTERM", w.name, exitWithin)
	}
	if code := w.state.ExitCode(); code != 0 {
		r.t.Errorf("worker %s %s after SIGTERM, want exit status 0", w.name, w.exitText())
	}
	r.t.Logf("worker %s exited %v after SIGTERM", w.name, time.Since(start).Round(time.Millisecond))
}

// checkAlive fails the test when a worker that should be serving has exited.
func (r *faultRig) checkAlive() {
	r.t.Helper()
	for _, w := range r.workers {
		if !w.stopped && !w.running() {
			r.t.Fatalf("worker %s %s while it should be serving", w.name, w.exitText())
		}
	}
}

// read parses every worker's output file.
func (r *faultRig) read() tally {
	r.t.Helper()
	tl := tally{ids: map[pair][]string{}, who: map[pair][]string{}, byWorker: map[string]int{}}
	for _, w := range r.workers {
		f, err := os.Open(w.out)
		if err != nil {
			r.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			p, id, ok := r.parseLine(sc.Text())
			if !ok {
				// A line cut short by SIGKILL would land here; one write per line
				// makes that impossible, so any odd line is a finding.
				tl.odd = append(tl.odd, w.name+": "+sc.Text())
				continue
			}
			tl.ids[p] = append(tl.ids[p], id)
			tl.who[p] = append(tl.who[p], w.name)
			tl.byWorker[w.name]++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			r.t.Fatal(err)
		}
	}
	return tl
}

// parseLine reads "<type> <root> <event id>" as a handle of the workload.
func (r *faultRig) parseLine(line string) (pair, string, bool) {
	fields := strings.Fields(line)
	if len(fields) != 3 || !slices.Contains(chainTypes, fields[0]) {
		return pair{}, "", false
	}
	root, err := strconv.Atoi(fields[1])
	if err != nil || root < 0 || root >= r.roots {
		return pair{}, "", false
	}
	return pair{fields[0], root}, fields[2], true
}

// waitFor polls the output files until done says the tally is enough, and fails the
// test after within or when every worker that should be serving has exited.
func (r *faultRig) waitFor(what string, within time.Duration, done func(tally) bool) tally {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		tl := r.read()
		if done(tl) {
			return tl
		}
		r.checkAlive()
		if time.Now().After(deadline) {
			lost := tl.lost(r.roots)
			r.t.Fatalf("%s: not reached within %v; %d handles so far, %d of %d pairs never handled (first: %v); %s",
				what, within, tl.handles(), len(lost), 3*r.roots, lost[:min(len(lost), 20)], r.redisState())
		}
		time.Sleep(pollEvery)
	}
}

// progress waits until at least n distinct pairs have been handled, and for each
// worker named in by, at least one handle by it.
func (r *faultRig) progress(n int, by ...*faultProc) tally {
	r.t.Helper()
	return r.waitFor(fmt.Sprintf("%d pairs handled", n), completeWithin, func(tl tally) bool {
		for _, w := range by {
			if tl.byWorker[w.name] == 0 {
				return false
			}
		}
		return len(tl.ids) >= n
	})
}

// finish waits until every pair has been handled and nothing is pending, stops the
// workers still serving with SIGTERM (each must exit 0), and checks the outcome: no
// pair lost, no dead letter, one event id per pair. It returns the final tally.
func (r *faultRig) finish() tally {
	r.t.Helper()
	start := time.Now()
	r.waitFor("every pair handled", completeWithin, func(tl tally) bool { return len(tl.lost(r.roots)) == 0 })
	r.t.Logf("every pair handled %v after finish began", time.Since(start).Round(time.Millisecond))
	r.waitNothingPending()
	r.checkAlive()
	for _, w := range r.workers {
		if w.running() {
			r.terminate(w)
		}
	}
	tl := r.read()
	if lost := tl.lost(r.roots); len(lost) > 0 {
		r.t.Errorf("%d pairs lost: %v", len(lost), lost)
	}
	if len(tl.odd) > 0 {
		r.t.Errorf("output lines not of the workload: %q", tl.odd)
	}
	dups := tl.duplicates()
	for _, p := range dups {
		if ids := slices.Compact(slices.Sorted(slices.Values(tl.ids[p]))); len(ids) > 1 {
			r.t.Errorf("pair %v handled %d times under %d different ids %v; a repeated handle must carry the same id",
				p, len(tl.ids[p]), len(ids), ids)
		}
	}
	r.t.Logf("%d handles of %d pairs; %d pairs handled more than once%s; per worker: %v",
		tl.handles(), 3*r.roots, len(dups), tl.sample(dups), tl.byWorker)
	r.checkDeadLetters()
	return tl
}

// sample shows the first few duplicated pairs and the workers that handled them.
func (tl tally) sample(dups []pair) string {
	if len(dups) == 0 {
		return ""
	}
	var b strings.Builder
	for _, p := range dups[:min(len(dups), 10)] {
		fmt.Fprintf(&b, " %v by %s;", p, strings.Join(tl.who[p], "+"))
	}
	return " (first:" + strings.TrimSuffix(b.String(), ";") + ")"
}

// pending returns the number of the group's pending entries: all of them, or the
// consumer's.
func (r *faultRig) pending(consumer string) (int64, error) {
	ctx, cancel := context.WithTimeout(r.t.Context(), 5*time.Second)
	defer cancel()
	if consumer == "" {
		p, err := r.rdb.XPending(ctx, r.stream, r.group).Result()
		if err != nil {
			return 0, err
		}
		return p.Count, nil
	}
	ps, err := r.rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: r.stream, Group: r.group,
		Start: "-", End: "+", Count: 100_000, Consumer: consumer}).Result()
	return int64(len(ps)), err
}

// redisState describes the stream, its pending entries and its dead letters, for a
// failure message.
func (r *faultRig) redisState() string {
	ctx, cancel := context.WithTimeout(r.t.Context(), 5*time.Second)
	defer cancel()
	length, err := r.rdb.XLen(ctx, r.stream).Result()
	if err != nil {
		return fmt.Sprintf("Redis state unknown: %v", err)
	}
	p, err := r.rdb.XPending(ctx, r.stream, r.group).Result()
	if err != nil {
		return fmt.Sprintf("stream length %d, pending unknown: %v", length, err)
	}
	dead, err := r.rdb.XLen(ctx, r.stream+":dlq").Result()
	return fmt.Sprintf("stream length %d, pending %d by consumer %v, dead letters %d (%v)", length, p.Count, p.Consumers, dead, err)
}

// waitNothingPending waits until the group has no pending entry: the last settles may
// still be on their way when the last handle is seen.
func (r *faultRig) waitNothingPending() {
	r.t.Helper()
	deadline := time.Now().Add(settleWithin)
	for {
		n, err := r.pending("")
		if err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("XPENDING %s %s = %d, %v after %v; want 0; %s", r.stream, r.group, n, err, settleWithin, r.redisState())
		}
		time.Sleep(pollEvery)
	}
}

// checkDeadLetters fails the test when the dead-letter stream holds anything.
func (r *faultRig) checkDeadLetters() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 5*time.Second)
	defer cancel()
	dead, err := r.rdb.XRange(ctx, r.stream+":dlq", "-", "+").Result()
	if err != nil {
		r.t.Fatalf("read the dead-letter stream: %v", err)
	}
	for _, m := range dead[:min(len(dead), 10)] {
		r.t.Errorf("dead letter %s: %v", m.ID, m.Values)
	}
	if len(dead) > 0 {
		r.t.Errorf("%d dead letters, want none", len(dead))
	}
}

// A worker killed mid-handle leaves its deliveries pending; the other worker claims
// them after ClaimAfter, and a restarted worker under a new name joins in. Nothing is
// lost.
func TestFaultWorkerKilledMidHandle(t *testing.T) {
	r := newRig(t, redistest.Config{}, 300)
	r.enqueue()
	opts := workerOpts{pause: 2 * time.Millisecond}
	w1, w2 := r.start("w1", opts), r.start("w2", opts)
	before := r.progress(r.roots, w1, w2) // a third of the 3R pairs, some by each
	r.kill(w1)
	t.Logf("killed w1 after %d handles (w1: %d)", before.handles(), before.byWorker["w1"])
	r.start("w1-again", opts)
	tl := r.finish()
	if tl.byWorker["w2"] == 0 {
		t.Errorf("w2 handled nothing; split %v", tl.byWorker)
	}
}

// kill -9 of Redis under load, with every write fsynced, and a restart one second
// later: the workers reconnect by themselves and finish, losing nothing.
func TestFaultRedisRestart(t *testing.T) {
	r := newRig(t, redistest.Config{AppendOnly: true, AppendFsync: "always"}, 500)
	r.enqueue()
	opts := workerOpts{pause: 2 * time.Millisecond}
	r.start("w1", opts)
	r.start("w2", opts)
	before := r.progress(3 * r.roots / 4) // a quarter of the 3R pairs
	r.srv.Kill()
	t.Logf("Redis killed after %d handles", before.handles())
	time.Sleep(time.Second)
	r.checkAlive()
	r.srv.Restart()
	t.Logf("Redis restarted")
	r.finish()
}

// Three workers in one group share the work: each handles a fair part of it.
func TestFaultThreeWorkersShareGroup(t *testing.T) {
	r := newRig(t, redistest.Config{}, 900)
	opts := workerOpts{pause: time.Millisecond, waitReady: true}
	for _, name := range []string{"w1", "w2", "w3"} {
		r.start(name, opts)
	}
	// Enqueue once all three serve, so that a slow start cannot skew the split.
	r.enqueue()
	tl := r.finish()
	total := tl.handles()
	for _, name := range slices.Sorted(maps.Keys(tl.byWorker)) {
		t.Logf("%s handled %d of %d (%.1f%%)", name, tl.byWorker[name], total, 100*float64(tl.byWorker[name])/float64(total))
	}
	for _, w := range r.workers {
		if n := tl.byWorker[w.name]; 10*n <= total {
			t.Errorf("worker %s handled %d of %d handles, want more than 10%%; split %v", w.name, n, total, tl.byWorker)
		}
	}
}

// SIGTERM drains: the worker finishes and acks what it pulled, exits 0, and leaves
// nothing pending under its name; a worker started afterwards does the rest, and
// nothing is handled twice.
func TestFaultSIGTERMDrains(t *testing.T) {
	r := newRig(t, redistest.Config{}, 200)
	r.enqueue()
	opts := workerOpts{pause: 20 * time.Millisecond}
	w1 := r.start("w1", opts)
	r.progress(30)
	r.terminate(w1)
	drained := r.read()
	if n, err := r.pending(w1.name); err != nil || n != 0 {
		t.Errorf("XPENDING for %s after its drain = %d, %v; want 0: it left deliveries pending", w1.name, n, err)
	}
	if len(drained.lost(r.roots)) == 0 {
		t.Fatalf("w1 handled everything before SIGTERM took effect; nothing left to test")
	}
	t.Logf("w1 handled %d before it exited; %d pairs left", drained.handles(), len(drained.lost(r.roots)))
	r.start("w2", workerOpts{pause: time.Millisecond}) // no kill to aim at: quick
	tl := r.finish()
	if dups := tl.duplicates(); len(dups) > 0 {
		t.Errorf("%d pairs handled twice%s: the drain gave back work it had handled", len(dups), tl.sample(dups))
	}
}
