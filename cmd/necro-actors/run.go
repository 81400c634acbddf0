package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// cmdRun runs a bundled app to completion: on the in-memory backend, or on a Redis
// stream with a Redis URL. Dead letters are results, not failures: the exit code is 0
// when the run completed, 1 when it failed (a budget exceeded, a backend given up on)
// or was stopped by a signal, 5 when a second signal stopped it at once.
func cmdRun(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "run", "<app> [--redis URL] [--dead-letter-max-len N] [--input FILE] [--seed N] [--no-random-failures] [--quiet] [--json] [-v]")
	var rf redisFlags
	rf.register(fs)
	var dlqMax deadLetterBound
	dlqMax.register(fs)
	input := fs.String("input", "", "read the app's input from this `file` instead of its bundled sample")
	seed := fs.Int64("seed", 1, "seed of the random failures: the same seed repeats a run in memory")
	noFailures := fs.Bool("no-random-failures", false, "turn off the app's random failures")
	quiet := fs.Bool("quiet", false, "print only the results, not a line per input")
	asJSON := fs.Bool("json", false, "print one JSON object: the counts, the app's results and the dead letters")
	verbose := fs.Bool("v", false, "log at debug level (JSON lines on stderr); the default is warnings only")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics, /healthz and /readyz on this `address` during the run")
	idle := fs.Duration("idle-timeout", spine.DefaultIdleTimeout,
		"on Redis, how long an empty stream means the work is done; it is raised past the app's longest retry delay")
	fs.Usage = appsUsage(e, fs.Usage)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := appArg(pos)
	if err != nil {
		return err
	}
	if *idle <= 0 {
		return usageErr("--idle-timeout must be positive, got %v", *idle)
	}
	onRedis := rf.urlSet(e)
	var rcfg necroredis.Config
	switch {
	case onRedis:
		if rcfg, err = rf.config(e); err != nil {
			return err
		}
		if rcfg.DeadLetterMaxLen, err = dlqMax.value(e); err != nil {
			return err
		}
	case dlqMax.set:
		return usageErr("--dead-letter-max-len bounds the dead-letter stream of a run on Redis: give --redis URL too")
	}

	log := telemetry.NewJSONLogger(e.stderr, logLevel(*verbose))
	obs, err := startTelemetry(ctx, *metricsAddr)
	if err != nil {
		return err
	}
	defer obs.closeLogged(ctx, log)
	a, err := newApp(name, appOptions{Input: *input, Seed: *seed, RandomFailures: !*noFailures, Quiet: *quiet, Logger: log})
	if err != nil {
		return err
	}
	roots, err := a.Roots()
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("%s: %w", name, err))
	}

	cfg := a.Config(spine.Config{Logger: log, Telemetry: obs.recorder()})
	var q interface {
		backend.Backend
		backend.DeadLetterReader
	}
	ready := map[string]telemetry.Check{}
	sum := runSummary{App: name, Backend: "memory", Roots: len(roots), MetricsAddr: obs.addr()}
	if onRedis {
		rcfg.Logger = log
		b, err := openRedis(ctx, rcfg)
		if err != nil {
			return err
		}
		q, ready["redis"] = b, b.Ready
		sum.Backend, sum.Stream = "redis", b.Config().Stream
		// Redis cannot tell that it holds nothing, so the run ends after IdleTimeout of
		// empty pulls; a retry waiting to be due is not in the stream yet.
		cfg.IdleTimeout = redisIdleTimeout(cfg, *idle, b.Config().NackDelay)
	} else {
		// Unbounded: every root is enqueued before the run starts, however large the input.
		m, err := memory.New(memory.Config{Capacity: memory.Unbounded, DeadLetterCapacity: memory.Unbounded, Logger: log})
		if err != nil {
			return err
		}
		q = m
	}
	defer func() {
		if err := q.Close(); err != nil {
			log.WarnContext(ctx, "closing the backend failed", slog.Any("err", err))
		}
	}()
	sp, err := spine.New(q, a.Mounts(), cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ready["spine"] = sp.Ready
	obs.serve(ctx, ready, log)

	out := e.stdout
	if *asJSON {
		out = io.Discard
	}
	a.Begin(out)
	start := time.Now()
	// One Emit per root: with tracing on, each root gets its own send span and so its
	// own trace, as each is a flow of its own.
	for _, ev := range roots {
		select {
		case <-e.signals:
			return errors.New("stopped by a signal while enqueuing the roots")
		default:
		}
		if err := sp.Emit(ctx, ev); err != nil {
			err = fmt.Errorf("enqueue root %s: %w", ev.ID(), err)
			if onRedis {
				return withCode(enqueueExitCode(err), err)
			}
			return err
		}
	}
	stops, runErr := runUntilSignal(ctx, sp, e.signals)
	elapsed := time.Since(start)

	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	if onRedis {
		dead = ownDeadLetters(dead, roots)
	}
	st := sp.Stats()
	switch {
	case stops > 1:
		runErr = withCode(exitPending, errors.New("stopped at once by a second signal; the run did not finish"))
	case stops == 1 && runErr == nil:
		runErr = errors.New("stopped by a signal; the run did not finish")
	case runErr == nil && ctx.Err() != nil:
		runErr = fmt.Errorf("the run did not finish: %w", ctx.Err())
	case runErr != nil:
		runErr = fmt.Errorf("%s: %w", name, runErr)
	}
	if *asJSON {
		sum.fill(st, elapsed, a.Results(), dead, runErr)
		if err := printJSON(e.stdout, sum); err != nil {
			return err
		}
	} else if err := a.Report(e.stdout, st, dead, elapsed); err != nil {
		return errors.Join(runErr, fmt.Errorf("%s: report: %w", name, err))
	}
	return runErr
}

