package spine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// Unlimited turns off a bound that is otherwise on by default.
const Unlimited = -1

// Defaults of [Config].
const (
	DefaultMaxSteps                      = 10_000
	DefaultMaxDepth                      = 1_000
	DefaultMaxFanOut                     = 10_000
	DefaultWindow                        = 4096
	DefaultMaxAbandoned                  = 8
	DefaultMaxConsecutiveBackendFailures = 10
	DefaultEnqueueRetries                = 3
	DefaultIdleTimeout                   = time.Second
)

// ErrInvalidConfig reports a [Config] that [New] cannot use.
var ErrInvalidConfig = errors.New("spine: invalid config")

// HandlerFailureMode says what becomes of an (event, organ) pair whose last attempt
// failed. The names are those of Python NecroStack.
type HandlerFailureMode int

const (
	// HandlerDeadLetter writes the event, organ, attempts and last error to the
	// backend's dead-letter store and acks the event (the seed's STORE). The default.
	HandlerDeadLetter HandlerFailureMode = iota
	// HandlerLog counts and logs the failure and acks the event.
	HandlerLog
	// HandlerNack leaves the event to the backend, which redelivers it to the failed
	// organs after its redelivery delay.
	HandlerNack
)

func (m HandlerFailureMode) String() string {
	switch m {
	case HandlerDeadLetter:
		return "dead-letter"
	case HandlerLog:
		return "log"
	case HandlerNack:
		return "nack"
	}
	return fmt.Sprintf("HandlerFailureMode(%d)", int(m))
}

// EnqueueFailureMode says what happens when the backend refuses the children of a
// delivery (a full queue, an outage). The names are those of Python NecroStack.
type EnqueueFailureMode int

const (
	// EnqueueStore enqueues the children one by one and dead-letters those the backend
	// still refuses, then acks the parent; the run goes on. The default.
	EnqueueStore EnqueueFailureMode = iota
	// EnqueueFail ends the run with an *EnqueueError; the parent goes back to the
	// backend unacked.
	EnqueueFail
	// EnqueueRetry tries again EnqueueRetries times with EnqueueBackoff, then fails as
	// EnqueueFail does.
	EnqueueRetry
)

func (m EnqueueFailureMode) String() string {
	switch m {
	case EnqueueStore:
		return "store"
	case EnqueueFail:
		return "fail"
	case EnqueueRetry:
		return "retry"
	}
	return fmt.Sprintf("EnqueueFailureMode(%d)", int(m))
}

// Config tunes a Spine. The zero value is ready to use; each field states its default.
type Config struct {
	// MaxSteps bounds the events one Run may dispatch, so organs that emit each other's
	// events cannot loop forever. Zero means 10,000; Unlimited turns the bound off.
	// Serve ignores it.
	MaxSteps int
	// MaxDepth bounds a causal chain: a child deeper than this is dead-lettered with
	// reason "depth budget exceeded". Zero means 1,000; Unlimited turns it off.
	MaxDepth int
	// MaxFanOut bounds the children one Handle call may emit; a call that emits more
	// fails permanently. Zero means 10,000; Unlimited turns it off.
	MaxFanOut int
	// Window bounds the deliveries pulled and not yet settled. Any size keeps the
	// ordering promise; a larger one lets organs run further ahead of the commit.
	// Zero means 4096.
	Window int

	// HandlerTimeout bounds one Handle call; zero means 30s.
	HandlerTimeout time.Duration
	// AbandonAfter is how long a Handle call may run past its deadline, ignoring its
	// ctx, before it is abandoned and its organ goes on with a fresh actor; it is also how
	// long a stop waits for the calls it canceled. Zero means 1s.
	AbandonAfter time.Duration
	// MaxAbandoned is how many abandoned calls of one organ may still be running before
	// the organ is quarantined and the Spine reports unhealthy; zero means 8.
	MaxAbandoned int

	// Retry decides the retries of a failed (event, organ); the zero value retries up
	// to 3 attempts in all with exponential backoff (see supervision.RetryPolicy). A
	// retry delay of 1µs or less means at once: the retry is enqueued right after the
	// delivery's children, in a deterministic order.
	Retry supervision.RetryPolicy
	// RetryMemory bounds the in-process retry tracker (entries; zero means 100,000) and
	// RetryTTL how long it remembers a failure (zero means 10 minutes).
	RetryMemory int
	RetryTTL    time.Duration
	// HandlerFailure decides what becomes of an event after its last failed attempt.
	HandlerFailure HandlerFailureMode
	// Restart supervises organ actors that panic: restart intensity, backoff and
	// quarantine (see supervision.OneForOne).
	Restart supervision.OneForOne

	// EnqueueFailure decides what happens when the backend refuses children.
	EnqueueFailure EnqueueFailureMode
	// EnqueueRetries is how many more times EnqueueRetry tries; zero means 3.
	EnqueueRetries int
	// EnqueueBackoff spaces those tries; the zero value starts at 10ms.
	EnqueueBackoff supervision.Backoff

	// MaxConsecutiveBackendFailures is how many pulls in a row may fail before a
	// bounded Run gives up with *BackendUnavailableError; Serve never gives up, it
	// keeps its circuit open and tries again with BackendBackoff. Zero means 10.
	MaxConsecutiveBackendFailures int
	// BackendBackoff spaces pulls after a failure; the zero value starts at 10ms.
	BackendBackoff supervision.Backoff
	// IdleTimeout is how long a bounded Run waits on an empty backend that cannot tell
	// it is idle (see backend.Idler) before it counts the work as done; zero means 1s.
	IdleTimeout time.Duration

	// Unrouted decides what becomes of an event that no live worker routes. On a store
	// shared by several workers (a backend.Roster, such as Redis), an event this worker
	// cannot route but another live worker can is never unrouted: it is handed to that
	// worker, and an event targeted at an organ that no live worker mounts is
	// dead-lettered naming the organ. The zero value is UnroutedAck.
	Unrouted UnroutedPolicy

	// Organs overrides the settings above for the organs it names (by mount name); an
	// organ it does not name uses them as they are.
	Organs map[string]OrganPolicy

	// Logger receives the Spine's logs; nil discards them. Wrap its handler with
	// telemetry.NewLogHandler to have each line about an event carry the flow's ids.
	Logger *slog.Logger
	// Telemetry records traces and metrics; nil records nothing. Spans: a receive span
	// per pull, a process span per (event, organ) whose parent is the event's creation
	// context, with what became of the event; the children are created in it. Metrics:
	// the counters of [Stats], handle durations, end-to-end latency and the store's
	// levels.
	Telemetry *telemetry.Recorder
}

