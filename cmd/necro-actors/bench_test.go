package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/internal/jaegertest"
	"github.com/necrostack/necro/internal/redistest"
)

// benchKeys are the keys of bench --json, exactly.
var benchKeys = []string{"backend", "events", "events_per_sec", "handled", "p50_ms", "p99_ms", "peak_rss_bytes", "seconds", "workload"}

// checkBench checks the one JSON object of a bench run that asked for no more than the
// nine keys.
func checkBench(t *testing.T, c *cli, workload, backend string, events int) {
	t.Helper()
	checkFigures(t, oneJSON(t, c.stdout.String()), nil, workload, backend, events, int64(events))
}

// checkFigures checks a bench JSON object: exactly the nine keys and extra, the run
// asked for and handled, and figures that make sense.
func checkFigures(t *testing.T, m map[string]any, extra []string, workload, backend string, events int, handled int64) {
	t.Helper()
	want := slices.Sorted(slices.Values(append(slices.Clone(benchKeys), extra...)))
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, want) {
		t.Errorf("keys %v, want %v", got, want)
	}
	if m["workload"] != workload || m["backend"] != backend || m["events"] != float64(events) || m["handled"] != float64(handled) {
		t.Errorf("bench = %v, want %s on %s with %d events asked and %d handled", m, workload, backend, events, handled)
	}
	secs, _ := m["seconds"].(float64)
	rate, _ := m["events_per_sec"].(float64)
	p50, _ := m["p50_ms"].(float64)
	p99, _ := m["p99_ms"].(float64)
	if secs <= 0 || rate <= 0 || p50 <= 0 || p99 < p50 || p99 > secs*1000 {
		t.Errorf("bench figures = %v: want positive time and rate, 0 < p50 ≤ p99 ≤ the run", m)
	}
	if rss, _ := m["peak_rss_bytes"].(float64); rss < 1<<20 && rss != -1 {
		t.Errorf("peak_rss_bytes = %v, want the process's peak (at least 1 MiB) or -1", m["peak_rss_bytes"])
	}
}

