package actors

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// Config tunes a [Host]. The zero value is ready to use; each field states its default.
type Config struct {
	// HandlerTimeout bounds one Handle call; zero means 30s.
	HandlerTimeout time.Duration
	// Timeouts overrides HandlerTimeout for the organs it names.
	Timeouts map[string]time.Duration
	// AbandonAfter is how long past its deadline a Handle call may go on before it is
	// reported [Stuck], and how long Close waits for calls it canceled; zero means 1s.
	AbandonAfter time.Duration
	// Logger receives the host's and protoactor's logs; nil discards them.
	Logger *slog.Logger
	// Telemetry records a process span per Handle call; nil records nothing.
	Telemetry *telemetry.Recorder
	// Destination names the queue the events come from, for the spans' attributes.
	Destination telemetry.Destination
}

// DefaultHandlerTimeout is the handler timeout when Config.HandlerTimeout is zero.
const DefaultHandlerTimeout = 30 * time.Second

func (c Config) withDefaults() Config {
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.AbandonAfter == 0 {
		c.AbandonAfter = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// An Item is one event for one organ, numbered by the coordinator.
type Item struct {
	Seq   uint64
	Event necro.Event
	// Quarantined says the item waited for its organ to come out of quarantine; its
	// process span notes it.
	Quarantined bool
}

// A Result is what one Handle call gave for the item with the same Seq.
type Result struct {
	Seq      uint64
	Children []necro.Event
	Err      error
	Duration time.Duration
	// Span is the call's process span, still open: the coordinator records what
	// became of the event and ends it. The zero Span when tracing is off.
	Span telemetry.Span
	// Abandoned marks the result of a call given up on after its deadline.
	Abandoned bool
}

// Ready tells the coordinator that an organ's actor has started (first start, restart,
// or replacement after an abandon) and can take work. Incarnation numbers the organ's
// actor instances from 1; a Ready from an incarnation that has crashed since is stale.
type Ready struct {
	Organ       int
	Incarnation int64
}

// Done answers a [Host.Dispatch]: the results of items handled, in order. A long batch
// sends its results in several Dones; the last one is Final, after which the organ can
// take more work. Rest holds the items not handled (after a crash), which the
// coordinator must dispatch again.
type Done struct {
	Organ   int
	Results []Result
	Rest    []Item
	Final   bool
	// Crashed marks the Done of a batch whose last result is a panic: the actor is
	// suspended until [Host.Restart], and must get no work before its next Ready.
	Crashed     bool
	Incarnation int64 // the actor instance that sent it
}

// Crashed tells the coordinator that an organ's actor panicked and is suspended until
// [Host.Restart]. The [Done] with the panicking item's result may arrive after it.
type Crashed struct {
	Organ int
	Err   *necro.PanicError
}

// Stuck tells the coordinator that a Handle call is running past its deadline plus
// AbandonAfter. Pass it to [Host.Abandon].
type Stuck struct {
	Organ int
	Seq   uint64
	w     *work
	index int
}

// closeMark is the last message Close sends the coordinator: when it is handled, so is
// every message sent before it.
type closeMark struct{ handled chan struct{} }

type restartMsg struct {
	organ int
	pid   *actor.PID
}

// A Host runs one actor per mounted organ under a coordinator actor. Its methods other
// than [Host.Send], [Host.Abandoned] and [Host.Close] must be called from the handler,
// which runs on the coordinator's goroutine.
type Host struct {
	cfg    Config
	base   context.Context
	sys    *actor.ActorSystem
	coord  *actor.PID
	handle func(msg any)
	slots  []*slot
	byPID  map[string]int

	ctx actor.Context    // the coordinator's context, set while it receives
	sup actor.Supervisor // the coordinator as supervisor, set at the first failure

	timersMu sync.Mutex
	timers   map[*time.Timer]struct{}
	closed   bool
	closing  atomic.Bool // set by Close: no organ actor starts another item

	stopWatch chan struct{}
	watchDone chan struct{}
}

type slot struct {
	incarnations atomic.Int64 // actor instances built so far
	name         string
	timeout      time.Duration // the handler timeout of this organ
	mount        necro.Mount
	pid          *actor.PID
	gen          int
	active       atomicWork
	abandoned    atomicInt
}

// Start spawns the coordinator and one actor per mount, and starts the watchdog. Every
// message for the coordinator, [Ready], [Done], [Crashed], [Stuck] and whatever is
// passed to [Host.Send] or [Host.After], is handed to handle on the coordinator's
// goroutine. ctx is the parent of every Handle ctx: its values reach handlers, and when
// it is done the running handlers' contexts are canceled. The mounts must have been
// validated.
func Start(ctx context.Context, mounts []necro.Mount, cfg Config, handle func(msg any)) *Host {
	cfg = cfg.withDefaults()
	h := &Host{
		cfg:       cfg,
		base:      ctx,
		handle:    handle,
		byPID:     map[string]int{},
		timers:    map[*time.Timer]struct{}{},
		stopWatch: make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	logger := slog.New(infoAsDebug{cfg.Logger.Handler()}).With(slog.String("component", "protoactor"))
	h.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	for _, m := range mounts {
		timeout := cfg.HandlerTimeout
		if t, ok := cfg.Timeouts[m.Name]; ok && t > 0 {
			timeout = t
		}
		h.slots = append(h.slots, &slot{name: m.Name, mount: m, timeout: timeout})
	}
	h.coord = h.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &coordinator{h} }))
	go h.watch()
	return h
}

