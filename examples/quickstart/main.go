// Quickstart embeds a Spine the way a user would: it submits a file of orders to an
// in-memory backend and runs them through a small trading pipeline of four organs,
// then prints what happened.
//
//	go run ./examples/quickstart                  # the embedded sample orders
//	go run ./examples/quickstart -orders FILE     # a file of the same shape
//	go run ./examples/quickstart -v               # debug logs (JSON) on stderr
//	go run ./examples/quickstart -window 1        # one delivery in flight: the same report
//
// The pipeline: validate checks each order.submitted and emits order.validated or
// order.rejected; match keeps a price-time order book per symbol and emits
// trade.executed plus one terminal event per order; settle turns each trade into
// trade.settled, or fails permanently for the restricted traders so the dead-letter path
// shows; audit counts every event type it sees.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/necrostack/necro/spine"
)

//go:embed sample_orders.json
var sampleOrders []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		os.Exit(2) // the flag package has already said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// A usageError reports bad command-line arguments, already explained on stderr.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run is the whole program: main only turns signals into ctx and the error into an
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ordersFile := fs.String("orders", "", "read orders from this JSON `file` ({\"orders\": [...]}) instead of the embedded sample")
	window := fs.Int("window", 0, "deliveries the Spine may have in flight; any size prints the same report (0 means the default)")
	verbose := fs.Bool("v", false, "log at debug level")
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
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	data, source := sampleOrders, "embedded sample_orders.json"
	if *ordersFile != "" {
		var err error
		if data, err = os.ReadFile(*ordersFile); err != nil {
			return err // the *PathError names the file
		}
		source = *ordersFile
	}
	orders, err := parseOrders(data)
	if err != nil {
		return fmt.Errorf("read orders from %s: %w", source, err)
	}
	logger.DebugContext(ctx, "orders read", slog.String("source", source), slog.Int("orders", len(orders)))

	res, err := process(ctx, orders, spine.Config{
		// The pipeline has no cycle: every chain ends at a terminal order event or at
		// trade.settled, so the step budget would only cap the size of the orders file.
		MaxSteps: spine.Unlimited,
		Window:   *window,
		Logger:   logger,
	})
	if err != nil {
		return err
	}
	return res.write(stdout)
}

// parseOrders reads the {"orders": [...]} shape of sample_orders.json. Each order stays
// raw JSON: the validate organ judges its fields, so a malformed order becomes an
// order.rejected event rather than an error here.
func parseOrders(data []byte) ([]json.RawMessage, error) {
	var file struct {
		Orders *[]json.RawMessage `json:"orders"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, err
	}
	if file.Orders == nil {
		return nil, errors.New(`no "orders" list`)
	}
	return *file.Orders, nil
}
