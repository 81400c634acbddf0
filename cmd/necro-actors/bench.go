package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// cmdBench runs one of the benchmark workloads of spine/bench_test.go (chain: roots a →
// A emits b → B emits c → C; fanout: four organs on x) through a Spine on the in-memory
// backend or on a fresh Redis stream, and reports the throughput, the end-to-end
// latency and the peak memory.
//
// A producer enqueues the roots while the Spine serves, as a service is fed, and keeps
// at most --in-flight roots unfinished: it waits for room, so memory follows that bound
// and the latency is the pipeline's, not the wait in a queue of every root at once. The
// time covers the producer building and enqueuing the roots, and the Spine from its
// start to its stop after the last root's last handling. With --rate the producer
// paces the roots instead of going as fast as room allows, so that latency can be read
// below saturation.
//
// Latency is measured per root, from the producer's enqueue (a monotonic clock reading
// just before the root is handed to the backend) to the end of the root's last
// handling, read in the organ that does it: C in the chain, the fourth of F0–F3 to
// handle it in the fanout. The organ finds the root from its id (the root itself in the
// fanout, the correlation id in the chain), which carries the root's index: roots get
// ids of the form <run>-<index>, still UUID v4. The commit of that last handling comes
// just after and is not included.
//
// The roots go to the backend directly rather than through Spine.Emit: one Emit of a
// batch would make the batch one trace. Without a trace context, each root's first
// handling starts a trace of its own, and a ratio sampler decides once per root.
func cmdBench(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "bench", "--workload chain|fanout [--backend memory|redis] [--events N] [--window N] [--in-flight N] [--rate R] [--fail-pct P] [--rss-every N] [--redis URL] [--keep] [--json]")
	var rf redisFlags
	registerRedisFlags(fs, &rf, "redis", "redis-url-file")
	workloadName := fs.String("workload", "chain", "the `workload`: chain (a → A → b → B → c → C) or fanout (four organs on x)")
	backendName := fs.String("backend", "memory", "the `backend`: memory, or redis (a fresh stream necro:bench:<random>, deleted at the end)")
	events := fs.Int("events", 300_000, "handled events to aim for: `N`/3 roots for chain, N/4 for fanout")
	window := fs.Int("window", 0, "the Spine's window: `N` deliveries pulled and not yet settled, at most (0: the Spine's default)")
	inFlight := fs.Int("in-flight", 0, "`N` roots enqueued and not finished, at most; the producer waits for room (0: twice the window)")
	rate := fs.Float64("rate", 0, "pace the producer to `R` handled events per second (R/3 roots a second for chain, R/4 for fanout); 0: as fast as room allows")
	failPct := fs.Float64("fail-pct", 0, "`P` percent of the roots fail in the first organ (A, F0) on every attempt, so they are retried and dead-lettered")
	rssEvery := fs.Int64("rss-every", 0, "read the resident set size each time another `N` events have been handled, and report the series")
	deadLetterCap := fs.Int("dead-letter-capacity", 0, "on memory, the dead letters kept, at most: `N`, 0 for the store's default (10,000), -1 for no bound")
	keep := fs.Bool("keep", false, "on Redis, keep the benchmark's stream at the end rather than deleting it")
	asJSON := fs.Bool("json", false, "print one JSON object: workload, backend, events, handled, seconds, events_per_sec, p50_ms, p99_ms, peak_rss_bytes, and, when the flags or the OTEL_* environment ask for them, rate, tracing, fail_pct, failed_roots, dead_letters, dead_letters_dropped, rss")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	w, ok := workloads[*workloadName]
	if !ok {
		return usageErr("--workload %q: want chain or fanout", *workloadName)
	}
	roots := *events / w.perRoot
	switch {
	case roots < 1:
		return usageErr("--events %d: the %s workload handles %d events per root; give at least %d", *events, w.name, w.perRoot, w.perRoot)
	case *window < 0:
		return usageErr("--window must not be negative, got %d", *window)
	case *inFlight < 0:
		return usageErr("--in-flight must not be negative, got %d", *inFlight)
	case !(*rate >= 0) || math.IsInf(*rate, 1):
		return usageErr("--rate must be a positive number of events per second, or 0, got %v", *rate)
	case !(*failPct >= 0 && *failPct <= 100):
		return usageErr("--fail-pct must be between 0 and 100, got %v", *failPct)
	case *rssEvery < 0:
		return usageErr("--rss-every must not be negative, got %d", *rssEvery)
	case *rssEvery > 0 && currentRSS() < 0:
		return usageErr("--rss-every: this system does not tell the current resident set size")
	case *deadLetterCap < memory.Unbounded:
		return usageErr("--dead-letter-capacity must be positive, 0 or -1, got %d", *deadLetterCap)
	}
	if *inFlight == 0 {
		*inFlight = 2 * cmp.Or(*window, spine.DefaultWindow)
	}
	level := logLevel(false)
	if *failPct > 0 {
		level = slog.LevelError // the failures asked for would log two warnings per failing root
	}
	log := telemetry.NewJSONLogger(e.stderr, level)
	obs, err := startTelemetry(ctx, "")
	if err != nil {
		return err
	}
	defer obs.closeLogged(ctx, log)

	var store benchStore
	switch *backendName {
	case "memory":
		if rf.url != "" || rf.urlFile != "" {
			return usageErr("--redis is for --backend redis")
		}
		// Unbounded, as the producer bounds the roots in flight, and a root has at most
		// one event queued at a time.
		m, err := memory.New(memory.Config{Capacity: memory.Unbounded, DeadLetterCapacity: *deadLetterCap, Logger: log})
		if err != nil {
			return err
		}
		store = benchStore{Backend: m, finish: func() (int64, int64, error) {
			held := m.Report(ctx).DeadLetters
			return held + int64(m.Dropped()), int64(m.Dropped()), m.Close()
		}}
	case "redis":
		if *deadLetterCap != 0 {
			return usageErr("--dead-letter-capacity is for --backend memory")
		}
		cfg, err := rf.config(e)
		if err != nil {
			return err
		}
		cfg.Stream, cfg.Logger = "necro:bench:"+randomHex(4), log
		b, err := openRedis(ctx, cfg)
		if err != nil {
			return err
		}
		store = benchStore{Backend: b, finish: func() (int64, int64, error) {
			dead, err := closeBenchStream(ctx, e, &rf, b, *keep)
			return dead, 0, err
		}}
	default:
		return usageErr("--backend %q: want memory or redis", *backendName)
	}
	r := newBenchRun(w, roots, *inFlight)
	r.pace, r.failPct, r.rssEvery = *rate/float64(w.perRoot), *failPct, *rssEvery
	cfg := spine.Config{Window: *window, Logger: log, Telemetry: obs.recorder(),
		Retry: supervision.RetryPolicy{MaxAttempts: benchAttempts}}
	res, runErr := r.run(ctx, e, store, cfg)
	dead, dropped, err := store.finish()
	if err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	res.Workload, res.Backend, res.Events = w.name, *backendName, *events
	res.Rate, res.Tracing = *rate, obs.providers.Tracing()
	if *failPct > 0 {
		failed := r.failingRoots()
		res.FailPct, res.FailedRoots, res.DeadLetters = *failPct, &failed, &dead
		if *backendName == "memory" {
			res.DeadLettersDropped = &dropped
		}
	}
	if *asJSON {
		return printJSON(e.stdout, res)
	}
	return res.print(e.stdout)
}

