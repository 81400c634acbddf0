package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The quick suite runs every cell and RSS run for real, against its own redis-server
// and Jaeger, and writes a report that holds them all; the tracing runs' spans reached
// Jaeger, or the suite would have failed.
func TestQuickSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("about 20s of runs; -short skips it")
	}
	jaeger := os.Getenv("NECRO_JAEGER_BIN")
	if jaeger == "" {
		jaeger = filepath.Join("..", "..", "bin", "jaeger")
	}
	for _, need := range []struct{ what, path string }{{"Jaeger (make jaeger)", jaeger}, {"redis-server", "redis-server"}} {
		if _, err := exec.LookPath(need.path); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s: %v", need.what, err)
			}
			t.Skipf("%s: %v", need.what, err)
		}
	}
	bin := filepath.Join(t.TempDir(), "necro-actors")
	if out, err := exec.Command("go", "build", "-o", bin, "../necro-actors").CombinedOutput(); err != nil {
		t.Fatalf("build necro-actors: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "bench.md")
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if err := run(t.Context(), []string{"--necro-actors", bin, "--jaeger", jaeger, "--quick", "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("the quick suite failed: %v\n%s", err, stderr.String())
	}
	t.Logf("the quick suite took %v", time.Since(start))
	written, err := os.ReadFile(out)
	if err != nil || string(written) != stdout.String() {
		t.Errorf("--out holds %d bytes (%v), stdout %d: want the same report", len(written), err, stdout.Len())
	}
	md := stdout.String()
	for _, want := range []string{
		"| memory | chain | off | **", "| memory | chain | 1% | **", "| memory | fanout | off | **", "| memory | fanout | 1% | **",
		"| redis | chain | off | **", "| redis | chain | 1% | **", "| redis | fanout | off | **", "| redis | fanout | 1% | **",
		"| memory | a ring of 10 | ", "| memory | the default ring (10,000) | ", "| redis | the dead-letter stream | ",
		"OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01",
		"necro-actors bench --backend redis --redis redis://127.0.0.1:",
		"--fail-pct 1 --rss-every 6000",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report has no %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "failed:") {
		t.Errorf("the report holds a failed run:\n%s", md)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--necro-actors", "/does/not/exist"},
		{"--necro-actors", os.Args[0], "--jaeger", "/does/not/exist"},
		{"--necro-actors", os.Args[0], "--rounds", "-1"},
		{"--necro-actors", os.Args[0], "extra"},
		{"--no-such-flag"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, &stdout, &stderr)
		if !errors.Is(err, errUsage) || exitCode(err, &stderr) != exitUsage {
			t.Errorf("run %q = %v, want a usage error (exit %d)", args, err, exitUsage)
		}
		if stdout.Len() > 0 {
			t.Errorf("run %q printed a report:\n%s", args, stdout.String())
		}
	}
}

// samples returns one RSS sample every 100,000 events up to events, of rss(handled) MiB.
func samples(events int, rss func(handled int) float64) []rssSample {
	var s []rssSample
	for h := 100_000; h <= events; h += 100_000 {
		s = append(s, rssSample{Handled: int64(h), RSSBytes: int64(rss(h) * (1 << 20))})
	}
	return s
}

func TestVerdict(t *testing.T) {
	const events = 5_000_000
	for _, tt := range []struct {
		name    string
		samples []rssSample
		want    string
	}{
		{"constant", samples(events, func(int) float64 { return 100 }), "**flat**"},
		// The collector's sawtooth: ±8% from one sample to the next.
		{"noisy", samples(events, func(h int) float64 { return 100 + 8*float64(h/100_000%2*2-1) }), "**flat**"},
		// A start-up climb before the first million does not count.
		{"start-up", samples(events, func(h int) float64 { return min(100, 40+float64(h)/10_000) }), "**flat**"},
		{"9% growth", samples(events, func(h int) float64 { return 100 + 9*float64(h-1_000_000)/3_500_000 }), "**flat**"},
		{"leak", samples(events, func(h int) float64 { return 100 + float64(h)/200_000 }), "**grows**"},
		{"filling until 3M", samples(events, func(h int) float64 { return 100 + float64(min(h, 3_000_000))/50_000 }), "**grows**"},
		{"no samples", nil, "no verdict: too few samples"},
		{"none in the last fifth", samples(3_000_000, func(int) float64 { return 100 }), "no verdict: too few samples"},
	} {
		if got := verdict(tt.samples, events); got != tt.want {
			early, late, _ := rssGrowth(tt.samples, events)
			t.Errorf("%s: verdict = %s (means %.1f → %.1f MiB), want %s", tt.name, got, early/(1<<20), late/(1<<20), tt.want)
		}
	}
}

func TestMachineFiles(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel(cpuinfo); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q, want AMD EPYC 7B13", got)
	}
	if got := cpuModel("processor\t: 0\nBogoMIPS\t: 50.00\n"); got != "" {
		t.Errorf("cpuModel of a file without a model = %q, want empty", got)
	}
	meminfo := "MemTotal:       24573948 kB\nMemFree:        20000000 kB\n"
	if got := memTotal(meminfo); got != 24573948*1024 {
		t.Errorf("memTotal = %d, want %d", got, 24573948*1024)
	}
	if got := memTotal("MemFree: 1 kB\n"); got != 0 {
		t.Errorf("memTotal without MemTotal = %d, want 0", got)
	}
}

func TestGrouped(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1_000_001: "1,000,001", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := grouped(n); got != want {
			t.Errorf("grouped(%d) = %q, want %q", n, got, want)
		}
	}
}

// The report's throughput row shows the median of the rounds, their range, the paced
// run, and what Jaeger held.
func TestReportRow(t *testing.T) {
	maxRun := func(rate float64) benchRun {
		return benchRun{Command: "necro-actors bench", Result: result{EventsPerSec: rate, P50MS: 30, P99MS: 60, PeakRSSBytes: 80 << 20},
			Traces: &traceCount{Found: 30, Complete: 29, Expected: 33.3}}
	}
	r := row{cell: cell{"memory", "chain", true}, Max: []benchRun{maxRun(600_000), maxRun(700_000), maxRun(650_000)},
		Half: benchRun{Command: "necro-actors bench --rate 325000", Result: result{Rate: 325_000, EventsPerSec: 324_000.7,
			P50MS: 1.234, P99MS: 5.678, PeakRSSBytes: 60 << 20}, Traces: &traceCount{Found: 31, Complete: 31, Expected: 33.3}}}
	want := "**650,000** (600,000 – 700,000) | 30.0 / 60.0 | 325,000 (324,000) | 1.23 / 5.68 | 80.0 / 60.0 | 121 / 133, 118 complete"
	if got := r.cells(); got != want {
		t.Errorf("cells() =\n%s\nwant\n%s", got, want)
	}
	r.Half.Result.EventsPerSec = 300_000 // below 95% of the pace
	if got := r.cells(); !strings.Contains(got, "| 325,000 (300,000 †) |") {
		t.Errorf("cells() of a run behind its pace = %q, want it marked †", got)
	}
	r.Err, r.Half = errors.New("memory chain tracing 1%, paced: exit status 1\nmore"), benchRun{}
	if got := r.cells(); !strings.Contains(got, "failed: memory chain tracing 1%, paced: exit status 1 |") || strings.Contains(got, "more") {
		t.Errorf("cells() of a row whose paced run failed = %q", got)
	}
}