// Send posts msg to the coordinator from any goroutine.
func (h *Host) Send(msg any) { h.sys.Root.Send(h.coord, msg) }

// After posts msg to the coordinator once d has passed, unless the host is closed first.
func (h *Host) After(d time.Duration, msg any) {
	h.timersMu.Lock()
	defer h.timersMu.Unlock()
	if h.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		h.timersMu.Lock()
		delete(h.timers, t)
		closed := h.closed
		h.timersMu.Unlock()
		if !closed {
			h.Send(msg)
		}
	})
	h.timers[t] = struct{}{}
}

// Organs returns how many organs the host runs; organ indexes are 0..Organs()-1 in
// mount order.
func (h *Host) Organs() int { return len(h.slots) }

// Name returns the name an organ was mounted under.
func (h *Host) Name(organ int) string { return h.slots[organ].name }

// Dispatch sends items to an organ's actor, which handles them in order and answers
// with [Done]. The coordinator must not dispatch to an organ again before its Done.
func (h *Host) Dispatch(organ int, items []Item) {
	s := h.slots[organ]
	h.ctx.Send(s.pid, &work{organ: organ, items: items, results: make([]Result, len(items))})
}

// Restart restarts a crashed organ's actor with a fresh instance once delay has passed;
// the actor announces itself with [Ready].
func (h *Host) Restart(organ int, delay time.Duration) {
	msg := restartMsg{organ: organ, pid: h.slots[organ].pid}
	if delay <= 0 {
		h.restart(msg)
		return
	}
	h.After(delay, msg)
}

func (h *Host) restart(m restartMsg) {
	if h.sup == nil || h.slots[m.organ].pid != m.pid {
		return // the actor was replaced meanwhile
	}
	h.sup.RestartChildren(m.pid)
}

// Abandon gives up on a stuck Handle call, if it is still running. It returns the
// results not yet sent of the items its batch handled before it, the stuck item's result (a
// timeout), and the items after it, which were not handled; the organ goes on with a
// fresh actor, which announces itself with [Ready]. ok is false when the call finished
// meanwhile: then its Done is on its way and nothing changes.
func (h *Host) Abandon(st Stuck) (results []Result, rest []Item, ok bool) {
	w := st.w
	if !w.state.CompareAndSwap(int64(st.index), abandonedState) {
		return nil, nil, false
	}
	s := h.slots[st.Organ]
	s.abandoned.Add(1)
	results = append(results, w.claim(st.index)...)
	var span telemetry.Span
	if hc := w.cur.Load(); hc != nil && hc.index == st.index {
		span = hc.span // the abandoned call never touches its span again: the state CAS gave it up
	}
	results = append(results, Result{Seq: st.Seq, Err: s.timeoutErr(), Duration: s.timeout + h.cfg.AbandonAfter,
		Span: span, Abandoned: true})
	rest = w.items[st.index+1:]
	delete(h.byPID, s.pid.Id)
	s.active.Store(nil)
	h.spawn(st.Organ)
	return results, rest, true
}

// Abandoned returns how many abandoned Handle calls of an organ are still running.
func (h *Host) Abandoned(organ int) int { return int(h.slots[organ].abandoned.Load()) }

func (s *slot) timeoutErr() error {
	return fmt.Errorf("%w after %s", necro.ErrHandlerTimeout, s.timeout)
}

func (h *Host) spawn(organ int) {
	s := h.slots[organ]
	s.gen++
	props := actor.PropsFromProducer(func() actor.Actor {
		return &organActor{h: h, organ: organ, slot: s, o: s.mount.Instance(), incarnation: s.incarnations.Add(1)}
	})
	pid, err := h.ctx.SpawnNamed(props, fmt.Sprintf("%s-%d", s.name, s.gen))
	if err != nil {
		pid = h.ctx.Spawn(props) // a name clash cannot happen with fresh generations; stay alive anyway
	}
	s.pid = pid
	h.byPID[pid.Id] = organ
}