// A benchStore is the backend of a run and what bench asks of it at the end.
type benchStore struct {
	backend.Backend
	// finish closes the store and returns the dead letters it received during the run,
	// and how many of them it dropped for want of room.
	finish func() (dead, dropped int64, err error)
}

// closeBenchStream closes the benchmark's store, counts the dead letters in its
// dead-letter stream, and deletes its streams, unless keep.
func closeBenchStream(ctx context.Context, e *env, rf *redisFlags, b *necroredis.Backend, keep bool) (int64, error) {
	cfg := b.Config()
	err := b.Close()
	if keep {
		fmt.Fprintf(e.stderr, "kept stream %s\n", cfg.Stream)
	}
	// The store is closed first, so that nothing of it writes to the stream after it is
	// deleted; an Admin, which creates nothing, counts and deletes.
	drop := *rf
	drop.stream = cfg.Stream
	ctx = context.WithoutCancel(ctx) // a run cut short still leaves nothing behind
	a, aerr := openAdmin(ctx, e, &drop)
	if aerr != nil {
		return 0, errors.Join(err, aerr)
	}
	in, ierr := a.Inspect(ctx)
	if keep {
		return in.DeadLetters, errors.Join(err, ierr, a.Close())
	}
	return in.DeadLetters, errors.Join(err, ierr, a.Drop(ctx), a.Close())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return fmt.Sprintf("%x", b)
}

