package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// A Control is what the coordinator may do with its organ actors. Its methods may be
// called only on the coordinator's goroutine: the host hands the Control to the
// [Coordinator]'s methods and to no one else, and a Coordinator must not pass it on.
type Control[M any] struct{ h *host }

// Dispatch sends items to an organ's actor, which handles them in order and answers
// with [Coordinator.Done]. The coordinator must not dispatch to an organ again before
// its final Done.
func (c *Control[M]) Dispatch(organ int, items []Item) {
	h := c.h
	h.ctx.Send(h.slots[organ].pid, &work{organ: organ, items: items, results: make([]Result, len(items))})
}

// Restart restarts a crashed organ's actor with a fresh instance once delay has passed;
// the actor announces itself with [Coordinator.Ready].
func (c *Control[M]) Restart(organ int, delay time.Duration) {
	h := c.h
	msg := restartMsg{organ: organ, pid: h.slots[organ].pid}
	if delay <= 0 {
		h.restart(msg)
		return
	}
	h.after(delay, msg)
}

// After posts m to the coordinator, for its Receive, once d has passed, unless the host
// is closed first.
func (c *Control[M]) After(d time.Duration, m M) { c.h.after(d, envelope[M]{m}) }

// Abandon gives up on a stuck Handle call, if it is still running. It returns the
// results not yet sent of the items its batch handled before it, the stuck item's result
// (a timeout, with the call's span), and the items after it, which were not handled; the
// organ goes on with a fresh actor, which announces itself with [Coordinator.Ready]. ok
// is false when the call finished meanwhile: then its Done is on its way and nothing
// changes.
func (c *Control[M]) Abandon(st Stuck) (results []Result, rest []Item, ok bool) {
	h := c.h
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
func (c *Control[M]) Abandoned(organ int) int { return int(c.h.slots[organ].abandoned.Load()) }

// The host's own messages to the coordinator actor, beside the Coordinator's.
type (
	// envelope carries one of the Coordinator's own messages, so that no M can be
	// mistaken for a message of the host's.
	envelope[M any] struct{ m M }
	// ready is an organ actor's announcement, for Coordinator.Ready.
	ready struct {
		organ       int
		incarnation int64
	}
	// restartMsg restarts the organ actor pid, unless it was replaced meanwhile.
	restartMsg struct {
		organ int
		pid   *actor.PID
	}
	// closeMark is the last message Close sends the coordinator: when it is handled, so
	// is every message sent before it.
	closeMark struct{ handled chan struct{} }
)

// coordinator is the protoactor shell of the coordinator actor: it spawns and
// supervises the organ actors, and hands each message to the [Coordinator] method for
// its kind.
type coordinator[M any] struct {
	h         *host
	ctl       *Control[M]
	behaviour Coordinator[M]
}

func (c *coordinator[M]) Receive(ctx actor.Context) {
	h := c.h
	h.ctx = ctx
	switch m := ctx.Message().(type) {
	case envelope[M]:
		c.behaviour.Receive(c.ctl, m.m)
	case *Done:
		c.behaviour.Done(c.ctl, *m)
	case ready:
		c.behaviour.Ready(c.ctl, m.organ, m.incarnation)
	case Stuck:
		c.behaviour.Stuck(c.ctl, m)
	case *actor.Started:
		for i := range h.slots {
			h.spawn(i)
		}
	case restartMsg:
		h.restart(m)
	case closeMark:
		close(m.handled)
	}
}

// HandleFailure makes the coordinator the supervisor of the organ actors: protoactor
// calls it on the coordinator's goroutine when an organ actor panicked, and the
// Coordinator decides when to restart it.
func (c *coordinator[M]) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ any) {
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
	c.behaviour.Crashed(c.ctl, organ, pe)
}

// spawn starts a fresh actor for an organ, from its mount, on the coordinator's goroutine.
func (h *host) spawn(organ int) {
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

func (h *host) restart(m restartMsg) {
	if h.sup == nil || h.slots[m.organ].pid != m.pid {
		return // the actor was replaced meanwhile
	}
	h.sup.RestartChildren(m.pid)
}
