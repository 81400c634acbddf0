package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A report is everything the suite measured, and where.
type report struct {
	Plan       plan
	Machine    machine
	Start      time.Time // UTC
	Took       time.Duration
	LoadBefore float64 // the 1-minute load average before the first run
	Rows       []row
	RSS        []rssRun
}

// flatThreshold is the largest RSS growth, as a share of the earlier mean, that counts
// as flat: 10%, about 10 MiB on the 100 MiB a memory run holds, which over the 3 million
// events between the middles of the compared windows of a 5-million run is 3.5 bytes
// per event, or 1 KB per root failing at 1%. The samples of a run that does not grow
// swing by several percent with the collector's cycle, which the means smooth out.
const flatThreshold = 0.10

// behindPace is the share of the asked rate below which a paced run is marked as
// having fallen behind: its latency is then partly a queue's again.
const behindPace = 0.95

// rssGrowth returns the mean RSS of the samples taken in the second fifth of a run of
// events (1M–2M of 5M: past the start-up, the heap's first growth and a small
// dead-letter ring's filling) and of those in the last fifth (4M–5M), and false when a
// window has no sample.
func rssGrowth(samples []rssSample, events int) (early, late float64, ok bool) {
	mean := func(from, to int64) (float64, bool) {
		var sum float64
		n := 0
		for _, s := range samples {
			if s.Handled >= from && s.Handled < to {
				sum += float64(s.RSSBytes)
				n++
			}
		}
		return sum / float64(max(n, 1)), n > 0
	}
	fifth := int64(events) / 5
	early, ok1 := mean(fifth, 2*fifth)
	late, ok2 := mean(4*fifth, int64(events)+1)
	return early, late, ok1 && ok2
}

// verdict says whether a run's RSS stayed flat.
func verdict(samples []rssSample, events int) string {
	early, late, ok := rssGrowth(samples, events)
	switch {
	case !ok:
		return "no verdict: too few samples"
	case late-early < flatThreshold*early:
		return "**flat**"
	}
	return "**grows**"
}

