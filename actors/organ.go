package actors

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/necrostack/necro"
)

type (
	atomicWork = atomic.Pointer[work]
	atomicInt  = atomic.Int64
)

const abandonedState = -1

// work is one batch for one organ actor. state is the index of the item being handled;
// the actor advances it after each item and the coordinator sets it to abandonedState
// to take the batch over. Whoever wins the compare-and-swap owns the rest of the batch.
type work struct {
	organ   int
	items   []Item
	results []Result
	state   atomic.Int64
	flushed atomic.Int64 // results before this index were sent; see claim
	cur     atomic.Pointer[handleCtx]
}

// flushEvery is how long an organ actor handles a batch before it sends the results it
// has so far, so that one slow handler does not hold back the commits of many events.
const flushEvery = time.Millisecond

type organActor struct {
	h           *host
	organ       int
	slot        *slot
	o           necro.Organ
	incarnation int64
}

func (a *organActor) Receive(ctx actor.Context) {
	switch w := ctx.Message().(type) {
	case *actor.Started:
		ctx.Send(ctx.Parent(), ready{organ: a.organ, incarnation: a.incarnation})
	case *work:
		a.handleBatch(ctx, w)
	}
}

func (a *organActor) handleBatch(ctx actor.Context, w *work) {
	a.slot.active.Store(w)
	timeout := a.slot.timeout
	// One ctx per item, all in one allocation; a handler that keeps its ctx keeps the
	// batch's contexts alive, which is harmless.
	ctxs := make([]handleCtx, len(w.items))
	// One clock reading per item: the end of one item is the start of the next.
	start := time.Now()
	lastFlush := start
	for i, it := range w.items {
		if a.h.closing.Load() {
			// The host is closing: its run is over and nobody waits for these results.
			// Their events went back unsettled; their spans end here, as no one else
			// will end them.
			for _, res := range w.claim(i) {
				res.Span.Settled("release", "")
				res.Span.End(res.Duration, 0)
			}
			w.cur.Store(nil)
			a.slot.active.Store(nil)
			return
		}
		hc := &ctxs[i]
		hc.parent, hc.deadline, hc.index, hc.ev, hc.organ = a.h.base, start.Add(timeout), i, it.Event, a.slot.name
		var hctx context.Context = hc
		if tel := a.h.cfg.Telemetry; tel.Tracing() {
			hctx, hc.span = tel.Process(hc, &a.h.cfg.Destination, it.Event, a.slot.name, start)
			if it.Quarantined {
				hc.span.Note("necro.quarantined", "the organ was quarantined; the event waited")
			}
		}
		w.cur.Store(hc)
		children, err := a.handleOne(hctx, it.Event)
		if hc.endedBy() == ctxPastDeadline {
			children, err = nil, a.slot.timeoutErr()
		}
		end := time.Now()
		w.results[i] = Result{Seq: it.Seq, Children: children, Err: err, Duration: end.Sub(start), Span: hc.span}
		start = end
		if !w.state.CompareAndSwap(int64(i), int64(i+1)) {
			// The coordinator abandoned this call while it ran; the batch is no longer ours.
			a.slot.abandoned.Add(-1)
			ctx.Stop(ctx.Self())
			return
		}
		if pe, ok := err.(*necro.PanicError); ok {
			w.cur.Store(nil)
			a.slot.active.Store(nil)
			ctx.Send(ctx.Parent(), &Done{Organ: a.organ, Results: w.claim(i + 1), Rest: w.items[i+1:], Final: true,
				Crashed: true, Incarnation: a.incarnation})
			panic(pe) // let protoactor escalate to the coordinator, which restarts us fresh
		}
		if i+1 < len(w.items) && end.Sub(lastFlush) >= flushEvery {
			if rs := w.claim(i + 1); len(rs) > 0 {
				ctx.Send(ctx.Parent(), &Done{Organ: a.organ, Results: rs, Incarnation: a.incarnation})
			}
			lastFlush = end
		}
	}
	// Sent before the batch stops counting as running, so that Close, which waits
	// for what runs, never gets ahead of this answer.
	ctx.Send(ctx.Parent(), &Done{Organ: a.organ, Results: w.claim(len(w.items)), Final: true, Incarnation: a.incarnation})
	w.cur.Store(nil)
	a.slot.active.Store(nil)
}

// claim takes the results before upto that nobody has sent yet. The organ actor, the
// watchdog (for a call that runs long) and an abandon all send results; claiming with a
// compare-and-swap sends each result exactly once.
func (w *work) claim(upto int) []Result {
	for {
		from := w.flushed.Load()
		if from >= int64(upto) {
			return nil
		}
		if w.flushed.CompareAndSwap(from, int64(upto)) {
			return w.results[from:upto]
		}
	}
}

// handleOne calls Handle and turns a panic into a *necro.PanicError with the stack.
func (a *organActor) handleOne(ctx context.Context, ev necro.Event) (children []necro.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &necro.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return a.o.Handle(ctx, ev)
}