func TestBenchMemory(t *testing.T) {
	for _, tt := range []struct {
		workload string
		events   int
	}{{"chain", 3000}, {"fanout", 4000}} {
		t.Run(tt.workload, func(t *testing.T) {
			c := newCLI()
			if got := c.run(t, "bench", "--workload", tt.workload, "--events", strconv.Itoa(tt.events), "--json", "--window", "64", "--in-flight", "100"); got != exitOK {
				t.Fatalf("exit %d\n%s", got, c.output())
			}
			checkBench(t, c, tt.workload, "memory", tt.events)
			if c.stderr.String() != "" {
				t.Errorf("stderr is not a terminal, yet bench wrote to it:\n%s", c.stderr.String())
			}
		})
	}
	c := newCLI()
	if got := c.run(t, "bench", "--events", "30"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	for _, row := range [][]string{{"workload", "chain"}, {"backend", "memory"}, {"events", "asked", "30"}, {"handled", "30"},
		{"seconds"}, {"events/s"}, {"latency", "p50"}, {"latency", "p99"}, {"peak", "RSS"}} {
		if !slices.ContainsFunc(strings.Split(c.stdout.String(), "\n"), func(l string) bool {
			f := strings.Fields(l)
			return len(f) >= len(row) && slices.Equal(f[:len(row)], row)
		}) {
			t.Errorf("the summary has no row %q:\n%s", row, c.stdout.String())
		}
	}
}

// On Redis, bench uses a stream of its own and deletes it at the end, unless --keep.
func TestBenchRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	c := newCLI()
	if got := c.run(t, "bench", "--backend", "redis", "--redis", srv.URL(), "--workload", "chain", "--events", "300", "--json"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	checkBench(t, c, "chain", "redis", 300)
	if n, err := srv.Do("DBSIZE"); err != nil || n != "0" {
		t.Errorf("DBSIZE after the bench = %q, %v; want 0: its stream deleted", n, err)
	}
	c = newCLI()
	if got := c.run(t, "bench", "--backend", "redis", "--redis", srv.URL(), "--workload", "fanout", "--events", "200", "--json", "--keep"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	checkBench(t, c, "fanout", "redis", 200)
	_, stream, ok := strings.Cut(c.stderr.String(), "kept stream ")
	stream = strings.TrimSpace(stream)
	if !ok || !strings.HasPrefix(stream, "necro:bench:") {
		t.Fatalf("stderr does not name the kept stream:\n%s", c.stderr.String())
	}
	if n, err := srv.Do("EXISTS", stream); err != nil || n != "1" {
		t.Errorf("EXISTS %s = %q, %v after --keep; want 1", stream, n, err)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--workload", "ring"},
		{"--backend", "disk"},
		{"--events", "2"},
		{"--workload", "fanout", "--events", "3"},
		{"--window", "-1"},
		{"--in-flight", "-1"},
		{"--rate", "-1"},
		{"--rate", "NaN"},
		{"--rate", "+Inf"},
		{"--fail-pct", "-1"},
		{"--fail-pct", "101"},
		{"--rss-every", "-1"},
		{"--dead-letter-capacity", "-2"},
		{"--backend", "redis", "--redis", "redis://127.0.0.1:1/0", "--dead-letter-capacity", "5"},
		{"--backend", "redis"},
		{"--backend", "redis", "--redis", "redis://127.0.0.1:1/0", "--stream", "mine"},
		{"--redis", "redis://127.0.0.1:1/0"},
		{"extra"},
	} {
		c := newCLI()
		if got := c.run(t, append([]string{"bench"}, args...)...); got != exitUsage {
			t.Errorf("bench %v: exit %d, want %d\n%s", args, got, exitUsage, c.output())
		}
	}
}

// A signal stops a run: exit 1, no figures.
func TestBenchSignal(t *testing.T) {
	c := newCLI()
	c.signals <- sigterm
	start := time.Now()
	if got := c.run(t, "bench", "--events", "3000000", "--json"); got != exitFailed {
		t.Errorf("exit %d, want %d\n%s", got, exitFailed, c.output())
	}
	if c.stdout.String() != "" || !strings.Contains(c.stderr.String(), "stopped by a signal") {
		t.Errorf("a stopped bench printed:\n%s", c.output())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopping took %v", d)
	}
}

// Root ids are UUID v4 that carry the run and the root's index, and only this run's
// ids are taken for roots.
func TestBenchRootIDs(t *testing.T) {
	r := newBenchRun(workloads["chain"], 1<<20, 1)
	other := newBenchRun(workloads["chain"], 1<<20, 1)
	for _, seq := range []int{0, 1, 15, 16, 4095, 1<<20 - 1} {
		id := r.rootID(seq)
		ev, err := necro.Draft{ID: id, Type: "a"}.Build()
		if err != nil || ev.ID() != id {
			t.Errorf("rootID(%d) = %q is not a UUID v4: %v", seq, id, err)
		}
		if got, ok := r.seqOf(id); !ok || got != seq {
			t.Errorf("seqOf(rootID(%d)) = %d, %v", seq, got, ok)
		}
		if _, ok := other.seqOf(id); ok {
			t.Errorf("another run takes %q for its own", id)
		}
	}
	for _, id := range []string{"", "not an id", r.rootID(0)[:35] + "g", r.prefix + "000000100000"} {
		if seq, ok := r.seqOf(id); ok {
			t.Errorf("seqOf(%q) = %d, true; want false", id, seq)
		}
	}
}

func TestPercentile(t *testing.T) {
	ns := make([]int64, 100)
	for i := range ns {
		ns[i] = int64(i+1) * 1e6 // 1ms … 100ms
	}
	for _, tt := range []struct {
		sorted []int64
		p      float64
		want   float64
	}{
		{ns, 0.50, 50}, {ns, 0.99, 99}, {ns, 1, 100}, {ns[:1], 0.99, 1}, {nil, 0.5, 0}, {ns[:3], 0.5, 2},
	} {
		if got := percentileMS(tt.sorted, tt.p); got != tt.want {
			t.Errorf("percentileMS(%d values, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	for _, tt := range []struct {
		done, want int64
		line       string
	}{
		{0, 3000, "[..............................]   0%  0 / 3,000 events  0/s "},
		{1500, 3000, "[###############...............]  50%  1,500 / 3,000 events  1,500/s "},
		{3000, 3000, "[##############################] 100%  3,000 / 3,000 events  3,000/s "},
	} {
		if got := progressBar(tt.done, tt.want, time.Second); got != tt.line {
			t.Errorf("progressBar(%d, %d) = %q, want %q", tt.done, tt.want, got, tt.line)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) {
		t.Error("a file or a buffer is taken for a terminal")
	}
	if dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		defer dev.Close()
		if !isTerminal(dev) {
			t.Errorf("%s, a character device, is not taken for one", os.DevNull)
		}
	}
}

func TestGrouped(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := grouped(n); got != want {
			t.Errorf("grouped(%d) = %q, want %q", n, got, want)
		}
	}
}

// --fail-pct makes that share of the roots fail in the first organ on every attempt:
// each is handled benchAttempts times there, not by the organs after it, and ends as
// one dead letter.
func TestBenchFailPct(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	for _, tt := range []struct {
		name     string
		args     []string
		backend  string
		workload string
		events   int
		handled  int64 // chain: 900 roots × 3 + 100 × 3 attempts of A
		dead     int64
		dropped  int64 // -1: not reported (Redis)
	}{
		{"memory chain", nil, "memory", "chain", 3000, 3000, 100, 0},
		// 950 roots × 4, and 50 roots × (3 attempts of F0 + F1, F2, F3).
		{"memory fanout", []string{"--fail-pct", "5"}, "memory", "fanout", 4000, 4100, 50, 0},
		{"memory, ring of 10", []string{"--dead-letter-capacity", "10"}, "memory", "chain", 3000, 3000, 100, 90},
		{"redis chain", []string{"--backend", "redis", "--redis", srv.URL(), "--keep"}, "redis", "chain", 3000, 3000, 100, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI()
			args := append([]string{"bench", "--workload", tt.workload, "--events", strconv.Itoa(tt.events), "--fail-pct", "10",
				"--json", "--window", "64", "--in-flight", "100"}, tt.args...)
			if got := c.run(t, args...); got != exitOK {
				t.Fatalf("exit %d\n%s", got, c.output())
			}
			m := oneJSON(t, c.stdout.String())
			extra := []string{"fail_pct", "failed_roots", "dead_letters"}
			if tt.dropped >= 0 {
				extra = append(extra, "dead_letters_dropped")
			}
			checkFigures(t, m, extra, tt.workload, tt.backend, tt.events, tt.handled)
			if m["failed_roots"] != float64(tt.dead) || m["dead_letters"] != float64(tt.dead) {
				t.Errorf("failed_roots %v, dead_letters %v; want %d each", m["failed_roots"], m["dead_letters"], tt.dead)
			}
			if tt.dropped >= 0 && m["dead_letters_dropped"] != float64(tt.dropped) {
				t.Errorf("dead_letters_dropped %v, want %d", m["dead_letters_dropped"], tt.dropped)
			}
			if tt.backend != "redis" {
				return
			}
			// Redis itself, not only bench's count, holds the dead letters.
			_, stream, _ := strings.Cut(c.stderr.String(), "kept stream ")
			stream = strings.TrimSpace(stream)
			if n, err := srv.Do("XLEN", stream+":dlq"); err != nil || n != strconv.FormatInt(tt.dead, 10) {
				t.Errorf("XLEN %s:dlq = %q, %v; want %d", stream, n, err, tt.dead)
			}
		})
	}
}

// The failing roots are spread evenly, and there are exactly as many as failingRoots
// says.
func TestBenchFails(t *testing.T) {
	for _, tt := range []struct {
		pct  float64
		want []int // the failing roots among 0 … 399
	}{
		{0, nil},
		{1, []int{99, 199, 299, 399}},
		{0.5, []int{199, 399}},
		{2.5, []int{39, 79, 119, 159, 199, 239, 279, 319, 359, 399}},
	} {
		r := newBenchRun(workloads["chain"], 400, 1)
		r.failPct = tt.pct
		var got []int
		for seq := range 400 {
			if r.fails(seq) {
				got = append(got, seq)
			}
		}
		if !slices.Equal(got, tt.want) || r.failingRoots() != int64(len(tt.want)) {
			t.Errorf("%v%%: roots %v fail, failingRoots() = %d; want %v", tt.pct, got, r.failingRoots(), tt.want)
		}
	}
	r := newBenchRun(workloads["chain"], 400, 1)
	r.failPct = 100
	for seq := range 400 {
		if !r.fails(seq) {
			t.Fatalf("100%%: root %d does not fail", seq)
		}
	}
}

// Paced, the producer enqueues root seq no sooner than seq/pace seconds after the start,
// and no later than the next root's time: in a bubble the clock moves only when the
// producer waits.
func TestBenchPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const roots, pace = 1000, 2000 // roots a second
		r := newBenchRun(workloads["chain"], roots, roots)
		r.pace, r.epoch = pace, time.Now()
		var at []time.Duration
		enqueue := func(_ context.Context, evs ...necro.Event) error {
			for _, ev := range evs {
				if seq, ok := r.seqOf(ev.ID()); !ok || seq != len(at) {
					t.Errorf("root %d enqueued as number %d", seq, len(at))
				}
				at = append(at, time.Since(r.epoch))
			}
			return nil
		}
		if err := r.produce(t.Context(), enqueue); err != nil {
			t.Fatal(err)
		}
		if len(at) != roots {
			t.Fatalf("%d roots enqueued, want %d", len(at), roots)
		}
		for seq, d := range at {
			due := time.Duration(seq) * time.Second / pace
			if d < due || d > due+time.Second/pace {
				t.Errorf("root %d enqueued at %v, want within a root's time after %v", seq, d, due)
			}
		}
	})
}