// runUntilSignal runs sp to completion. The first signal stops the run after the
// events in flight, the second stops it at once; stops says how many came.
func runUntilSignal(ctx context.Context, sp *spine.Spine, signals <-chan os.Signal) (stops int, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := make(chan error, 1) // the run's goroutine never waits to hand over its result
	go func() { finished <- sp.Run(ctx) }()
	// Stop does nothing before the run is under way, so signals wait until it is.
	if done, err := waitRunning(sp, finished); done {
		return 0, err
	}
	for {
		select {
		case err := <-finished:
			return stops, err
		case <-signals:
			if stops++; stops == 1 {
				sp.Stop()
			} else {
				cancel()
			}
		}
	}
}

// waitRunning waits until a run of sp is under way and ready (on a store shared with
// workers that serve other organs, a run first waits for them to see it), or has already
// returned its result on finished (done is then true). The Spine tells no one when a
// run starts, so this polls; a run is under way within microseconds of its start.
func waitRunning(sp *spine.Spine, finished <-chan error) (done bool, err error) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !sp.Health().Running || sp.Ready(context.Background()) != nil {
		select {
		case err := <-finished:
			return true, err
		case <-t.C:
		}
	}
	return false, nil
}

// redisIdleTimeout is how long a run on Redis waits on an empty stream before it counts
// the work as done: at least floor, and past the longest delay before a retry or a
// redelivery the app's settings can give, for those wait outside the stream.
func redisIdleTimeout(cfg spine.Config, floor, nackDelay time.Duration) time.Duration {
	longest := longestRetry(cfg.Retry)
	for _, p := range cfg.Organs {
		if p.Retry != (supervision.RetryPolicy{}) {
			longest = max(longest, longestRetry(p.Retry))
		}
	}
	if cfg.HandlerFailure == spine.HandlerNack {
		longest = max(longest, nackDelay)
	}
	if longest == 0 {
		return floor
	}
	return max(floor, longest+time.Second)
}

// longestRetry is the longest delay p puts before a retry: the one after the last
// failed attempt that is retried, without jitter (jitter only shortens it).
func longestRetry(p supervision.RetryPolicy) time.Duration {
	attempts := p.MaxAttempts
	if attempts == 0 {
		attempts = 3 // RetryPolicy's default
	}
	if attempts <= 1 {
		return 0
	}
	b := p.Backoff
	b.Jitter = supervision.NoJitter
	return b.Delay(attempts-1, 0)
}

// ownDeadLetters keeps the dead letters of this run's flows: the dead-letter stream
// also holds those of earlier runs and of other workers.
func ownDeadLetters(dead []backend.DeadLetter, roots []necro.Event) []backend.DeadLetter {
	ours := make(map[string]bool, len(roots))
	for _, ev := range roots {
		ours[ev.ID()] = true
	}
	out := dead[:0]
	for _, dl := range dead {
		if !dl.Event.IsZero() && ours[dl.Event.Correlation()] {
			out = append(out, dl)
		}
	}
	return out
}

// runSummary is what run --json prints: one JSON object.
type runSummary struct {
	App           string           `json:"app"`
	Backend       string           `json:"backend"`          // "memory" or "redis"
	Stream        string           `json:"stream,omitempty"` // on Redis
	Roots         int              `json:"roots"`            // root events made from the input
	Processed     int64            `json:"processed"`
	Emitted       int64            `json:"emitted"`
	Retried       int64            `json:"retried"`
	DeadLettered  int64            `json:"dead_lettered"`
	Unrouted      int64            `json:"unrouted"`
	HandlerErrors map[string]int64 `json:"handler_errors"`
	Seconds       float64          `json:"seconds"`
	Results       any              `json:"results"`
	DeadLetters   []deadLetterLine `json:"dead_letters"`
	MetricsAddr   string           `json:"metrics_addr,omitempty"`
	Error         string           `json:"error,omitempty"` // why the run failed
}

func (s *runSummary) fill(st spine.Stats, elapsed time.Duration, results any, dead []backend.DeadLetter, err error) {
	s.Processed, s.Emitted, s.Retried, s.DeadLettered, s.Unrouted = st.Processed, st.Emitted, st.Retried, st.DeadLettered, st.Unrouted
	s.HandlerErrors = st.HandlerErrors
	s.Seconds = elapsed.Seconds()
	s.Results = results
	s.DeadLetters = make([]deadLetterLine, len(dead))
	for i, dl := range dead {
		s.DeadLetters[i] = newDeadLetterLine(dl)
	}
	if err != nil {
		s.Error = oneLine(err.Error())
	}
}

// A deadLetterLine is a dead letter in run's JSON; the payload stays out, as in logs.
type deadLetterLine struct {
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Organ     string    `json:"organ,omitempty"`
	Attempts  int       `json:"attempts"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error"`
	At        time.Time `json:"at"`
}

func newDeadLetterLine(dl backend.DeadLetter) deadLetterLine {
	return deadLetterLine{EventID: dl.Event.ID(), EventType: dl.Event.Type(), Organ: dl.Organ, Attempts: dl.Attempts,
		Reason: dl.Reason, Error: dl.Error, At: dl.At}
}
