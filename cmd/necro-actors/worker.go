package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/telemetry"
)

// cmdWorker serves a bundled app's organs from a Redis stream until a signal. Its
// stdout is JSON lines a supervisor can read: "ready" once the store is open (the
// consumer group joined) and the Spine serves, "draining" at the first signal,
// "stopped" at the end.
func cmdWorker(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "worker", "<app> --redis URL [--consumer NAME] [--claim-after D] [--window N] [--unrouted ack|dead-letter] [--dead-letter-max-len N] [--metrics-addr ADDR] [--drain-timeout D] [--ledger FILE] [--json] [-v]")
	var rf redisFlags
	rf.register(fs)
	var dlqMax deadLetterBound
	dlqMax.register(fs)
	window := fs.Int("window", 0, "deliveries pulled and not yet settled, at most (zero means the Spine's default, 4096)")
	var unrouted unroutedFlag
	fs.Var(&unrouted, "unrouted", "what becomes of an event no live worker of the group routes: `ack` (count and log it, as Python NecroStack does) or dead-letter; an event another live worker routes is always handed to it")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics, /healthz and /readyz on this `address` (host:port; :0 picks a port, shown in the ready line)")
	drainTimeout := fs.Duration("drain-timeout", 30*time.Second,
		"how long the first SIGTERM/SIGINT waits for the events in flight; after it, or at a second signal, the worker stops at once and leaves them pending (exit 5)")
	claimAfter := fs.Duration("claim-after", 0,
		"how long an entry must sit idle in another consumer's pending list before this worker claims it (zero means the store's default, 30s)")
	ledger := fs.String("ledger", "", "append a JSON line per Handle call to this `file`; its directory also holds the exit markers (the chaos app only)")
	seed := fs.Int64("seed", 1, "seed of the random failures")
	noFailures := fs.Bool("no-random-failures", false, "turn off the app's random failures")
	asJSON := fs.Bool("json", false, "add the app's results (what this worker handled) to the stopped line")
	verbose := fs.Bool("v", false, "log at debug level (JSON lines on stderr); the default is warnings only")
	fs.Usage = appsUsage(e, fs.Usage)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	name, err := appArg(pos)
	if err != nil {
		return err
	}
	switch {
	case *window < 0:
		return usageErr("--window must not be negative, got %d", *window)
	case *drainTimeout <= 0:
		return usageErr("--drain-timeout must be positive, got %v", *drainTimeout)
	case *claimAfter < 0:
		return usageErr("--claim-after must not be negative, got %v", *claimAfter)
	case !rf.urlSet(e):
		return usageErr("a worker serves a Redis stream: give --redis URL, --redis-url-file FILE or set NECRO_REDIS_URL")
	}
	rcfg, err := rf.config(e)
	if err != nil {
		return err
	}
	rcfg.ClaimAfter = *claimAfter
	if rcfg.DeadLetterMaxLen, err = dlqMax.value(e); err != nil {
		return err
	}

	log := telemetry.NewJSONLogger(e.stderr, logLevel(*verbose))
	obs, err := startTelemetry(ctx, *metricsAddr)
	if err != nil {
		return err
	}
	defer obs.closeLogged(ctx, log)
	a, err := newApp(name, appOptions{Seed: *seed, RandomFailures: !*noFailures, Quiet: true, Logger: log,
		Ledger: *ledger, Worker: rcfg.Consumer})
	if err != nil {
		return err
	}
	rcfg.Logger = log
	b, err := openRedis(ctx, rcfg)
	if err != nil {
		return err
	}
	cfg := a.Config(spine.Config{Logger: log, Telemetry: obs.recorder()})
	cfg.Unrouted = unrouted.policy
	if *window > 0 {
		cfg.Window = *window
	}
	sp, err := spine.New(b, a.Mounts(), cfg)
	if err != nil {
		return errors.Join(fmt.Errorf("%s: %w", name, err), b.Close())
	}

	start := time.Now()
	served := make(chan error, 1) // Serve's goroutine never waits to hand over its result
	go func() { served <- sp.Serve(ctx) }()
	var end serveEnd
	if done, err := waitRunning(sp, served); done {
		end.err = err
	} else {
		obs.serve(ctx, map[string]telemetry.Check{"spine": sp.Ready, "redis": b.Ready}, log)
		rc := b.Config()
		ready := readyLine{Event: "ready", App: name, Stream: rc.Stream, Group: rc.Group, Consumer: rc.Consumer,
			PID: os.Getpid(), MetricsAddr: obs.addr()}
		end = serveUntilSignal(ctx, e, sp, served, ready, *drainTimeout)
	}
	closeErr := b.Close()

	st := sp.Stats()
	stopped := stoppedLine{Event: "stopped", App: name, Consumer: b.Config().Consumer, Drained: !end.cut,
		Processed: st.Processed, Emitted: st.Emitted, Retried: st.Retried, DeadLettered: st.DeadLettered,
		Unrouted: st.Unrouted, HandedOff: st.HandedOff, HandlerErrors: st.HandlerErrors, Seconds: time.Since(start).Seconds()}
	if *asJSON {
		stopped.Results = a.Results()
	}
	printErr := printJSON(e.stdout, stopped)
	switch {
	case end.err != nil:
		return errors.Join(fmt.Errorf("%s: %w", name, end.err), closeErr)
	case end.cut:
		return withCode(exitPending, fmt.Errorf("%s; the deliveries in flight were given back and stay pending in group %q for the other workers",
			end.why, b.Config().Group))
	}
	return errors.Join(closeErr, printErr)
}

