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

// A Host runs one actor per mounted organ under a coordinator actor whose behaviour is
// a [Coordinator] (the Spine's). Send and Close may be called from any goroutine; what
// only the coordinator's goroutine may do is on the [Control] its methods receive.
type Host[M any] struct{ core *host }

// host is the state of a Host that does not depend on the Coordinator's message type.
// The fields the coordinator's goroutine alone touches are marked.
type host struct {
	cfg   Config
	base  context.Context
	sys   *actor.ActorSystem
	coord *actor.PID
	slots []*slot
	byPID map[string]int // coordinator's goroutine only

	ctx actor.Context    // the coordinator's context, set while it receives; its goroutine only
	sup actor.Supervisor // the coordinator as supervisor, set at the first failure; its goroutine only

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

// Start spawns the coordinator, whose behaviour is coord, and one actor per mount, and
// starts the watchdog. ctx is the parent of every Handle ctx: its values reach handlers,
// and when it is done the running handlers' contexts are canceled. The mounts must have
// been validated. Organs are numbered 0..len(mounts)-1 in mount order.
func Start[M any](ctx context.Context, mounts []necro.Mount, cfg Config, coord Coordinator[M]) *Host[M] {
	cfg = cfg.withDefaults()
	h := &host{
		cfg:       cfg,
		base:      ctx,
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
	ctl := &Control[M]{h: h}
	h.coord = h.sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &coordinator[M]{h: h, ctl: ctl, behaviour: coord}
	}))
	go h.watch()
	return &Host[M]{core: h}
}

// Send posts m to the coordinator, for its Receive, from any goroutine.
func (h *Host[M]) Send(m M) { h.core.post(envelope[M]{m}) }

// Close stops the watchdog, the timers and the actors, and waits for the watchdog.
// The answers the organ actors sent before they stopped reach the coordinator first; the
// results they never sent are dropped, their spans ended with the outcome "release".
// Abandoned Handle calls still running cannot be stopped; they are left to finish and
// their results are dropped. Close may be called from any goroutine but the
// coordinator's, more than once.
func (h *Host[M]) Close() { h.core.close() }

func (h *host) post(msg any) { h.sys.Root.Send(h.coord, msg) }

// after posts msg to the coordinator once d has passed, unless the host is closed first.
func (h *host) after(d time.Duration, msg any) {
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
			h.post(msg)
		}
	})
	h.timers[t] = struct{}{}
}

func (s *slot) timeoutErr() error {
	return fmt.Errorf("%w after %s", necro.ErrHandlerTimeout, s.timeout)
}

func (h *host) close() {
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
					hc.end(ctxCanceled)
					running = true
				}
			}
		}
		if !running || time.Now().After(wait) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The organ actors' last answers were sent before they stopped; let the Coordinator
	// have them, and the spans in their results, before the coordinator stops: Stop
	// would drop the messages still in its mailbox.
	flushed := make(chan struct{})
	h.post(closeMark{flushed})
	select {
	case <-flushed:
	case <-time.After(h.cfg.AbandonAfter): // the Coordinator never blocks; this bound is only a safeguard
	}
	h.sys.Root.Stop(h.coord) // stops the organ actors too
	h.sys.Shutdown()
}

// watch is the watchdog: it ends Handle contexts at their deadline, cancels them
// when the host's ctx is done, and reports calls that run on past AbandonAfter.
func (h *host) watch() {
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
			h.check(i, s, now, canceled)
		}
	}
}

// check is the watchdog's look at the Handle call an organ's actor is running, if any.
func (h *host) check(organ int, s *slot, now time.Time, canceled bool) {
	w := s.active.Load()
	if w == nil {
		return
	}
	hc := w.cur.Load()
	if hc == nil {
		return
	}
	if canceled {
		hc.end(ctxCanceled)
	}
	// Results handled before a long call are sent now, so that their commits need not
	// wait for it.
	if now.Sub(hc.deadline.Add(-s.timeout)) >= flushEvery {
		if rs := w.claim(hc.index); len(rs) > 0 {
			h.post(&Done{Organ: organ, Results: rs})
		}
	}
	if now.Before(hc.deadline) {
		return
	}
	hc.end(ctxPastDeadline)
	if now.After(hc.deadline.Add(h.cfg.AbandonAfter)) && hc.stuck.CompareAndSwap(false, true) {
		h.post(Stuck{Organ: organ, Seq: w.items[hc.index].Seq, w: w, index: hc.index})
	}
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
