package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/internal/redistest"
)

// benchKeys are the keys of bench --json, exactly.
var benchKeys = []string{"backend", "events", "events_per_sec", "handled", "p50_ms", "p99_ms", "peak_rss_bytes", "seconds", "workload"}

// checkBench checks the one JSON object of a bench run.
func checkBench(t *testing.T, c *cli, workload, backend string, events int) {
	t.Helper()
	m := oneJSON(t, c.stdout.String())
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, benchKeys) {
		t.Errorf("keys %v, want %v", got, benchKeys)
	}
	if m["workload"] != workload || m["backend"] != backend || m["events"] != float64(events) || m["handled"] != float64(events) {
		t.Errorf("bench = %v, want %s on %s with %d events asked and handled", m, workload, backend, events)
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