// A workload is the organs of a benchmark and the shape of its roots.
type workload struct {
	name    string
	root    string // the roots' event type
	perRoot int    // handlings per root
	last    int32  // handlings per root that count down to its end
	mounts  func(r *benchRun) []necro.Mount
}

var workloads = map[string]workload{
	"chain":  {name: "chain", root: "a", perRoot: 3, last: 1, mounts: chainMounts},
	"fanout": {name: "fanout", root: "x", perRoot: 4, last: 4, mounts: fanoutMounts},
}

// benchPayload is the ~100-byte JSON object of the workloads, as in spine/bench_test.go.
var benchPayload = json.RawMessage(`{"order_id":"ord-000123","customer":"alice","amount":149.5,"currency":"EUR","items":3,"note":"x"}`)

// benchAttempts is the Handle calls an organ makes for one event, so that the first
// organ knows a failing root's last attempt (the Spine's default, made explicit).
const benchAttempts = 3

// errBenchFail is what the first organ returns for a root that --fail-pct chose. It is
// not permanent, so the root is retried before it is dead-lettered.
var errBenchFail = errors.New("bench: this root fails on every attempt (--fail-pct)")

// chainMounts: A emits one b per a (the payload copied plus a counter), B one c (the
// payload copied), C nothing and finishes the root.
func chainMounts(r *benchRun) []necro.Mount {
	a := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		r.handled[0].Add(1)
		if err := r.failing(ev); err != nil {
			return nil, err
		}
		p := ev.PayloadJSON()
		p = append(p[:len(p)-1], `,"hop":1}`...)
		child, err := necro.NewEvent("b", p)
		return []necro.Event{child}, err
	}
	b := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		r.handled[1].Add(1)
		child, err := necro.NewEvent("c", ev.PayloadJSON())
		return []necro.Event{child}, err
	}
	c := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		r.handled[2].Add(1)
		r.countDown(ev.Correlation())
		return nil, nil
	}
	return []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, a)},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, b)},
		{Name: "C", Organ: necro.NewOrgan([]string{"c"}, c)},
	}
}

// fanoutMounts: four organs listen to x and emit nothing; the fourth to handle a root
// finishes it.
func fanoutMounts(r *benchRun) []necro.Mount {
	var ms []necro.Mount
	for i := range 4 {
		ms = append(ms, necro.Mount{Name: fmt.Sprintf("F%d", i), Organ: necro.NewOrgan([]string{"x"},
			func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
				r.handled[i].Add(1)
				if i == 0 {
					if err := r.failing(ev); err != nil {
						return nil, err
					}
				}
				r.countDown(ev.ID())
				return nil, nil
			})})
	}
	return ms
}

// A benchRun is one run of a workload: the producer's state and the organs' counts.
type benchRun struct {
	w      workload
	roots  int
	prefix string    // the first 24 characters of every root's id, random per run
	epoch  time.Time // marks count from here, on the monotonic clock
	// marks holds per root its enqueue time, then, once it finished, its latency (ns).
	marks []atomic.Int64
	left  []atomic.Int32 // per root: handlings still to come
	// slots holds a token per root in flight: the producer puts one in before it
	// enqueues a root and the root's last handling takes it out, so its size is the
	// bound on roots in flight.
	slots    chan struct{}
	finished atomic.Int64 // roots whose last handling ended
	handled  [4]paddedCount
	stop     func() // stops the Spine once every root finished

	pace     float64 // roots a second the producer aims for; 0: as fast as room allows
	failPct  float64 // percent of roots that fail in the first organ on every attempt
	rssEvery int64   // handled events between two readings of the RSS; 0: none
	rss      []rssSample
}

// paddedCount is a counter alone on its cache line, so that organs running at once do
// not slow each other down.
type paddedCount struct {
	atomic.Int64
	_ [56]byte
}

// An rssSample is the resident set size read once the run had handled that many
// events.
type rssSample struct {
	Handled  int64 `json:"handled"`
	RSSBytes int64 `json:"rss_bytes"`
}

