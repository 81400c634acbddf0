// Trading is the order book of Python NecroStack (examples/trading_orderbook) on necro:
// it submits orders to an in-memory backend, runs them through five organs
// (ValidateOrder, MatchingEngine, SettlementOrgan, RiskManager, AuditTrail) and prints
// what happened, in the seed's sections.
//
//	go run ./examples/trading                          # the bundled sample_orders.json
//	go run ./examples/trading -file orders.csv         # a JSON or CSV file of orders
//	go run ./examples/trading -stress -orders 500      # random orders, seeded by -seed
//	go run ./examples/trading -no-random-failures      # no clearing house timeouts
//	go run ./examples/trading -settlement-latency -1ns # no clearing house latency
//	go run ./examples/trading -v                       # debug logs (JSON) on stderr
//
// The organs live in package app, which the necro-actors CLI runs as well.
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

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/examples/trading/app"
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
		fmt.Fprintln(os.Stderr, "trading:", err)
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
	fs := flag.NewFlagSet("trading", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "read orders from this JSON or CSV `file` instead of the bundled sample")
	seed := fs.Int64("seed", 1, "seed of the random failures, the latency and the -stress orders")
	noFailures := fs.Bool("no-random-failures", false, "turn off the clearing house's random timeouts (5% of settlements)")
	quiet := fs.Bool("q", false, "print only the results, not a line per order")
	verbose := fs.Bool("v", false, "log at debug level")
	stress := fs.Bool("stress", false, "submit -orders random orders instead of a file")
	count := fs.Int("orders", 500, "how many orders -stress submits")
	latency := fs.Duration("settlement-latency", 0, "longest clearing house latency per settlement; 0 means the seed's 50-150ms, negative means none")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	usage := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return usageError{err}
	}
	countSet := false
	fs.Visit(func(f *flag.Flag) { countSet = countSet || f.Name == "orders" })
	switch {
	case fs.NArg() > 0:
		return usage("unexpected arguments: %q", fs.Args())
	case *stress && *file != "":
		return usage("-stress makes up its orders; it cannot be used with -file")
	case countSet && !*stress:
		return usage("-orders applies to -stress only")
	case *count < 0:
		return usage("-orders must not be negative, got %d", *count)
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := telemetry.NewJSONLogger(stderr, level)

	opts := app.Options{Input: *file, Seed: *seed, RandomFailures: !*noFailures, Quiet: *quiet, Logger: log,
		SettlementLatency: *latency}
	var a *app.App
	if *stress {
		a, err = app.NewStress(opts, *count)
	} else {
		a, err = app.New(opts)
	}
	if err != nil {
		return err // it names the file and the problem
	}
	// Unbounded: every order is enqueued before the run starts, however many, and every
	// dead letter counts in the report.
	q, err := memory.New(memory.Config{Capacity: memory.Unbounded, DeadLetterCapacity: memory.Unbounded, Logger: log})
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
	// Every order is queued before the run starts, and the queue is FIFO: all orders are
	// validated before the first is matched, and matching follows the input's order.
	if err := sp.Emit(ctx, roots...); err != nil {
		return fmt.Errorf("submit orders: %w", err)
	}
	start := time.Now()
	runErr := sp.Run(ctx)
	elapsed := time.Since(start)
	if runErr == nil {
		// Run returns nil when ctx is canceled too (an interrupt asks it to stop); the
		// work is then unfinished, and a report of it would mislead.
		runErr = context.Cause(ctx)
	}
	if runErr != nil && !errors.Is(runErr, necro.ErrStepBudgetExceeded) {
		return fmt.Errorf("run: %w", runErr)
	}
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	// A run cut by the step budget is still worth a report: it shows how far it got.
	if err := a.Report(stdout, sp.Stats(), dead, elapsed); err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("run: %w", runErr)
	}
	return nil
}
