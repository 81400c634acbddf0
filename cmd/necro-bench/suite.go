package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/necrostack/necro/internal/jaegertest"
	"github.com/necrostack/necro/internal/redisproc"
)

// A plan is the suite's sizes.
type plan struct {
	Rounds       int // max-rate runs per cell; the median counts
	MemoryEvents int // events of each throughput run on memory, a multiple of 12 (3 and 4 a root)
	RedisEvents  int // the same on Redis
	RSSEvents    int // events of each RSS run
	RSSEvery     int // events between two RSS samples
	// RingCapacity is the memory store's dead-letter ring in the first memory RSS run:
	// small, so that the ring is full long before the window the verdict compares.
	RingCapacity int
	// PacedFor is how long a paced run lasts at least: it gets more events than the
	// cell's when its rate would finish them sooner. The rate reached counts the Spine's
	// start and stop (about 0.1s) in its time, which a run of a second or two would show
	// as falling behind.
	PacedFor time.Duration
}

// fullPlan takes about 3½ minutes on two shared cores.
var fullPlan = plan{Rounds: 3, MemoryEvents: 1_200_000, RedisEvents: 150_000, RSSEvents: 5_000_000, RSSEvery: 100_000,
	RingCapacity: 1_000, PacedFor: 5 * time.Second}

// quickPlan checks the suite itself.
var quickPlan = plan{Rounds: 1, MemoryEvents: 24_000, RedisEvents: 2_400, RSSEvents: 60_000, RSSEvery: 6_000,
	RingCapacity: 10}

// sampleRatio is the share of traces the tracing runs sample.
const sampleRatio = 0.01

// failPct is the percentage of roots that fail in the RSS runs.
const failPct = 1

// A cell is one configuration of the throughput table.
type cell struct {
	Backend  string // memory or redis
	Workload string // chain or fanout
	Tracing  bool   // OTLP export to Jaeger, 1% of traces sampled
}

func (c cell) String() string {
	tr := "off"
	if c.Tracing {
		tr = "1%"
	}
	return fmt.Sprintf("%s %s tracing %s", c.Backend, c.Workload, tr)
}

// cells are the throughput table's rows, in order.
func cells() []cell {
	var cs []cell
	for _, b := range []string{"memory", "redis"} {
		for _, w := range []string{"chain", "fanout"} {
			for _, tr := range []bool{false, true} {
				cs = append(cs, cell{b, w, tr})
			}
		}
	}
	return cs
}

// perRoot is the handled events of one root of the workload.
func perRoot(workload string) int {
	if workload == "fanout" {
		return 4
	}
	return 3
}

// result is what `necro-actors bench --json` prints.
type result struct {
	Workload           string      `json:"workload"`
	Backend            string      `json:"backend"`
	Events             int         `json:"events"`
	Handled            int64       `json:"handled"`
	Seconds            float64     `json:"seconds"`
	EventsPerSec       float64     `json:"events_per_sec"`
	P50MS              float64     `json:"p50_ms"`
	P99MS              float64     `json:"p99_ms"`
	PeakRSSBytes       int64       `json:"peak_rss_bytes"`
	Rate               float64     `json:"rate"`
	Tracing            bool        `json:"tracing"`
	FailedRoots        *int64      `json:"failed_roots"`
	DeadLetters        *int64      `json:"dead_letters"`
	DeadLettersDropped *int64      `json:"dead_letters_dropped"`
	RSS                []rssSample `json:"rss"`
}

type rssSample struct {
	Handled  int64 `json:"handled"`
	RSSBytes int64 `json:"rss_bytes"`
}

// A benchRun is one `necro-actors bench` process: how it was asked and what it said.
type benchRun struct {
	Command string  // the command line, with the environment it was given
	Load    float64 // the 1-minute load average when it started
	Result  result
	Traces  *traceCount // what Jaeger holds of a tracing run; nil without tracing
}

// A row is one cell's runs.
type row struct {
	cell
	Max  []benchRun // as fast as the pipeline allows, Rounds times
	Half benchRun   // paced at half the median of Max
	Err  error      // why the row is incomplete
}