func newBenchRun(w workload, roots, inFlight int) *benchRun {
	var b [9]byte          // 72 random bits: 8, 4, 3 and 3 hex digits
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	x, y := binary.BigEndian.Uint64(b[:8]), uint64(b[8])
	prefix := fmt.Sprintf("%08x-%04x-4%03x-8%03x-", x>>32, (x>>16)&0xffff, (x>>4)&0xfff, (x&0xf)<<8|y)
	r := &benchRun{w: w, roots: roots, prefix: prefix, marks: make([]atomic.Int64, roots),
		left: make([]atomic.Int32, roots), slots: make(chan struct{}, inFlight)}
	// The per-root bookkeeping (12 bytes a root) is touched now, a word per page, so
	// that it is resident from the start and a run's RSS series shows the Spine and the
	// store, not these arrays being filled in.
	const page = 4096
	for i := 0; i < roots; i += page / 8 {
		r.marks[i].Store(0)
	}
	for i := 0; i < roots; i += page / 4 {
		r.left[i].Store(0)
	}
	return r
}

// rootID returns the id of root seq: the run's prefix and seq in 12 hex digits.
func (r *benchRun) rootID(seq int) string {
	const hex = "0123456789abcdef"
	var b [36]byte
	copy(b[:], r.prefix)
	for i := 35; i >= 24; i-- {
		b[i] = hex[seq&0xf]
		seq >>= 4
	}
	return string(b[:])
}

// seqOf returns the index of the root with id id, or false for an id of no root of
// this run.
func (r *benchRun) seqOf(id string) (int, bool) {
	if len(id) != 36 || id[:24] != r.prefix {
		return 0, false
	}
	seq := 0
	for i := 24; i < 36; i++ {
		c := id[i]
		switch {
		case '0' <= c && c <= '9':
			seq = seq<<4 | int(c-'0')
		case 'a' <= c && c <= 'f':
			seq = seq<<4 | int(c-'a'+10)
		default:
			return 0, false
		}
	}
	return seq, seq < r.roots
}

// fails reports whether root seq is one of the failPct percent chosen to fail. They are
// spread evenly: root seq fails when failPct·(seq+1)/100 passes an integer.
func (r *benchRun) fails(seq int) bool {
	return r.failPct > 0 && int64(float64(seq+1)*r.failPct/100) > int64(float64(seq)*r.failPct/100)
}

// failingRoots returns how many of the run's roots fail: the sum of fails telescopes.
func (r *benchRun) failingRoots() int64 { return int64(float64(r.roots) * r.failPct / 100) }

// failing returns errBenchFail when ev is a root chosen to fail. Its last attempt is
// its last handling: the Spine dead-letters it next, and the root counts as finished,
// as the commit of a successful last handling is not waited for either.
func (r *benchRun) failing(ev necro.Event) error {
	if r.failPct == 0 {
		return nil
	}
	seq, ok := r.seqOf(ev.ID())
	if !ok || !r.fails(seq) {
		return nil
	}
	if ev.Attempt() >= benchAttempts {
		r.countDown(ev.ID())
	}
	return errBenchFail
}

// countDown counts one of the handlings that end the root with id rootID; the last one
// records the root's latency, makes room for another root and, after every root, stops
// the Spine. A handling repeated after a redelivery finishes nothing twice.
func (r *benchRun) countDown(rootID string) {
	seq, ok := r.seqOf(rootID)
	if !ok || r.left[seq].Add(-1) != 0 {
		return
	}
	r.marks[seq].Store(int64(time.Since(r.epoch)) - r.marks[seq].Load())
	<-r.slots // the producer put a token in before it enqueued this root
	if r.finished.Add(1) == int64(r.roots) {
		r.stop()
	}
}

// produceBatch bounds the roots one Enqueue takes: one script on Redis.
const produceBatch = 256