// An OrganPolicy overrides the Spine's failure settings for one organ. Zero fields keep
// the Spine's own: a zero HandlerTimeout means Config.HandlerTimeout, a zero Retry means
// Config.Retry.
type OrganPolicy struct {
	HandlerTimeout time.Duration
	Retry          supervision.RetryPolicy
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxSteps, DefaultMaxSteps)
	def(&c.MaxDepth, DefaultMaxDepth)
	def(&c.MaxFanOut, DefaultMaxFanOut)
	def(&c.Window, DefaultWindow)
	def(&c.MaxAbandoned, DefaultMaxAbandoned)
	def(&c.MaxConsecutiveBackendFailures, DefaultMaxConsecutiveBackendFailures)
	def(&c.EnqueueRetries, DefaultEnqueueRetries)
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	bound := func(name string, v int) error {
		if v < 0 && v != Unlimited {
			return fmt.Errorf("%w: %s is %d; use a positive number or Unlimited", ErrInvalidConfig, name, v)
		}
		return nil
	}
	for _, b := range []struct {
		name string
		v    int
	}{{"MaxSteps", c.MaxSteps}, {"MaxDepth", c.MaxDepth}, {"MaxFanOut", c.MaxFanOut}} {
		if err := bound(b.name, b.v); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"Window", c.Window}, {"MaxAbandoned", c.MaxAbandoned}, {"RetryMemory", c.RetryMemory},
		{"EnqueueRetries", c.EnqueueRetries}, {"MaxConsecutiveBackendFailures", c.MaxConsecutiveBackendFailures}} {
		if p.v < 0 {
			return fmt.Errorf("%w: %s must not be negative, got %d", ErrInvalidConfig, p.name, p.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HandlerTimeout", c.HandlerTimeout}, {"AbandonAfter", c.AbandonAfter}, {"RetryTTL", c.RetryTTL},
		{"IdleTimeout", c.IdleTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s must not be negative, got %s", ErrInvalidConfig, d.name, d.v)
		}
	}
	for _, v := range []struct {
		name string
		err  error
	}{{"Retry", c.Retry.Validate()}, {"Restart", c.Restart.Validate()},
		{"EnqueueBackoff", c.EnqueueBackoff.Validate()}, {"BackendBackoff", c.BackendBackoff.Validate()}} {
		if v.err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalidConfig, v.name, v.err)
		}
	}
	for name, p := range c.Organs {
		if p.HandlerTimeout < 0 {
			return fmt.Errorf("%w: Organs[%q].HandlerTimeout must not be negative, got %s", ErrInvalidConfig, name, p.HandlerTimeout)
		}
		if err := p.Retry.Validate(); err != nil {
			return fmt.Errorf("%w: Organs[%q].Retry: %w", ErrInvalidConfig, name, err)
		}
	}
	if c.HandlerFailure < HandlerDeadLetter || c.HandlerFailure > HandlerNack {
		return fmt.Errorf("%w: unknown HandlerFailure %d", ErrInvalidConfig, int(c.HandlerFailure))
	}
	if c.Unrouted < UnroutedAck || c.Unrouted > UnroutedDeadLetter {
		return fmt.Errorf("%w: unknown Unrouted %d", ErrInvalidConfig, int(c.Unrouted))
	}
	if c.EnqueueFailure < EnqueueStore || c.EnqueueFailure > EnqueueRetry {
		return fmt.Errorf("%w: unknown EnqueueFailure %d", ErrInvalidConfig, int(c.EnqueueFailure))
	}
	return nil
}

func limit(v int) int {
	if v == Unlimited {
		return int(^uint(0) >> 1)
	}
	return v
}

// timeouts lists the organs whose handler timeout differs from HandlerTimeout.
func (c Config) timeouts() map[string]time.Duration {
	var out map[string]time.Duration
	for name, p := range c.Organs {
		if p.HandlerTimeout > 0 {
			if out == nil {
				out = map[string]time.Duration{}
			}
			out[name] = p.HandlerTimeout
		}
	}
	return out
}
