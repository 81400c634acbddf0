package spine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// ErrRunning reports a Run or Serve started while another is under way on the same Spine.
var ErrRunning = errors.New("spine: already running")

// A Spine dispatches events from one backend to its organs. Create it with [New]; run
// it with [Spine.Run] (a bounded job) or [Spine.Serve] (a long-running service). One
// run at a time; a Spine may be run again after a run returned.
type Spine struct {
	b      backend.Backend
	mounts []necro.Mount
	routes map[string][]int // event type → organs that listen to it, in mount order
	// localRoutes holds every (organ, type) mounted here, to compare with the roster;
	// served is the same, as a roster announcement.
	localRoutes map[organType]bool
	served      []backend.OrganRoutes
	cfg         Config
	retry       []supervision.RetryPolicy // per organ, in mount order
	tracker     *supervision.RetryTracker
	dest        telemetry.Destination // names the backend in spans and metrics

	mu     sync.Mutex
	cur    *run
	stats  *counters
	counts *tally // every run's counts, for metrics, which only grow
	health *healthBox
}

// New returns a Spine that pulls from b and dispatches to the mounted organs. The mount
// order is the order in which organs see an event and in which their children are
// enqueued. It returns an error wrapping necro.ErrInvalidOrgan for an invalid mount or a
// repeated name, and ErrInvalidConfig for an invalid cfg.
func New(b backend.Backend, mounts []necro.Mount, cfg Config) (*Spine, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrInvalidConfig)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Spine{b: b, cfg: cfg, routes: map[string][]int{}, localRoutes: map[organType]bool{}, stats: newCounters(),
		health: &healthBox{problems: map[string]bool{}}}
	s.counts = &tally{cur: s.stats}
	seen := map[string]bool{}
	for i, m := range mounts {
		types, err := m.Validate()
		if err != nil {
			return nil, fmt.Errorf("mount %d: %w", i, err)
		}
		if seen[m.Name] {
			return nil, fmt.Errorf("%w: name %q is mounted twice", necro.ErrInvalidOrgan, m.Name)
		}
		seen[m.Name] = true
		types = slices.Compact(slices.Sorted(slices.Values(types)))
		for _, t := range types {
			s.routes[t] = append(s.routes[t], i)
			s.localRoutes[organType{m.Name, t}] = true
		}
		s.served = append(s.served, backend.OrganRoutes{Organ: m.Name, Types: types})
		s.mounts = append(s.mounts, m)
	}
	for name := range cfg.Organs {
		if !seen[name] {
			return nil, fmt.Errorf("%w: Organs names %q, which is not mounted", ErrInvalidConfig, name)
		}
	}
	for _, m := range s.mounts {
		p := cfg.Retry
		if o, ok := cfg.Organs[m.Name]; ok && o.Retry != (supervision.RetryPolicy{}) {
			p = o.Retry
		}
		s.retry = append(s.retry, p)
	}
	s.tracker = supervision.NewRetryTracker(cfg.RetryMemory, cfg.RetryTTL)
	if d, ok := b.(backend.Describer); ok {
		desc := d.Describe()
		s.dest = telemetry.Destination{System: desc.System, Name: desc.Name, Group: desc.Group}
	}
	if err := s.observe(); err != nil {
		return nil, err
	}
	return s, nil
}

