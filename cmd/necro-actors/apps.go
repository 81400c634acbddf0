package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	etl "github.com/necrostack/necro/examples/etl/app"
	notifications "github.com/necrostack/necro/examples/notifications/app"
	seance "github.com/necrostack/necro/examples/seance/app"
	trading "github.com/necrostack/necro/examples/trading/app"
	"github.com/necrostack/necro/internal/chaosapp"
	"github.com/necrostack/necro/spine"
)

// An app is a bundled app as the commands drive it: what every package
// examples/<name>/app exports. New reads the input; the Spine runs the Mounts with
// Config; Begin and Report print the sections before and after the run, and Results
// gives the same results as a JSON-able value.
type app interface {
	Mounts() []necro.Mount
	Config(base spine.Config) spine.Config
	Roots() ([]necro.Event, error)
	Begin(w io.Writer)
	Report(w io.Writer, st spine.Stats, dead []backend.DeadLetter, elapsed time.Duration) error
	Results() any
}

// appOptions are the options every app takes; each app's own Options has these fields.
type appOptions struct {
	Input          string       // the input file; "" means the app's bundled sample
	Seed           int64        // seeds the random failures
	RandomFailures bool         // the seed app's random failures
	Quiet          bool         // print only the results, not a line per input
	Logger         *slog.Logger // the organs' logs
	Ledger         string       // the file the chaos app appends a line per Handle call to; other apps refuse it
	Worker         string       // the name in the chaos app's ledger lines: the worker's consumer name
}

// ledgerApp is the one app that keeps a ledger (--ledger).
const ledgerApp = "chaos"

// apps holds the bundled apps by the name the commands take.
var apps = map[string]func(appOptions) (app, error){
	ledgerApp: func(o appOptions) (app, error) {
		return adapt(chaosapp.New(chaosapp.Options{Input: o.Input, Ledger: o.Ledger, Worker: o.Worker, Quiet: o.Quiet, Logger: o.Logger}))
	},
	"etl": func(o appOptions) (app, error) {
		return adapt(etl.New(etl.Options{Input: o.Input, Seed: o.Seed, RandomFailures: o.RandomFailures, Quiet: o.Quiet, Logger: o.Logger}))
	},
	"notifications": func(o appOptions) (app, error) {
		return adapt(notifications.New(notifications.Options{Input: o.Input, Seed: o.Seed, RandomFailures: o.RandomFailures, Quiet: o.Quiet, Logger: o.Logger}))
	},
	"seance": func(o appOptions) (app, error) {
		return adapt(seance.New(seance.Options{Input: o.Input, Seed: o.Seed, RandomFailures: o.RandomFailures, Quiet: o.Quiet, Logger: o.Logger}))
	},
	"trading": func(o appOptions) (app, error) {
		// SettlementLatency stays the seed's 50–150 ms per trade.
		return adapt(trading.New(trading.Options{Input: o.Input, Seed: o.Seed, RandomFailures: o.RandomFailures, Quiet: o.Quiet, Logger: o.Logger}))
	},
}

// adapt turns an app package's New result into an app; a failed New gives a nil app,
// not an app holding a nil pointer.
func adapt[A app](a A, err error) (app, error) {
	if err != nil {
		return nil, err
	}
	return a, nil
}

// appNames returns the names of the bundled apps, sorted.
func appNames() []string { return slices.Sorted(maps.Keys(apps)) }

// appArg returns the one app a command was given among its positional arguments.
func appArg(pos []string) (string, error) {
	switch {
	case len(pos) == 0:
		return "", usageErr("name the app to run: %s", strings.Join(appNames(), ", "))
	case len(pos) > 1:
		return "", usageErr("one app at a time, got %q", pos)
	case apps[pos[0]] == nil:
		return "", usageErr("unknown app %q; the apps are: %s", pos[0], strings.Join(appNames(), ", "))
	}
	return pos[0], nil
}

// newApp builds the app called name. A failure reads the input (a missing file, a bad
// record), so it is a usage error; its text names the file and the problem.
func newApp(name string, opts appOptions) (app, error) {
	if opts.Ledger != "" && name != ledgerApp {
		return nil, usageErr("--ledger is for the %s app; %s keeps no ledger", ledgerApp, name)
	}
	a, err := apps[name](opts)
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("%s: %w", name, err))
	}
	return a, nil
}

// appsUsage adds the list of apps to the usage text a command's -h prints.
func appsUsage(e *env, usage func()) func() {
	return func() {
		usage()
		fmt.Fprintf(e.stderr, "\napps: %s\n", strings.Join(appNames(), ", "))
	}
}