// produce enqueues the roots, waiting for room whenever roots in flight fill the slots
// and, when paced, for each root's time: root seq is due seq/pace seconds after the
// start. A run that cannot keep the pace falls behind it and catches up in batches; its
// latency counts from each root's actual enqueue, so falling behind shows in the rate
// reached, not in the latency.
func (r *benchRun) produce(ctx context.Context, enqueue func(context.Context, ...necro.Event) error) error {
	batch := make([]necro.Event, 0, produceBatch)
	var timer *time.Timer
	for seq := 0; seq < r.roots; {
		want := min(produceBatch, r.roots-seq)
		if r.pace > 0 {
			if wait := time.Duration(float64(seq)/r.pace*1e9) - time.Since(r.epoch); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
					defer timer.Stop()
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			due := int(time.Since(r.epoch).Seconds()*r.pace) + 1 // roots 0 … due-1 are due
			want = max(1, min(want, due-seq))
		}
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := 1
	more:
		for n < want {
			select {
			case r.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch = batch[:0]
		for i := seq; i < seq+n; i++ {
			ev, err := necro.Draft{ID: r.rootID(i), Type: r.w.root, Payload: benchPayload}.Build()
			if err != nil {
				return err
			}
			batch = append(batch, ev)
			r.left[i].Store(r.w.last)
		}
		now := int64(time.Since(r.epoch))
		for i := seq; i < seq+n; i++ {
			r.marks[i].Store(now)
		}
		if err := enqueue(ctx, batch...); err != nil {
			return fmt.Errorf("enqueue roots: %w", err)
		}
		seq += n
	}
	return nil
}

// rssPoll is how often the RSS sampler looks at the count of handled events.
const rssPoll = 10 * time.Millisecond

// sampleRSS reads the resident set size each time the handled events pass another
// multiple of rssEvery, as seen every rssPoll, until done is closed, and looks once more
// then. Each sample holds the count it was taken at.
func (r *benchRun) sampleRSS(done <-chan struct{}) {
	t := time.NewTicker(rssPoll)
	defer t.Stop()
	next := r.rssEvery
	look := func() {
		if n := r.handledSoFar(); n >= next {
			r.rss = append(r.rss, rssSample{Handled: n, RSSBytes: currentRSS()})
			next = (n/r.rssEvery + 1) * r.rssEvery
		}
	}
	for {
		select {
		case <-t.C:
			look()
		case <-done:
			look()
			return
		}
	}
}

// run serves the workload on q until every root finished, a signal comes, or
// something fails, and measures it.
func (r *benchRun) run(ctx context.Context, e *env, q backend.Backend, cfg spine.Config) (benchResult, error) {
	sp, err := spine.New(q, r.w.mounts(r), cfg)
	if err != nil {
		return benchResult{}, err
	}
	r.stop = sp.Stop
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	served, produced := make(chan error, 1), make(chan error, 1)
	r.epoch = time.Now()
	wg.Go(func() { served <- sp.Serve(ctx) })
	wg.Go(func() { produced <- r.produce(ctx, q.Enqueue) })
	watchersDone := make(chan struct{}) // stops the progress bar and the RSS sampler
	if isTerminal(e.stderr) {
		wg.Go(func() { r.showProgress(e.stderr, watchersDone) })
	}
	if r.rssEvery > 0 {
		wg.Go(func() { r.sampleRSS(watchersDone) })
	}
	var runErr error
	for served != nil {
		select {
		case err := <-served:
			served = nil
			if err != nil && runErr == nil {
				runErr = err
			}
		case err := <-produced:
			produced = nil
			if err != nil && runErr == nil {
				runErr = err
				cancel()
			}
		case <-e.signals:
			if runErr == nil {
				runErr = errors.New("stopped by a signal")
			}
			cancel()
		}
	}
	elapsed := time.Since(r.epoch)
	// The Spine has returned; the producer may still wait for room after a failure.
	cancel()
	close(watchersDone)
	wg.Wait()
	if runErr == nil && r.finished.Load() < int64(r.roots) {
		runErr = fmt.Errorf("the Spine stopped after %d of %d roots", r.finished.Load(), r.roots)
	}
	if runErr != nil {
		return benchResult{}, runErr
	}
	res := benchResult{Seconds: elapsed.Seconds(), RSS: r.rss}
	res.Handled = r.handledSoFar()
	res.EventsPerSec = float64(res.Handled) / res.Seconds
	lat := make([]int64, r.roots)
	for i := range r.marks {
		lat[i] = r.marks[i].Load()
	}
	slices.Sort(lat)
	res.P50MS, res.P99MS = percentileMS(lat, 0.50), percentileMS(lat, 0.99)
	res.PeakRSSBytes = peakRSS()
	return res, nil
}

// percentileMS returns the p-th percentile (nearest rank) of sorted nanoseconds, in
// milliseconds.
func percentileMS(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / 1e6
}

// benchResult is what bench prints; the JSON keys are its interface. The first nine
// are always there; the others only when the flags that ask for them are given.
type benchResult struct {
	Workload     string  `json:"workload"`
	Backend      string  `json:"backend"`
	Events       int     `json:"events"`  // asked for
	Handled      int64   `json:"handled"` // handler invocations made, failed ones included
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"` // the process's peak (VmHWM on Linux, ru_maxrss elsewhere); -1 where the system does not tell

	Rate    float64 `json:"rate,omitempty"`    // --rate: handled events a second asked for
	Tracing bool    `json:"tracing,omitempty"` // the OTEL_* environment turned tracing on
	FailPct float64 `json:"fail_pct,omitempty"`
	// FailedRoots is how many roots --fail-pct chose, DeadLetters the dead letters the
	// store received (the two should match), DeadLettersDropped how many of those the
	// memory store's ring dropped for want of room.
	FailedRoots        *int64      `json:"failed_roots,omitempty"`
	DeadLetters        *int64      `json:"dead_letters,omitempty"`
	DeadLettersDropped *int64      `json:"dead_letters_dropped,omitempty"`
	RSS                []rssSample `json:"rss,omitempty"` // --rss-every
}

func (res benchResult) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rows := [][2]string{
		{"workload", res.Workload},
		{"backend", res.Backend},
		{"events asked", grouped(int64(res.Events))},
		{"handled", grouped(res.Handled)},
		{"seconds", fmt.Sprintf("%.3f", res.Seconds)},
		{"events/s", grouped(int64(res.EventsPerSec + 0.5))},
		{"latency p50", fmt.Sprintf("%.3f ms", res.P50MS)},
		{"latency p99", fmt.Sprintf("%.3f ms", res.P99MS)},
		{"peak RSS", mib(res.PeakRSSBytes)},
	}
	if res.Rate > 0 {
		rows = append(rows, [2]string{"rate asked", grouped(int64(res.Rate+0.5)) + " events/s"})
	}
	if res.Tracing {
		rows = append(rows, [2]string{"tracing", "on"})
	}
	if res.FailedRoots != nil {
		rows = append(rows, [2]string{"failing roots", fmt.Sprintf("%s (%v%%)", grouped(*res.FailedRoots), res.FailPct)},
			[2]string{"dead letters", grouped(*res.DeadLetters)})
	}
	if res.DeadLettersDropped != nil {
		rows = append(rows, [2]string{"dead letters dropped", grouped(*res.DeadLettersDropped)})
	}
	for _, s := range res.RSS {
		rows = append(rows, [2]string{"RSS at " + grouped(s.Handled), mib(s.RSSBytes)})
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// mib writes a byte count in MiB, or "unknown" for -1.
func mib(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// grouped writes n with commas between groups of three digits.
func grouped(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// isTerminal reports whether w is a terminal, where a progress bar may redraw itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressEvery is how often the progress bar is redrawn.
const progressEvery = 100 * time.Millisecond

// showProgress redraws a progress bar on w until done is closed, then ends its line.
func (r *benchRun) showProgress(w io.Writer, done <-chan struct{}) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	want := int64(r.roots * r.w.perRoot)
	for {
		select {
		case <-t.C:
			fmt.Fprint(w, "\r"+progressBar(r.handledSoFar(), want, time.Since(r.epoch)))
		case <-done:
			fmt.Fprint(w, "\r"+progressBar(r.handledSoFar(), want, time.Since(r.epoch))+"\n")
			return
		}
	}
}

func (r *benchRun) handledSoFar() int64 {
	var n int64
	for i := range r.handled {
		n += r.handled[i].Load()
	}
	return n
}

// progressBar draws one line: a bar, the share done, the counts and the rate so far.
func progressBar(done, want int64, elapsed time.Duration) string {
	const width = 30
	frac := 0.0
	if want > 0 {
		frac = min(float64(done)/float64(want), 1)
	}
	filled := int(frac * width)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	return fmt.Sprintf("[%s%s] %3.0f%%  %s / %s events  %s/s ", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		frac*100, grouped(done), grouped(want), grouped(int64(rate)))
}