// observe registers the Spine's figures with the meter, so that every collection, the
// last one at shutdown included, sees the counts of every run. The meter holds the
// Spine only weakly, and its counts (a small tally) strongly: a program may drop its
// Spine before it shuts telemetry down, and the last collection must still see what
// the Spine did. Once the Spine is gone its counts are reported one last time, without
// the levels only a live Spine knows, and then no more.
func (s *Spine) observe() error {
	if !s.cfg.Telemetry.Metering() {
		return nil
	}
	w, counts := weak.Make(s), s.counts
	_, err := s.cfg.Telemetry.Observe(s.dest, func(ctx context.Context) (telemetry.Figures, bool) {
		if s := w.Value(); s != nil {
			return s.figures(ctx), true
		}
		if counts.final.Swap(true) {
			return telemetry.Figures{}, false
		}
		return countFigures(counts.total()), true
	})
	if err != nil {
		return fmt.Errorf("%w: Telemetry: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Emit enqueues events on the Spine's backend, as a producer: with tracing on, inside a
// "send" span that is a child of ctx's span and becomes the creation context of every
// event that has none, so that each one's handling, and all that follows from it, is
// one trace. It returns the backend's error. Emit may be called at any time, during a
// run or not, from any goroutine.
func (s *Spine) Emit(ctx context.Context, events ...necro.Event) error {
	ctx, span, events := s.cfg.Telemetry.Send(ctx, s.dest, events)
	err := s.b.Enqueue(ctx, events...)
	span.EndErr(err)
	return err
}

// Organs returns the mounted organs' names in mount order.
func (s *Spine) Organs() []string {
	names := make([]string, len(s.mounts))
	for i, m := range s.mounts {
		names[i] = m.Name
	}
	return names
}

// Run dispatches events until the work is done: nothing is in flight and the backend
// is empty (exactly, for a backend.Idler; after IdleTimeout of empty pulls otherwise).
// It returns nil then, or after a stop asked for: [Spine.Stop], [Spine.Shutdown], or
// canceling ctx (a cause that is context.Canceled, such as signal.NotifyContext's,
// counts as canceling). When ctx ends otherwise, its deadline passed or it was canceled
// with another cause, Run stops at once all the same and returns context.Cause(ctx)
// (context.DeadlineExceeded for a plain deadline): the work was cut short. An
// immediate stop gives the events in flight back to the backend unsettled.
// It returns necro.ErrStepBudgetExceeded when it dispatched MaxSteps events while more
// were waiting (they stay in the backend, unacked), *EnqueueError when the backend
// refused children in EnqueueFail mode, and *BackendUnavailableError after
// MaxConsecutiveBackendFailures failed pulls in a row. Run returns only after every
// goroutine it started has exited, except Handle calls abandoned for ignoring their ctx.
func (s *Spine) Run(ctx context.Context) error { return s.start(ctx, true) }

// Serve dispatches events until it is stopped; an empty backend only makes it wait.
// MaxSteps does not apply; MaxDepth and MaxFanOut do. A failing backend opens a circuit
// that is retried with BackendBackoff, and Serve goes on. Its ctx works as Run's: it
// returns nil after [Spine.Stop], [Spine.Shutdown] or the canceling of ctx, and
// context.Cause(ctx) when ctx's deadline passed or it was canceled with another cause;
// otherwise it returns the error that made it stop.
func (s *Spine) Serve(ctx context.Context) error { return s.start(ctx, false) }

// Stop asks the current run to stop pulling, finish the events in flight, and return.
// It does not wait, so it may be called from inside Handle. Without a run it does
// nothing.
func (s *Spine) Stop() {
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r != nil {
		r.stop()
	}
}

// Shutdown stops the current run as [Spine.Stop] does and waits until it has returned,
// then returns nil. When ctx ends first, Shutdown stops at once: events still in flight
// go back to the backend unsettled (they are redelivered), and Shutdown returns
// context.Cause(ctx) after the run has returned, which itself returns nil.
func (s *Spine) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	r.stop()
	select {
	case <-r.finished:
		return nil
	case <-ctx.Done():
		r.abortNow()
		<-r.finished
		return context.Cause(ctx)
	}
}

// Health says whether the Spine is working as it should: no organ quarantined and the
// backend answering. Problems names what is wrong, sorted; it is empty when Healthy.
type Health struct {
	Healthy  bool
	Running  bool // a Run or Serve is under way
	Problems []string
}

// Health reports the current or last run's health. It is safe to call at any time,
// from any goroutine.
func (s *Spine) Health() Health {
	s.mu.Lock()
	h, running := s.health, s.cur != nil
	s.mu.Unlock()
	problems := h.list()
	return Health{Healthy: len(problems) == 0, Running: running, Problems: problems}
}

// Ready reports whether the Spine can take work now: a run is under way, it is not
// draining after a stop nor joining a store shared with other workers, and it has no
// health problem. It has the shape of a
// telemetry.Check, for a /readyz endpoint.
func (s *Spine) Ready(context.Context) error {
	s.mu.Lock()
	r, h := s.cur, s.health
	s.mu.Unlock()
	switch {
	case r == nil:
		return errors.New("spine: not running")
	case r.stopping.Load() || r.ctx.Err() != nil:
		return errors.New("spine: draining")
	case r.joining.Load():
		return errors.New("spine: joining: waiting for the store's other workers to see this one")
	}
	if problems := h.list(); len(problems) > 0 {
		return fmt.Errorf("spine: %s", strings.Join(problems, "; "))
	}
	return nil
}

// The health problems a run can have, as [Health.Problems] names them. They are built
// here and nowhere else.
const problemCircuitOpen = "backend circuit open: pulls are failing"

// A quarantineCause says why an organ is quarantined.
type quarantineCause string

const (
	restartIntensity quarantineCause = "restart intensity exceeded"
	tooManyAbandoned quarantineCause = "too many abandoned handlers"
)

// problem is the health problem of an organ quarantined for this cause.
func (q quarantineCause) problem(organ string) string {
	return "organ " + organ + " quarantined: " + string(q)
}

// healthBox holds the problems a run has at the moment; they change rarely.
type healthBox struct {
	mu       sync.Mutex
	problems map[string]bool
}

func (h *healthBox) set(problem string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if on {
		h.problems[problem] = true
	} else {
		delete(h.problems, problem)
	}
}

func (h *healthBox) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(h.problems))
}

// Stats returns a snapshot of the counters of the current or last run. The maps are
// copies.
func (s *Spine) Stats() Stats {
	s.mu.Lock()
	c := s.stats
	s.mu.Unlock()
	return c.snapshot()
}

func (s *Spine) start(ctx context.Context, bounded bool) error {
	s.mu.Lock()
	if s.cur != nil {
		s.mu.Unlock()
		return ErrRunning
	}
	s.stats = newCounters()
	s.counts.next(s.stats)
	s.health = &healthBox{problems: map[string]bool{}}
	r := newRun(s, ctx, bounded)
	s.cur = r
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
	}()
	return r.execute()
}