// markdown writes the report as a section of BENCHMARKS.md would read.
func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	p("# necro benchmark suite\n\n")
	p("Measured %s UTC by `make bench` (cmd/necro-bench); the suite took %s.\n\n",
		r.Start.Format("2006-01-02 15:04"), r.Took.Round(time.Second))
	p("- Machine: %s, %d logical CPUs, %s RAM, %s.\n", m.CPU, m.Cores, gib(m.RAMBytes), m.OS)
	p("- Go %s (the toolchain that built necro-actors); redis-server %s, started by the suite on a loopback port, no persistence.\n",
		strings.TrimPrefix(m.GoVersion, "go"), m.Redis)
	lo, hi := r.loadRange()
	p("- Load average (1 minute): %.2f before the suite; %.2f – %.2f at the start of its runs (the suite's own runs count in it).\n\n",
		r.LoadBefore, lo, hi)

	p("## Throughput and latency\n\n")
	p("Max: %d run(s) per cell as fast as the pipeline allows (the median, the range in brackets); paced: one run at half that median, where the latency is the pipeline's rather than the wait behind the roots in flight (at most 8,192: twice the Spine's window). Events/s counts handler invocations (3 a root for chain, 4 for fanout). Latency is per root, from its enqueue to the end of its last handling. %s events a max-rate run on memory, %s on Redis; a paced run has as many, or enough for %v at its rate if that is more. Tracing 1%%: OTLP/HTTP to Jaeger, parent-based 1%% trace-id ratio. The roots carry no trace context, so each root's trace is the one its id names: one trace a root, with 3 process spans in the chain (A, B, C) and 4 in the fanout (one per organ). The last column is the traces of roots Jaeger holds after the cell's runs, against 1%% of the roots, and how many of them have every span.\n\n",
		r.Plan.Rounds, grouped(int64(r.Plan.MemoryEvents)), grouped(int64(r.Plan.RedisEvents)), r.Plan.PacedFor)
	p("| backend | workload | tracing | max events/s | max p50 / p99 ms | paced at events/s (reached) | paced p50 / p99 ms | peak RSS MiB (max / paced) | traces in Jaeger: found / expected, complete |\n")
	p("|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		tr := "off"
		if row.Tracing {
			tr = "1%"
		}
		p("| %s | %s | %s | %s |\n", row.Backend, row.Workload, tr, row.cells())
	}
	p("\n† The paced run reached less than %.0f%% of the rate asked: it fell behind, so part of its latency is a queue's again.\n",
		behindPace*100)

	p("\n## Memory over %s events with %d%% of the roots failing\n\n", grouped(int64(r.Plan.RSSEvents)), failPct)
	p("Chain workload; %d%% of the roots fail in organ A on every attempt (3 attempts, default backoff), so they go through the retry tracker and are dead-lettered. The RSS is read from /proc/self/statm every %s handled events. Growth compares the mean of the samples in the second fifth of the run with the mean in the last fifth; flat means less than %.0f%%. The per-root bookkeeping of the benchmark itself (12 bytes a root) is resident from the start, so it is in every sample and not in the growth.\n\n",
		failPct, grouped(int64(r.Plan.RSSEvery)), flatThreshold*100)
	p("| backend | dead letters kept by | handled | failing roots / dead letters | events/s | RSS mean, 2nd fifth | RSS mean, last fifth | growth | verdict | peak RSS |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rr := range r.RSS {
		p("| %s | %s | %s |\n", rr.Backend, rr.store(), rr.cells(r.Plan.RSSEvents))
	}
	p("\nSeries, MiB at thousands of handled events:\n\n")
	for _, rr := range r.RSS {
		p("- %s, %s: %s\n", rr.Backend, rr.store(), series(rr.Run.Result.RSS))
	}

	p("\n## Commands\n\n")
	p("Each run is one process; `--redis` names the suite's own server and the OTLP endpoint its Jaeger.\n\n")
	n := 0
	cmd := func(c string) {
		if c != "" {
			n++
			p("%d. `%s`\n", n, c)
		}
	}
	for _, row := range r.Rows {
		for _, m := range row.Max {
			cmd(m.Command)
		}
		cmd(row.Half.Command)
	}
	for _, rr := range r.RSS {
		cmd(rr.Run.Command)
	}
	return b.String()
}

// loadRange returns the lowest and highest load average at the start of a run.
func (r *report) loadRange() (lo, hi float64) {
	first := true
	each := func(l float64) {
		if l < 0 {
			return
		}
		if first || l < lo {
			lo = l
		}
		if first || l > hi {
			hi = l
		}
		first = false
	}
	for _, row := range r.Rows {
		for _, m := range row.Max {
			each(m.Load)
		}
		if row.Half.Command != "" {
			each(row.Half.Load)
		}
	}
	for _, rr := range r.RSS {
		each(rr.Run.Load)
	}
	return lo, hi
}

