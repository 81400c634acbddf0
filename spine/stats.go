package spine

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/telemetry"
)

// Stats counts what a Spine did since its current or last run started. Every failure
// path has a counter here.
type Stats struct {
	Processed       int64            // deliveries settled: acked, nacked or dead-lettered, routed or not
	Emitted         int64            // children enqueued
	Dispatched      int64            // deliveries pulled and handed to organs (the steps MaxSteps counts)
	Unrouted        int64            // deliveries no organ of a live worker listens to (acked or dead-lettered, per Config.Unrouted)
	HandedOff       int64            // deliveries passed, unhandled, to another worker that routes them
	Forwarded       int64            // copies sent on to organs that only other workers mount
	Deferred        int64            // deliveries nacked for want of a fresh reading of the store's roster
	HandlerErrors   map[string]int64 // failed attempts per organ: errors, panics, timeouts (not a call an immediate stop canceled)
	Retried         int64            // retries scheduled
	DeadLettered    int64            // dead letters written
	EnqueueFailures map[string]int64 // children the backend refused, per event type
	BackendErrors   int64            // failed pulls and settles
	AckErrors       int64            // settlements the backend rejected as unknown
	Panics          int64            // Handle calls that panicked, counted as the crash is seen
	Timeouts        int64            // Handle calls past their deadline
	Abandoned       int64            // Handle calls abandoned after ignoring their ctx
	Restarts        int64            // organ actor restarts: one per panic, counted with it, even if the run ends before the restart
	Quarantines     int64            // organ quarantines
	QuarantineWaits int64            // (event, organ) pairs that had to wait for a quarantined organ
	DepthExceeded   int64            // children cut by MaxDepth
	FanOutExceeded  int64            // Handle calls cut by MaxFanOut
}

// EnqueueFailureCount returns the enqueue failures of one event type, or of all types
// when typ is "".
func (s Stats) EnqueueFailureCount(typ string) int64 {
	if typ != "" {
		return s.EnqueueFailures[typ]
	}
	var n int64
	for _, v := range s.EnqueueFailures {
		n += v
	}
	return n
}

// counters are the live form of Stats: atomics for the hot counters, a mutex for the
// maps, which change only on failures.
type counters struct {
	processed, emitted, dispatched, unrouted, retried, deadLettered atomic.Int64
	backendErrors, ackErrors, panics, timeouts, abandoned           atomic.Int64
	restarts, quarantines, depthExceeded, fanOutExceeded            atomic.Int64
	quarantineWaits, handedOff, forwarded, deferred                 atomic.Int64

	mu              sync.Mutex
	handlerErrors   map[string]int64
	enqueueFailures map[string]int64
}

func (c *counters) handlerError(organ string) {
	c.mu.Lock()
	c.handlerErrors[organ]++
	c.mu.Unlock()
}

func (c *counters) enqueueFailure(typ string) {
	c.mu.Lock()
	c.enqueueFailures[typ]++
	c.mu.Unlock()
}

func newCounters() *counters {
	return &counters{handlerErrors: map[string]int64{}, enqueueFailures: map[string]int64{}}
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	he, ef := maps.Clone(c.handlerErrors), maps.Clone(c.enqueueFailures)
	c.mu.Unlock()
	return Stats{
		Processed: c.processed.Load(), Emitted: c.emitted.Load(), Dispatched: c.dispatched.Load(),
		Unrouted: c.unrouted.Load(), HandedOff: c.handedOff.Load(), Forwarded: c.forwarded.Load(),
		Deferred: c.deferred.Load(), HandlerErrors: he, Retried: c.retried.Load(),
		DeadLettered: c.deadLettered.Load(), EnqueueFailures: ef, BackendErrors: c.backendErrors.Load(),
		AckErrors: c.ackErrors.Load(), Panics: c.panics.Load(), Timeouts: c.timeouts.Load(),
		Abandoned: c.abandoned.Load(), Restarts: c.restarts.Load(), Quarantines: c.quarantines.Load(),
		QuarantineWaits: c.quarantineWaits.Load(),
		DepthExceeded:   c.depthExceeded.Load(), FanOutExceeded: c.fanOutExceeded.Load(),
	}
}

