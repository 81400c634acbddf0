// Seance runs the Séance of Python NecroStack on the in-memory backend: a ritual goes
// through SummonSpirit, AskQuestion, InterpretResponse and ManifestEffect, and the
// program prints what the spirit revealed.
//
//	go run ./examples/seance                                   # the seed's ritual
//	go run ./examples/seance -spirit Raven -question 'Will it rain?'
//	go run ./examples/seance -file ritual.json                 # {"ritual": ..., "spirit_name": ..., "question": ...}
//	go run ./examples/seance -v                                # the organs' logs (JSON) on stderr
//
// The organs live in examples/seance/app, which the necro-actors CLI runs too.
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
	"github.com/necrostack/necro/examples/seance/app"
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
		fmt.Fprintln(os.Stderr, "seance:", err)
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
	def := app.DefaultRitual()
	fs := flag.NewFlagSet("seance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", `read the ritual from this JSON `+"`file`"+` ({"ritual": ..., "spirit_name": ..., "question": ...}; a missing key keeps its default)`)
	ritual := fs.String("ritual", def.Ritual, "the ritual that summons the spirit")
	spirit := fs.String("spirit", def.SpiritName, "the spirit's name")
	question := fs.String("question", def.Question, "the question put to the spirit")
	seed := fs.Int64("seed", 1, "seed of the random failures (the séance has none: no effect)")
	noFailures := fs.Bool("no-random-failures", false, "turn off the random failures (the séance has none: no effect)")
	quiet := fs.Bool("q", false, "leave out the banner")
	verbose := fs.Bool("v", false, "log at debug level (JSON on stderr); the default is warnings only")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	var ritualFlags []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "ritual" || f.Name == "spirit" || f.Name == "question" {
			ritualFlags = append(ritualFlags, "-"+f.Name)
		}
	})
	var usage error
	switch {
	case fs.NArg() > 0:
		usage = fmt.Errorf("unexpected arguments: %q", fs.Args())
	case *file != "" && len(ritualFlags) > 0:
		usage = fmt.Errorf("give the ritual with -file or with %v, not both", ritualFlags)
	}
	if usage != nil {
		fmt.Fprintln(stderr, usage)
		fs.Usage()
		return usageError{usage}
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := telemetry.NewJSONLogger(stderr, level)
	opts := app.Options{Input: *file, Seed: *seed, RandomFailures: !*noFailures, Quiet: *quiet, Logger: log}
	var a *app.App
	if *file != "" {
		a, err = app.New(opts)
	} else {
		a, err = app.NewFromRitual(opts, app.Ritual{Ritual: *ritual, SpiritName: *spirit, Question: *question})
	}
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
		return fmt.Errorf("run the séance: %w", err)
	}
	elapsed := time.Since(start)
	// Run returns nil when ctx is canceled too (an interrupt asks it to stop); the work
	// is then unfinished, and a report of it would mislead.
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("run the séance: %w", err)
	}
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	return a.Report(stdout, sp.Stats(), dead, elapsed)
}
