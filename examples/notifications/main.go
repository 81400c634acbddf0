// Notifications is the notification pipeline of Python NecroStack on necro: requests go
// through validation, routing to email, SMS and push, delivery and an audit, and the
// program prints what the Spine did.
//
//	go run ./examples/notifications                        # the bundled sample, random failures on (seed 1)
//	go run ./examples/notifications -file requests.csv     # a .json or .csv file of requests
//	go run ./examples/notifications -stress -count 500     # random requests for 19 users
//	go run ./examples/notifications -no-random-failures -q # no SMTP failures; results only
//	go run ./examples/notifications -v                     # debug logs (JSON) on stderr
//
// The organs are in package app, which the necro-actors CLI runs as well.
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
	"github.com/necrostack/necro/examples/notifications/app"
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
		os.Exit(2) // the flag package, or run, has already said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "notifications:", err)
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
	fs := flag.NewFlagSet("notifications", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "read the requests from this .json or .csv `file` instead of the bundled sample")
	stress := fs.Bool("stress", false, "make up random requests for 19 users instead of reading them")
	count := fs.Int("count", 100, "how many requests -stress makes up")
	seed := fs.Int64("seed", 1, "seed of the random failures and of -stress: the same seed repeats a run")
	noFailures := fs.Bool("no-random-failures", false, "turn off EmailOrgan's random SMTP failures")
	quiet := fs.Bool("q", false, "print only the results, not the header and a line per request")
	verbose := fs.Bool("v", false, "log at debug level (JSON lines on stderr); the default is warnings only")
	usage := func(format string, a ...any) error {
		err := fmt.Errorf(format, a...)
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return usageError{err}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	countSet := false
	fs.Visit(func(f *flag.Flag) { countSet = countSet || f.Name == "count" })
	switch {
	case fs.NArg() > 0:
		return usage("unexpected arguments: %q", fs.Args())
	case *stress && *file != "":
		return usage("-stress makes up its requests; it cannot be used with -file")
	case countSet && !*stress:
		return usage("-count applies to -stress only")
	case *count < 0:
		return usage("-count must not be negative, got %d", *count)
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := telemetry.NewJSONLogger(stderr, level)

	opts := app.Options{Input: *file, Seed: *seed, RandomFailures: !*noFailures, Quiet: *quiet, Logger: log}
	var a *app.App
	if *stress {
		a, err = app.NewStress(opts, *count)
	} else {
		a, err = app.New(opts)
	}
	if err != nil {
		return err // it names the file and the problem
	}
	roots, err := a.Roots()
	if err != nil {
		return err
	}

	// Unbounded: every request is enqueued before the run starts, however many.
	q, err := memory.New(memory.Config{Capacity: memory.Unbounded, DeadLetterCapacity: memory.Unbounded, Logger: log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, q.Close()) }()
	sp, err := spine.New(q, a.Mounts(), a.Config(spine.Config{Logger: log}))
	if err != nil {
		return err
	}

	a.Begin(stdout)
	if err := sp.Emit(ctx, roots...); err != nil {
		return fmt.Errorf("enqueue the requests: %w", err)
	}
	start := time.Now()
	runErr := sp.Run(ctx)
	elapsed := time.Since(start)
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("read dead letters: %w", err))
	}
	// The report comes even after a failed run: it shows how far the run got.
	if err := a.Report(stdout, sp.Stats(), dead, elapsed); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = fmt.Errorf("the run did not finish: %w", context.Cause(ctx))
	}
	return runErr
}