// medianRate returns the median events/s of the max-rate runs.
func (r row) medianRate() float64 {
	rates := make([]float64, len(r.Max))
	for i, m := range r.Max {
		rates[i] = m.Result.EventsPerSec
	}
	slices.Sort(rates)
	if len(rates) == 0 {
		return 0
	}
	return rates[len(rates)/2]
}

// An rssRun is one long run with failing roots, for the RSS series.
type rssRun struct {
	Backend      string
	RingCapacity int // memory's dead-letter ring; 0: the store's default
	Run          benchRun
	Err          error
}

// A suite runs the plan with the binaries it was given.
type suite struct {
	plan      plan
	bin       string    // necro-actors
	jaegerBin string    // Jaeger
	progress  io.Writer // a line per run

	dir    string
	redis  *redisproc.Server
	jaeger *jaegertest.Server
	runs   int // runs started, for unique service names
}

// run runs every cell and the RSS runs, and returns the report; the error joins the
// failures of runs (the report shows the others) or says why the suite could not start.
func (s *suite) run(ctx context.Context) (*report, error) {
	start := time.Now()
	rep := &report{Plan: s.plan, Start: start.UTC(), LoadBefore: loadAverage()}
	defer func() { rep.Took = time.Since(start) }()
	var err error
	if rep.Machine, err = readMachine(s.bin); err != nil {
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "necro-bench-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(s.dir)
	for _, sub := range []string{"redis", "jaeger"} {
		if err := os.Mkdir(filepath.Join(s.dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	// Redis keeps nothing on disk, as in the Redis backend's own benchmark: the
	// figures are the runtime's and Redis's, not the disk's.
	if s.redis, err = redisproc.Start(redisproc.Config{Dir: filepath.Join(s.dir, "redis")}); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	defer func() { _ = s.redis.Stop() }() // the figures are in; a failed stop changes none
	if rep.Machine.Redis, err = redisVersion(ctx, s.redis); err != nil {
		return nil, err
	}
	jdir := filepath.Join(s.dir, "jaeger")
	if err := os.MkdirAll(jdir, 0o755); err != nil {
		return nil, err
	}
	if s.jaeger, err = jaegertest.Run(s.jaegerBin, jdir); err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	defer s.jaeger.Stop()

	var errs []error
	for _, c := range cells() {
		r := s.runCell(ctx, c)
		rep.Rows = append(rep.Rows, r)
		errs = append(errs, r.Err)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	for _, rr := range []rssRun{{Backend: "memory", RingCapacity: s.plan.RingCapacity}, {Backend: "memory"}, {Backend: "redis"}} {
		args := append(s.backendArgs(rr.Backend), "--workload", "chain", "--events", strconv.Itoa(s.plan.RSSEvents),
			"--fail-pct", strconv.Itoa(failPct), "--rss-every", strconv.Itoa(s.plan.RSSEvery))
		if rr.RingCapacity > 0 {
			args = append(args, "--dead-letter-capacity", strconv.Itoa(rr.RingCapacity))
		}
		rr.Run, rr.Err = s.bench(ctx, false, args...)
		if rr.Err == nil {
			rr.Err = checkDeadLetters(rr.Run.Result)
		}
		rep.RSS = append(rep.RSS, rr)
		errs = append(errs, rr.Err)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, errors.Join(errs...)
}

// runCell measures one cell: Rounds runs at the maximum rate, then one paced at half
// their median.
func (s *suite) runCell(ctx context.Context, c cell) row {
	r := row{cell: c}
	events := s.plan.MemoryEvents
	if c.Backend == "redis" {
		events = s.plan.RedisEvents
	}
	args := append(s.backendArgs(c.Backend), "--workload", c.Workload, "--events", strconv.Itoa(events))
	for range s.plan.Rounds {
		run, err := s.bench(ctx, c.Tracing, args...)
		if err != nil {
			r.Err = fmt.Errorf("%s: %w", c, err)
			return r
		}
		r.Max = append(r.Max, run)
	}
	rate := r.medianRate() / 2
	paced := max(events, int(math.Ceil(rate*s.plan.PacedFor.Seconds()/12))*12) // 12: whole roots of both workloads
	pacedArgs := append(s.backendArgs(c.Backend), "--workload", c.Workload, "--events", strconv.Itoa(paced),
		"--rate", strconv.FormatFloat(rate, 'f', 0, 64))
	var err error
	if r.Half, err = s.bench(ctx, c.Tracing, pacedArgs...); err != nil {
		r.Err = fmt.Errorf("%s, paced: %w", c, err)
	}
	return r
}

// bench runs `necro-actors bench --json` with args, with the tracing environment when
// traced, and with every OTEL_* variable of the suite's own environment removed
// otherwise. A traced run is then looked up in Jaeger.
func (s *suite) bench(ctx context.Context, traced bool, args ...string) (benchRun, error) {
	s.runs++
	var vars []string // the run's OTEL_* settings, as the report shows them
	if traced {
		vars = otelEnv(s.jaeger, fmt.Sprintf("necro-bench-%d", s.runs), sampleRatio)
	}
	args = append(append([]string{"bench"}, args...), "--json")
	run := benchRun{Command: commandLine(vars, "necro-actors", args), Load: loadAverage()}
	fmt.Fprintf(s.progress, "necro-bench: %s\n", run.Command)
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(withoutOTEL(os.Environ()), vars...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return run, fmt.Errorf("%s: %w\n%s", run.Command, err, lastLines(stderr.String(), 10))
	}
	if err := json.Unmarshal(stdout.Bytes(), &run.Result); err != nil {
		return run, fmt.Errorf("%s: read its JSON: %w\n%s", run.Command, err, stdout.String())
	}
	if traced != run.Result.Tracing {
		return run, fmt.Errorf("%s: tracing is %v in the run, want %v", run.Command, run.Result.Tracing, traced)
	}
	fmt.Fprintf(s.progress, "necro-bench:   %.0f events/s, p50 %.2f ms, p99 %.2f ms, peak RSS %.1f MiB\n",
		run.Result.EventsPerSec, run.Result.P50MS, run.Result.P99MS, float64(run.Result.PeakRSSBytes)/(1<<20))
	if traced {
		service := fmt.Sprintf("necro-bench-%d", s.runs)
		shape := shapeOf(run.Result.Workload)
		tc, err := countTraces(ctx, s.jaeger, service, shape)
		if err != nil {
			return run, fmt.Errorf("%s: %w", run.Command, err)
		}
		roots := run.Result.Events / perRoot(run.Result.Workload)
		tc.Expected = float64(roots*shape.perRoot) * sampleRatio
		run.Traces = &tc
		fmt.Fprintf(s.progress, "necro-bench:   Jaeger holds %d traces of roots (%.0f expected), %d complete\n",
			tc.Found, tc.Expected, tc.Complete)
		// A handful expected and none found means the spans went nowhere; fewer than
		// that can be chance.
		if tc.Found == 0 && tc.Expected >= 5 {
			return run, fmt.Errorf("%s: no trace reached Jaeger (%.0f expected)", run.Command, tc.Expected)
		}
	}
	return run, nil
}

// backendArgs are the flags that choose the backend: on Redis, the suite's server.
func (s *suite) backendArgs(backend string) []string {
	if backend == "redis" {
		return []string{"--backend", backend, "--redis", s.redis.URL()}
	}
	return []string{"--backend", backend}
}

// checkDeadLetters reports a run whose dead letters are not its failing roots.
func checkDeadLetters(res result) error {
	if res.FailedRoots == nil || res.DeadLetters == nil {
		return errors.New("the run reported no failing roots or dead letters")
	}
	if *res.FailedRoots != *res.DeadLetters {
		return fmt.Errorf("%d roots failed on every attempt but %d dead letters were made", *res.FailedRoots, *res.DeadLetters)
	}
	return nil
}

// withoutOTEL returns env without its OTEL_* variables: a run without tracing must not
// pick up the caller's.
func withoutOTEL(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "OTEL_") })
}

// commandLine writes a command as a shell would take it.
func commandLine(vars []string, name string, args []string) string {
	return strings.Join(append(append(slices.Clone(vars), name), args...), " ")
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// redisVersion asks the server for its version.
func redisVersion(ctx context.Context, srv *redisproc.Server) (string, error) {
	info, err := srv.Do(ctx, "INFO", "server")
	if err != nil {
		return "", fmt.Errorf("redis INFO: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "", errors.New("redis INFO server has no redis_version")
}
