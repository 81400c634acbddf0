// ETL runs the ETL pipeline of Python NecroStack on the in-memory backend: a CSV text
// goes through ExtractCSV, CleanData, TransformData and ExportSummary, and the program
// prints the summary.
//
//	go run ./examples/etl                 # the bundled employees.csv
//	go run ./examples/etl -file data.csv  # a CSV file of your own
//	go run ./examples/etl -v              # the organs' logs (JSON) on stderr
//
// The organs live in examples/etl/app, which the necro-actors CLI runs too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/examples/etl/app"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		os.Exit(2) // the flag package has already said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "etl:", err)
		os.Exit(1)
	}
}

// A usageError reports bad command-line arguments, already explained on stderr.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run is the whole program: main only turns signals into ctx and the error into an
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("etl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "read the CSV from this `file` instead of the bundled employees.csv")
	seed := fs.Int64("seed", 1, "seed of the random failures (the ETL pipeline has none: no effect)")
	noFailures := fs.Bool("no-random-failures", false, "turn off the random failures (the ETL pipeline has none: no effect)")
	quiet := fs.Bool("q", false, "leave out the banner")
	verbose := fs.Bool("v", false, "log at debug level (JSON on stderr); the default is warnings only")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments: %q", fs.Args())
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return usageError{err}
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := telemetry.NewJSONLogger(stderr, level)
	a, err := app.New(app.Options{Input: *file, Seed: *seed, RandomFailures: !*noFailures, Quiet: *quiet, Logger: log})
	if err != nil {
		return err
	}
	q, err := memory.New(memory.Config{Logger: log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, q.Close()) }()
	sp, err := spine.New(q, a.Mounts(), a.Config(spine.Config{Logger: log}))
	if err != nil {
		return err
	}
	roots, err := a.Roots()
	if err != nil {
		return err
	}

	a.Begin(stdout)
	if err := sp.Emit(ctx, roots...); err != nil {
		return fmt.Errorf("enqueue %s: %w", roots[0].Type(), err)
	}
	start := time.Now()
	if err := sp.Run(ctx); err != nil {
		return fmt.Errorf("run the pipeline: %w", err)
	}
	elapsed := time.Since(start)
	// Run returns nil when ctx is canceled too (an interrupt asks it to stop); the work
	// is then unfinished, and a report of it would mislead.
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("run the pipeline: %w", err)
	}
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	return a.Report(stdout, sp.Stats(), dead, elapsed)
}