// --rate paces a real run: it cannot end before its last root is due.
func TestBenchRate(t *testing.T) {
	c := newCLI()
	// 1,000 roots at 2,000 a second: the last is due after 0.4995s.
	if got := c.run(t, "bench", "--events", "3000", "--rate", "6000", "--json"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	checkFigures(t, m, []string{"rate"}, "chain", "memory", 3000, 3000)
	if secs, _ := m["seconds"].(float64); m["rate"] != 6000.0 || secs < 0.4995 {
		t.Errorf("rate %v, seconds %v; want 6000 asked and at least 0.4995s", m["rate"], m["seconds"])
	}
}

// --rss-every reports the resident set size each time another N events were handled.
func TestBenchRSSEvery(t *testing.T) {
	if currentRSS() < 0 {
		t.Skip("this system does not tell the current RSS")
	}
	c := newCLI()
	if got := c.run(t, "bench", "--events", "30000", "--rss-every", "5000", "--json"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	var res benchResult
	if err := json.Unmarshal([]byte(c.stdout.String()), &res); err != nil {
		t.Fatal(err)
	}
	checkFigures(t, oneJSON(t, c.stdout.String()), []string{"rss"}, "chain", "memory", 30000, 30000)
	if len(res.RSS) == 0 || res.RSS[len(res.RSS)-1].Handled != 30000 {
		t.Fatalf("rss = %+v, want samples up to the 30,000th event", res.RSS)
	}
	for i, s := range res.RSS {
		if s.RSSBytes < 1<<20 || i > 0 && s.Handled/5000 <= res.RSS[i-1].Handled/5000 {
			t.Errorf("sample %d of %+v: want one per 5,000 events passed, each at least 1 MiB", i, res.RSS)
		}
	}
}

// bench honours the OTEL_* environment, as run and worker do: its spans reach Jaeger,
// one trace per root.
func TestBenchTracing(t *testing.T) {
	j := jaegertest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", j.OTLPHTTPEndpoint())
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "1")
	t.Setenv("OTEL_SERVICE_NAME", "necro-bench-test")
	c := newCLI()
	if got := c.run(t, "bench", "--events", "300", "--json"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	checkFigures(t, m, []string{"tracing"}, "chain", "memory", 300, 300)
	j.WaitForTraces(t, t.Context(), "necro-bench-test", func(ts []jaegertest.Trace) bool {
		chains := 0
		for _, tr := range ts {
			var ops []string
			for _, sp := range tr.Spans {
				ops = append(ops, sp.OperationName)
			}
			slices.Sort(ops)
			if slices.Equal(ops, []string{"process a", "process b", "process c"}) {
				chains++
			}
		}
		return chains == 100
	})
}

// peakRSS is the process's own peak, not one carried over from a larger parent (as
// ru_maxrss is on Linux): a child of a process holding 256 MiB reports far less.
func TestPeakRSSIsOwn(t *testing.T) {
	if os.Getenv("NECRO_BENCH_PEAK_CHILD") == "1" {
		fmt.Printf("peak=%d\n", peakRSS())
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("the carried-over peak is Linux's")
	}
	ballast := make([]byte, 256<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1 // resident, so the parent's peak is at least 256 MiB
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSSIsOwn$")
	cmd.Env = append(os.Environ(), "NECRO_BENCH_PEAK_CHILD=1")
	out, err := cmd.Output()
	runtime.KeepAlive(ballast)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, v, _ := strings.Cut(string(out), "peak=")
	v, _, _ = strings.Cut(v, "\n")
	peak, err := strconv.ParseInt(v, 10, 64)
	if err != nil || peak < 1<<20 || peak >= 200<<20 {
		t.Errorf("the child's peakRSS() = %q (%v); want its own, between 1 and 200 MiB, not the parent's 256 MiB", v, err)
	}
}
