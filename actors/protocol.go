package actors

import (
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// A Coordinator is the behaviour of the actor that supervises the organ actors (the
// Spine's). The host calls one of its methods per message, one message at a time, on
// the coordinator's goroutine, so the Coordinator's state needs no lock. Each call gets
// the host's [Control], which holds what may be done only there. M is the type of the
// Coordinator's own messages, those posted with [Host.Send] and [Control.After].
type Coordinator[M any] interface {
	// Receive handles one of the Coordinator's own messages.
	Receive(ctl *Control[M], m M)
	// Ready says that an organ's actor has started (first start, restart, or
	// replacement after an abandon) and can take work. incarnation numbers the organ's
	// actor instances from 1; a Ready from an incarnation that has crashed or been
	// abandoned since is stale.
	Ready(ctl *Control[M], organ int, incarnation int64)
	// Done answers a [Control.Dispatch], in one or more parts.
	Done(ctl *Control[M], d Done)
	// Crashed says that an organ's actor panicked and is suspended until
	// [Control.Restart]. The Done with the panicking item's result (marked Crashed)
	// may come before or after it.
	Crashed(ctl *Control[M], organ int, err *necro.PanicError)
	// Stuck says that a Handle call runs past its deadline plus AbandonAfter; pass st
	// to [Control.Abandon].
	Stuck(ctl *Control[M], st Stuck)
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
	// Span is the call's process span, still open: it was started with the call, as
	// the parent of the handler's own spans, and is ended by whoever receives the
	// Result, once it knows what became of the event. The host ends only the spans of
	// results it drops (see [Host.Close]). The zero Span when tracing is off.
	Span telemetry.Span
	// Abandoned marks the result of a call given up on after its deadline.
	Abandoned bool
}

// Done answers a [Control.Dispatch]: the results of items handled, in order. A long
// batch sends its results in several Dones; the last one is Final, after which the
// organ can take more work. Rest holds the items not handled (after a crash), which the
// coordinator must dispatch again.
type Done struct {
	Organ   int
	Results []Result
	Rest    []Item
	Final   bool
	// Crashed marks the Done of a batch whose last result is a panic: the actor is
	// suspended until [Control.Restart], and must get no work before its next Ready.
	Crashed     bool
	Incarnation int64 // the actor instance that sent it
}

// Stuck names a Handle call running past its deadline plus AbandonAfter, for
// [Control.Abandon].
type Stuck struct {
	Organ int
	Seq   uint64
	w     *work
	index int
}