// plus returns the sum of two Stats.
func (s Stats) plus(o Stats) Stats {
	sum := func(a, b map[string]int64) map[string]int64 {
		out := maps.Clone(a)
		if out == nil {
			out = map[string]int64{}
		}
		for k, v := range b {
			out[k] += v
		}
		return out
	}
	return Stats{
		Processed: s.Processed + o.Processed, Emitted: s.Emitted + o.Emitted, Dispatched: s.Dispatched + o.Dispatched,
		Unrouted: s.Unrouted + o.Unrouted, HandedOff: s.HandedOff + o.HandedOff, Forwarded: s.Forwarded + o.Forwarded,
		Deferred: s.Deferred + o.Deferred, HandlerErrors: sum(s.HandlerErrors, o.HandlerErrors),
		Retried: s.Retried + o.Retried, DeadLettered: s.DeadLettered + o.DeadLettered,
		EnqueueFailures: sum(s.EnqueueFailures, o.EnqueueFailures), BackendErrors: s.BackendErrors + o.BackendErrors,
		AckErrors: s.AckErrors + o.AckErrors, Panics: s.Panics + o.Panics, Timeouts: s.Timeouts + o.Timeouts,
		Abandoned: s.Abandoned + o.Abandoned, Restarts: s.Restarts + o.Restarts, Quarantines: s.Quarantines + o.Quarantines,
		QuarantineWaits: s.QuarantineWaits + o.QuarantineWaits, DepthExceeded: s.DepthExceeded + o.DepthExceeded,
		FanOutExceeded: s.FanOutExceeded + o.FanOutExceeded,
	}
}

// A tally holds every run's counts of a Spine: the finished runs' sum and the current
// run's counters. The meter holds it strongly, so the counts outlive the Spine.
type tally struct {
	mu    sync.Mutex
	past  Stats       // the finished runs' sum
	cur   *counters   // the current (or last) run's
	final atomic.Bool // the counts were reported once after the Spine was gone
}

// next starts the counts of a new run.
func (t *tally) next(c *counters) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil {
		t.past = t.past.plus(t.cur.snapshot())
	}
	t.cur = c
}

// total returns every run's counts so far.
func (t *tally) total() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil {
		return t.past
	}
	return t.past.plus(t.cur.snapshot())
}

// countFigures are the counts of st as the meter takes them, without levels.
func countFigures(st Stats) telemetry.Figures {
	return telemetry.Figures{
		Processed: st.Processed, Emitted: st.Emitted, Dispatched: st.Dispatched, Failed: st.HandlerErrors,
		Retried: st.Retried, DeadLettered: st.DeadLettered, Unrouted: st.Unrouted, HandedOff: st.HandedOff,
		Forwarded: st.Forwarded, Deferred: st.Deferred, Panics: st.Panics,
		Timeouts: st.Timeouts, Abandoned: st.Abandoned, Restarts: st.Restarts, Quarantines: st.Quarantines,
		BackendErrors: st.BackendErrors, EnqueueFailures: st.EnqueueFailureCount(""), AckErrors: st.AckErrors,
		DepthExceeded: st.DepthExceeded, FanOutExceeded: st.FanOutExceeded,
		Reconnections: -1, QueueDepth: -1, Pending: -1, DeadLetterDepth: -1,
	}
}

// figures are what the Spine reports to the meter: every run's counts so far, the
// window's occupancy, and the backend's levels when it reports them.
func (s *Spine) figures(ctx context.Context) telemetry.Figures {
	f := countFigures(s.counts.total())
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r != nil {
		f.WindowOccupancy = r.inflight.Load()
	}
	if rep, ok := s.b.(backend.Reporter); ok {
		rp := rep.Report(ctx)
		f.QueueDepth, f.Pending, f.DeadLetterDepth, f.Reconnections = rp.QueueDepth, rp.Pending, rp.DeadLetters, rp.Reconnections
	}
	return f
}