// Close stops the watchdog, the timers and the actors, and waits for the watchdog.
// The answers the organ actors sent before they stopped reach the handler first; the
// results they never sent are dropped, their spans ended with the outcome "release".
// Abandoned Handle calls still running cannot be stopped; they are left to finish and
// their results are dropped.
func (h *Host) Close() {
	h.timersMu.Lock()
	if h.closed {
		h.timersMu.Unlock()
		return
	}
	h.closed = true
	for t := range h.timers {
		t.Stop()
	}
	h.timers = nil
	h.timersMu.Unlock()
	h.closing.Store(true) // organ actors start no further item
	close(h.stopWatch)
	<-h.watchDone
	// Whatever still runs is told to stop and given AbandonAfter to return; a handler
	// that ignores its ctx longer is left running, abandoned like any other.
	wait := time.Now().Add(h.cfg.AbandonAfter)
	for {
		running := false
		for _, s := range h.slots {
			if w := s.active.Load(); w != nil {
				if hc := w.cur.Load(); hc != nil {
					hc.expire(2)
					running = true
				}
			}
		}
		if !running || time.Now().After(wait) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The organ actors' last answers were sent before they stopped; let the handler
	// have them, and the spans in their results, before the coordinator stops: Stop
	// would drop the user messages still in its mailbox.
	flushed := make(chan struct{})
	h.Send(closeMark{flushed})
	select {
	case <-flushed:
	case <-time.After(h.cfg.AbandonAfter): // the handler never blocks; this bound is only a safeguard
	}
	h.sys.Root.Stop(h.coord) // stops the organ actors too
	h.sys.Shutdown()
}

// watch is the watchdog: it expires Handle contexts at their deadline, cancels them
// when the host's ctx is done, and reports calls that run on past AbandonAfter.
func (h *Host) watch() {
	defer close(h.watchDone)
	shortest := h.cfg.HandlerTimeout
	for _, s := range h.slots {
		shortest = min(shortest, s.timeout)
	}
	tick := min(max(shortest/8, time.Millisecond), 20*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	done, canceled := h.base.Done(), false
	for {
		var now time.Time
		select {
		case <-h.stopWatch:
			return
		case <-done:
			done, canceled = nil, true // from now on every tick cancels what runs
			now = time.Now()
		case now = <-t.C:
		}
		for i, s := range h.slots {
			w := s.active.Load()
			if w == nil {
				continue
			}
			hc := w.cur.Load()
			if hc == nil {
				continue
			}
			if canceled {
				hc.expire(2)
			}
			// Results handled before a long call are sent now, so that their commits
			// need not wait for it.
			if now.Sub(hc.deadline.Add(-s.timeout)) >= flushEvery {
				if rs := w.claim(hc.index); len(rs) > 0 {
					h.Send(&Done{Organ: i, Results: rs})
				}
			}
			if now.Before(hc.deadline) {
				continue
			}
			hc.expire(1)
			if now.After(hc.deadline.Add(h.cfg.AbandonAfter)) && hc.stuck.CompareAndSwap(false, true) {
				h.Send(Stuck{Organ: i, Seq: w.items[hc.index].Seq, w: w, index: hc.index})
			}
		}
	}
}

type coordinator struct{ h *Host }

func (c *coordinator) Receive(ctx actor.Context) {
	h := c.h
	h.ctx = ctx
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for i := range h.slots {
			h.spawn(i)
		}
	case restartMsg:
		h.restart(m)
	case closeMark:
		close(m.handled)
	case *actor.Stopping, *actor.Stopped, *actor.Restarting, *actor.Terminated:
	default:
		h.handle(m)
	}
}

// HandleFailure makes the coordinator the supervisor of the organ actors: protoactor
// calls it on the coordinator's goroutine when an organ actor panicked, and the
// handler decides when to restart it.
func (c *coordinator) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ any) {
	h := c.h
	h.sup = sup
	organ, ok := h.byPID[child.Id]
	if !ok {
		// A replaced (abandoned) actor failed; nobody waits for its results.
		h.cfg.Logger.Warn("replaced organ actor failed; stopped", slog.String("actor", child.Id), slog.Any("reason", reason))
		sup.StopChildren(child)
		return
	}
	pe, ok := reason.(*necro.PanicError)
	if !ok {
		pe = &necro.PanicError{Value: reason}
	}
	h.handle(Crashed{Organ: organ, Err: pe})
}

// infoAsDebug hands protoactor's Info records to its handler at Debug: its Info lines
// ("actor system started" at every run, "[ACTOR] Recovering") are lifecycle detail to a
// user of necro, and at the default level they would show for every Run. Warnings and
// errors pass as they are.
type infoAsDebug struct{ slog.Handler }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelWarn {
		return min(l, slog.LevelDebug)
	}
	return l
}

func (h infoAsDebug) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, demote(l))
}

func (h infoAsDebug) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h infoAsDebug) WithAttrs(as []slog.Attr) slog.Handler {
	return infoAsDebug{h.Handler.WithAttrs(as)}
}

func (h infoAsDebug) WithGroup(name string) slog.Handler {
	return infoAsDebug{h.Handler.WithGroup(name)}
}