// A serveEnd says how a worker's Serve ended.
type serveEnd struct {
	err error  // Serve failed, or stdout could not be written
	cut bool   // stopped at once: the events in flight were given back unfinished
	why string // why it was cut short
}

// serveUntilSignal prints the ready line and waits for Serve to end or for a signal.
// The first signal drains: the Spine stops pulling and finishes the events in flight,
// for up to drainTimeout. A second signal, or the timeout, stops it at once: the events
// still in flight go back to the store, pending for the other workers.
func serveUntilSignal(ctx context.Context, e *env, sp *spine.Spine, served <-chan error, ready readyLine, drainTimeout time.Duration) serveEnd {
	var end serveEnd
	if err := printJSON(e.stdout, ready); err != nil {
		// Whoever waits for the line will not see it: stop as at a signal.
		end.err = fmt.Errorf("write the ready line: %w", err)
	} else {
		select {
		case err := <-served:
			end.err = err
			if err == nil && ctx.Err() != nil {
				end.cut, end.why = true, "stopped at once: "+ctx.Err().Error() // as a second signal does
			}
			return end
		case <-e.signals:
		}
		if err := printJSON(e.stdout, drainingLine{Event: "draining", Consumer: ready.Consumer}); err != nil {
			end.err = fmt.Errorf("write the draining line: %w", err)
		}
	}

	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	second := make(chan bool, 1) // the watcher's answer; it never waits to hand it over
	go func() {
		select {
		case <-e.signals:
			cancel()
			second <- true
		case <-dctx.Done():
			second <- false
		}
	}()
	err := sp.Shutdown(dctx)
	cancel() // ends the watcher if no signal came
	bySignal := <-second
	if serr := <-served; serr != nil && end.err == nil {
		end.err = serr
	}
	if err != nil {
		end.cut = true
		end.why = fmt.Sprintf("the drain did not finish within --drain-timeout %v", drainTimeout)
		if bySignal {
			end.why = "stopped at once by a second signal during the drain"
		}
	}
	return end
}

// readyLine tells that a worker has joined the group and serves.
type readyLine struct {
	Event       string `json:"event"` // "ready"
	App         string `json:"app"`
	Stream      string `json:"stream"`
	Group       string `json:"group"`
	Consumer    string `json:"consumer"`
	PID         int    `json:"pid"`
	MetricsAddr string `json:"metrics_addr,omitempty"` // where /metrics, /healthz and /readyz are served
}

// drainingLine tells that a worker stopped pulling and finishes what is in flight.
type drainingLine struct {
	Event    string `json:"event"` // "draining"
	Consumer string `json:"consumer"`
}

// stoppedLine tells that a worker has stopped and left the store, and what it did.
type stoppedLine struct {
	Event         string           `json:"event"` // "stopped"
	App           string           `json:"app"`
	Consumer      string           `json:"consumer"`
	Drained       bool             `json:"drained"` // false: stopped at once, work left pending
	Processed     int64            `json:"processed"`
	Emitted       int64            `json:"emitted"`
	Retried       int64            `json:"retried"`
	DeadLettered  int64            `json:"dead_lettered"`
	Unrouted      int64            `json:"unrouted"`
	HandedOff     int64            `json:"handed_off"` // passed to another worker that routes them
	HandlerErrors map[string]int64 `json:"handler_errors"`
	Seconds       float64          `json:"seconds"`
	Results       any              `json:"results,omitempty"` // with --json
}

// unroutedFlag is --unrouted: the Spine's UnroutedPolicy by its name.
type unroutedFlag struct{ policy spine.UnroutedPolicy }

func (f *unroutedFlag) String() string { return f.policy.String() }
func (f *unroutedFlag) Set(v string) error {
	for _, p := range []spine.UnroutedPolicy{spine.UnroutedAck, spine.UnroutedDeadLetter} {
		if v == p.String() {
			f.policy = p
			return nil
		}
	}
	return fmt.Errorf("want ack or dead-letter, got %q", v)
}
