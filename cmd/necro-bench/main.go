// Command necro-bench is necro's benchmark suite, which `make bench` runs. It measures
// the runtime from the outside, one `necro-actors bench` process per run, so that each
// run's peak RSS is its own, and writes one Markdown report: the machine, a table of
// the figures, and every command it ran.
//
// The suite starts what it needs on free loopback ports and stops it at the end: a
// redis-server of its own (internal/redisproc; never the machine's 6379), and a Jaeger
// (bin/jaeger, `make jaeger` builds it) for the runs with tracing. Those runs get the
// OTEL_* environment a deployment would set — the OTLP endpoint and a parent-based 1%
// trace-id ratio sampler — and the suite then asks Jaeger's query API how many traces
// arrived, so that a tracing figure is known to have exported its spans.
//
// For each backend (memory, redis), workload (chain, fanout) and tracing (off, 1%):
//
//   - throughput: the median of --rounds runs as fast as the pipeline allows;
//   - latency: p50 and p99 of a run paced at half that median rate;
//   - peak RSS of each run.
//
// Then, on each backend, a long chain run with 1% of the roots failing on every attempt
// (so they are retried and dead-lettered) reports its RSS every so many events, and
// whether it stays flat.
//
// Usage:
//
//	necro-bench --necro-actors FILE [--jaeger FILE] [--out FILE] [--quick] [--rounds N]
//
// It exits 0 when every run finished and the tracing runs' spans reached Jaeger, 1
// otherwise (the report is written either way), and 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// Exit codes, as the command's doc lists them.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// errUsage marks bad arguments; the flag package has printed the usage.
var errUsage = errors.New("usage")

// exitCode prints err as one line, unless it is a usage error, and returns its code.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	}
	fmt.Fprintf(stderr, "necro-bench: %v\n", err)
	return exitFailed
}

// run is the whole program: it parses args, runs the suite and writes the report to
// stdout and the --out file.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("necro-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("necro-actors", "", "the necro-actors `binary` to measure (required)")
	jaeger := fs.String("jaeger", "bin/jaeger", "the Jaeger `binary` the tracing runs export to")
	out := fs.String("out", "bench.out", "write the Markdown report to this `file` as well as to stdout")
	quick := fs.Bool("quick", false, "tiny runs, to check the suite itself in seconds; the figures mean nothing")
	rounds := fs.Int("rounds", 0, "max-rate runs per cell, of which the median counts (default 3, 1 with --quick)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: necro-bench --necro-actors FILE [--jaeger FILE] [--out FILE] [--quick] [--rounds N]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	var problem string
	switch {
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected arguments %q", fs.Args())
	case *bin == "":
		problem = "--necro-actors is required"
	case *rounds < 0:
		problem = fmt.Sprintf("--rounds must not be negative, got %d", *rounds)
	}
	if problem != "" {
		fmt.Fprintf(stderr, "necro-bench: %s\n", problem)
		fs.Usage()
		return errUsage
	}
	plan := fullPlan
	if *quick {
		plan = quickPlan
	}
	if *rounds > 0 {
		plan.Rounds = *rounds
	}
	for _, f := range []struct{ flag, path string }{{"--necro-actors", *bin}, {"--jaeger", *jaeger}} {
		if _, err := os.Stat(f.path); err != nil {
			fmt.Fprintf(stderr, "necro-bench: %s: %v\n", f.flag, err)
			return errUsage
		}
	}
	s := &suite{plan: plan, bin: *bin, jaegerBin: *jaeger, progress: stderr}
	rep, runErr := s.run(ctx)
	var b []byte
	if rep != nil {
		b = []byte(rep.markdown())
	}
	if _, err := stdout.Write(b); err != nil {
		return errors.Join(runErr, err)
	}
	if len(b) > 0 {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return errors.Join(runErr, err)
		}
	}
	return runErr
}