// cells writes a throughput row's figures, from the max-rate column on.
func (row row) cells() string {
	if len(row.Max) == 0 {
		return fmt.Sprintf("failed: %s | | | | |", firstLine(row.Err))
	}
	lo, hi := row.Max[0].Result.EventsPerSec, row.Max[0].Result.EventsPerSec
	var med result
	for _, m := range row.Max {
		lo, hi = min(lo, m.Result.EventsPerSec), max(hi, m.Result.EventsPerSec)
		if m.Result.EventsPerSec == row.medianRate() {
			med = m.Result
		}
	}
	maxRate := "**" + grouped(int64(med.EventsPerSec)) + "**"
	if len(row.Max) > 1 {
		maxRate += fmt.Sprintf(" (%s – %s)", grouped(int64(lo)), grouped(int64(hi)))
	}
	traces := "—"
	if row.Tracing {
		traces = row.traces()
	}
	h := row.Half.Result
	if row.Half.Command == "" || row.Err != nil {
		return fmt.Sprintf("%s | %.1f / %.1f | failed: %s | | %s / — | %s", maxRate, med.P50MS, med.P99MS, firstLine(row.Err),
			mibs(med.PeakRSSBytes), traces)
	}
	reached := grouped(int64(h.EventsPerSec))
	if h.EventsPerSec < behindPace*h.Rate {
		reached += " †"
	}
	return fmt.Sprintf("%s | %.1f / %.1f | %s (%s) | %.2f / %.2f | %s / %s | %s", maxRate, med.P50MS, med.P99MS,
		grouped(int64(h.Rate)), reached, h.P50MS, h.P99MS, mibs(med.PeakRSSBytes), mibs(h.PeakRSSBytes), traces)
}

// traces sums what Jaeger holds of a tracing row's runs.
func (row row) traces() string {
	var tc traceCount
	for _, run := range append(row.Max, row.Half) {
		if run.Traces != nil {
			tc.Found += run.Traces.Found
			tc.Complete += run.Traces.Complete
			tc.Expected += run.Traces.Expected
		}
	}
	return fmt.Sprintf("%s / %s, %s complete", grouped(int64(tc.Found)), grouped(int64(tc.Expected+0.5)), grouped(int64(tc.Complete)))
}

// store names where an RSS run's dead letters went.
func (rr rssRun) store() string {
	switch {
	case rr.Backend == "redis":
		return "the dead-letter stream"
	case rr.RingCapacity > 0:
		return fmt.Sprintf("a ring of %s", grouped(int64(rr.RingCapacity)))
	}
	return "the default ring (10,000)"
}

// cells writes an RSS row's figures, from the handled column on.
func (rr rssRun) cells(events int) string {
	res := rr.Run.Result
	if res.Handled == 0 {
		return fmt.Sprintf("failed: %s | | | | | | |", firstLine(rr.Err))
	}
	dead := "?"
	if res.FailedRoots != nil && res.DeadLetters != nil {
		dead = fmt.Sprintf("%s / %s", grouped(*res.FailedRoots), grouped(*res.DeadLetters))
		if res.DeadLettersDropped != nil && *res.DeadLettersDropped > 0 {
			dead += fmt.Sprintf(" (%s dropped by the ring)", grouped(*res.DeadLettersDropped))
		}
	}
	early, late, ok := rssGrowth(res.RSS, events)
	growth := "—"
	if ok {
		growth = fmt.Sprintf("%+.1f MiB (%+.1f%%)", (late-early)/(1<<20), 100*(late-early)/early)
	}
	return fmt.Sprintf("%s | %s | %s | %s MiB | %s MiB | %s | %s | %s MiB", grouped(res.Handled), dead, grouped(int64(res.EventsPerSec)),
		mibs(int64(early)), mibs(int64(late)), growth, verdict(res.RSS, events), mibs(res.PeakRSSBytes))
}

// series writes RSS samples as "100k 95.1 · 200k 96.0 · …".
func series(samples []rssSample) string {
	if len(samples) == 0 {
		return "none"
	}
	parts := make([]string, len(samples))
	for i, s := range samples {
		parts[i] = fmt.Sprintf("%dk %s", s.Handled/1000, mibs(s.RSSBytes))
	}
	return strings.Join(parts, " · ")
}

func mibs(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

func gib(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// grouped writes n with commas between groups of three digits.
func grouped(n int64) string {
	if n < 0 {
		return "-" + grouped(-n)
	}
	if n < 1000 {
		return strconv.FormatInt(n, 10)
	}
	return grouped(n/1000) + fmt.Sprintf(",%03d", n%1000)
}

// firstLine returns the first line of err's text, or "" for nil.
func firstLine(err error) string {
	if err == nil {
		return ""
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
