package spine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/actors"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/supervision"
	"github.com/necrostack/necro/telemetry"
)

// coordinator is the Spine actor. The actors package runs it as the coordinator of the
// organ actors (see actors.Coordinator): the methods that take a *control are its
// behaviour, one per kind of message, and run one at a time on the actor's goroutine,
// which alone touches the coordinator's state. After each message it dispatches what
// waits and commits what is complete (see advance).
type coordinator struct {
	r      *run
	log    *slog.Logger
	debug  bool
	organs []organState

	// The reorder buffer: a ring of records indexed by sequence number. Deliveries are
	// numbered in pull order and committed strictly in that order.
	ring      []record
	mask      uint64
	nextSeq   uint64
	commitSeq uint64

	aborted     bool
	unroutedLog map[string]struct{} // event types already logged as unrouted, at most maxUnroutedLogged
	deferLogged bool                // a deferral for want of a roster was logged
	out         []backend.Settlement
	children    []necro.Event
}

var _ actors.Coordinator[message] = (*coordinator)(nil)

// control is what the Spine actor may do with its organ actors: dispatch, restart,
// abandon, set a timer. Only the actor's own methods receive it.
type control = actors.Control[message]

// A message is one of the Spine actor's own messages, beside its organs' answers:
// [fetched], [quarantineOver] or [abortMsg].
type message interface{ spineMessage() }

type (
	// fetched carries a pulled batch from the fetcher.
	fetched struct{ ds []backend.Delivery }
	// quarantineOver ends, from a timer, the quarantine of an organ that had too many
	// abandoned calls.
	quarantineOver struct{ organ int }
	// abortMsg asks, from the run, for every uncommitted delivery to be given back; done
	// is closed once they are on their way.
	abortMsg struct{ done chan struct{} }
)

func (fetched) spineMessage()        {}
func (quarantineOver) spineMessage() {}
func (abortMsg) spineMessage()       {}

// organState is what the Spine actor knows of one organ and its actor.
type organState struct {
	name  string
	queue []actors.Item // items waiting for this organ, in sequence order
	busy  bool          // a batch is out and its final Done has not come back
	ready bool          // its actor announced itself Ready and has not failed since
	// crashQuarantine: quarantined by its restart intensity, until its restarted actor
	// is Ready. abandonQuarantine: quarantined after too many abandoned calls, until
	// its quarantineOver. Either way it gets no work.
	crashQuarantine   bool
	abandonQuarantine bool
	// latestHeard is the newest incarnation of its actor heard from; goneThrough the
	// newest known to have crashed or been abandoned. A Ready from an incarnation up to
	// goneThrough is stale.
	latestHeard int64
	goneThrough int64
	// crashOpen is set between the first and the second report of a crash; see
	// crashReported.
	crashOpen bool
	history   supervision.History
}

// quarantined reports whether the organ is in quarantine, for either cause.
func (o *organState) quarantined() bool { return o.crashQuarantine || o.abandonQuarantine }

type record struct {
	used    bool
	seq     uint64
	d       backend.Delivery
	organs  []int // the organs it was dispatched to, in mount order
	fate    fate  // where it goes beyond them
	results []actors.Result
	waiting int
}

// markQuarantined marks the items waiting for the organ, whose process spans note it.
// It is called as a quarantine ends: an organ in quarantine gets no work, so every item
// that waited for it, queued before or during the quarantine or handed back by a crash,
// is in its queue then.
func (o *organState) markQuarantined() {
	for i := range o.queue {
		o.queue[i].Quarantined = true
	}
}

func newCoordinator(r *run) *coordinator {
	size := uint64(1)
	for size < uint64(r.cfg.Window) {
		size <<= 1
	}
	c := &coordinator{r: r, log: r.log, ring: make([]record, size), mask: size - 1, unroutedLog: map[string]struct{}{}}
	c.debug = c.log.Enabled(context.Background(), slog.LevelDebug)
	for _, m := range r.s.mounts {
		c.organs = append(c.organs, organState{name: m.Name})
	}
	return c
}

// Receive handles the Spine actor's own messages.
func (c *coordinator) Receive(ctl *control, m message) {
	switch m := m.(type) {
	case fetched:
		c.admit(m.ds)
	case quarantineOver:
		c.endAbandonQuarantine(m.organ)
	case abortMsg:
		c.abort()
		close(m.done)
	}
	c.advance(ctl)
}

// Ready takes an organ's announcement that its actor can take work.
func (c *coordinator) Ready(ctl *control, organ int, incarnation int64) {
	c.organReady(organ, incarnation)
	c.advance(ctl)
}

// Done takes an organ's answer to a dispatch.
func (c *coordinator) Done(ctl *control, d actors.Done) {
	c.answered(d)
	c.advance(ctl)
}

// Crashed takes the report that an organ's actor panicked.
func (c *coordinator) Crashed(ctl *control, organ int, err *necro.PanicError) {
	c.crashed(ctl, organ, err)
	c.advance(ctl)
}

// Stuck takes the report of a Handle call that ignored its deadline.
func (c *coordinator) Stuck(ctl *control, st actors.Stuck) {
	c.abandon(ctl, st)
	c.advance(ctl)
}

// advance ends the handling of every message: it dispatches what waits and commits what
// is complete, unless the run is aborted or being aborted.
func (c *coordinator) advance(ctl *control) {
	if c.aborted {
		return
	}
	if c.r.ctx.Err() != nil {
		// An immediate stop is under way and its abort is on the way. Every Handle call
		// still running has had its ctx canceled by it, so a result that comes in now
		// may be that cancellation (ctx.Err()) rather than the call's own outcome:
		// committing it would ack, give up on or dead-letter an event that never
		// failed. From here on nothing is dispatched or committed; the abort gives back
		// every delivery not committed yet. What was committed before stays committed.
		return
	}
	c.dispatch(ctl)
	c.commit()
}

// admit numbers a pulled batch and queues each delivery for its organs.
func (c *coordinator) admit(ds []backend.Delivery) {
	if c.aborted {
		c.giveBack(ds)
		return
	}
	rt := c.r.routes.Load()
	for _, d := range ds {
		seq := c.nextSeq
		c.nextSeq++
		rec := &c.ring[seq&c.mask]
		organs, f := c.route(d.Event, rt)
		*rec = record{used: true, seq: seq, d: d, organs: organs, fate: f, results: rec.results[:0], waiting: len(organs)}
		for range organs {
			rec.results = append(rec.results, actors.Result{})
		}
		for _, o := range organs {
			og := &c.organs[o]
			og.queue = append(og.queue, actors.Item{Seq: seq, Event: d.Event})
			if og.quarantined() {
				c.r.stats.quarantineWaits.Add(1)
			}
			if c.debug {
				c.log.DebugContext(c.r.ctx, "dispatching", slog.String("event_id", d.Event.ID()),
					slog.String("event_type", d.Event.Type()), slog.String("organ", c.organs[o].name))
			}
		}
	}
}

// targeted keeps the organs a retried copy is meant for.
func (c *coordinator) targeted(organs []int, ev necro.Event) []int {
	var out []int
	for _, o := range organs {
		if ev.IsFor(c.organs[o].name) {
			out = append(out, o)
		}
	}
	return out
}

// dispatch sends each organ that can take work everything waiting for it. An organ in
// a crash quarantine is not ready (its actor is down) until the restart's Ready.
func (c *coordinator) dispatch(ctl *control) {
	for i := range c.organs {
		o := &c.organs[i]
		if len(o.queue) == 0 || o.busy || !o.ready || o.abandonQuarantine {
			continue
		}
		items := o.queue
		o.queue = nil
		o.busy = true
		ctl.Dispatch(i, items)
	}
}

// organReady marks an organ's actor ready for work, unless the announcement is stale;
// a ready actor ends a crash quarantine.
func (c *coordinator) organReady(organ int, incarnation int64) {
	o := &c.organs[organ]
	o.latestHeard = max(o.latestHeard, incarnation)
	if incarnation <= o.goneThrough {
		return // stale: sent by an instance that has crashed or been abandoned since
	}
	if o.crashQuarantine {
		o.markQuarantined()
	}
	o.ready, o.crashQuarantine = true, false
	c.r.health.set(restartIntensity.problem(o.name), false)
}

// answered files an organ's answer: its results, and the items a crash handed back.
func (c *coordinator) answered(d actors.Done) {
	if d.Crashed {
		c.crashReported(d.Organ)
	}
	if c.aborted {
		endReleased(d.Results)
		return
	}
	o := &c.organs[d.Organ]
	c.record(d.Organ, d.Results)
	o.latestHeard = max(o.latestHeard, d.Incarnation)
	if d.Crashed {
		// Its Crashed may come later; until the restart, the actor must get no work.
		o.ready = false
		o.goneThrough = max(o.goneThrough, d.Incarnation)
	}
	if d.Final {
		o.busy = false
	}
	if len(d.Rest) > 0 {
		o.queue = append(append([]actors.Item(nil), d.Rest...), o.queue...)
	}
}

// record files results in the reorder buffer.
func (c *coordinator) record(organ int, results []actors.Result) {
	for _, res := range results {
		rec := &c.ring[res.Seq&c.mask]
		if !rec.used || rec.seq != res.Seq {
			continue // released by an abort
		}
		for i, o := range rec.organs {
			if o == organ {
				rec.results[i] = res
				rec.waiting--
				break
			}
		}
	}
}

// crashReported counts a crash of an organ's actor, a panic in Handle, at the first of
// its two reports: the Done marked Crashed, and protoactor's Failure (Crashed), a system
// message that may come first. A run can end between the two; counting at the first
// keeps Panics and Restarts equal whichever it was. The two reports of one crash come
// before any of the next: the actor gets work again only after its new incarnation's
// Ready, which follows the Done in the mailbox, and after Crashed, which restarts it.
func (c *coordinator) crashReported(organ int) {
	o := &c.organs[organ]
	o.crashOpen = !o.crashOpen
	if o.crashOpen {
		c.r.stats.panics.Add(1)
		c.r.stats.restarts.Add(1)
	}
}

// crashed lets the restart policy decide on a crashed organ actor: a restart after a
// backoff, or a quarantine that ends when the restarted actor is Ready.
func (c *coordinator) crashed(ctl *control, organ int, err *necro.PanicError) {
	c.crashReported(organ)
	o := &c.organs[organ]
	o.ready = false
	now := time.Now()
	d := c.r.cfg.Restart.Decide(&o.history, now, uint64(now.UnixNano()))
	attrs := []any{slog.String("organ", o.name), slog.Any("err", err), slog.Duration("delay", d.Delay),
		slog.Int("waiting", len(o.queue))}
	if d.Directive == supervision.Quarantine {
		o.crashQuarantine = true
		c.quarantine(o, restartIntensity)
		c.log.ErrorContext(c.r.ctx, "organ quarantined: restart intensity exceeded", attrs...)
	} else {
		c.log.WarnContext(c.r.ctx, "organ panicked; restarting", attrs...)
	}
	ctl.Restart(organ, d.Delay)
}

// abandon gives up on a Handle call that ignored its deadline; its organ goes on with a
// fresh actor. Past MaxAbandoned calls still running, the organ is quarantined for
// Restart.Quarantine.
func (c *coordinator) abandon(ctl *control, st actors.Stuck) {
	results, rest, ok := ctl.Abandon(st)
	if !ok {
		return // it finished meanwhile
	}
	o := &c.organs[st.Organ]
	c.r.stats.abandoned.Add(1)
	o.ready, o.busy = false, false
	o.goneThrough = max(o.goneThrough, o.latestHeard) // the replacement is a newer incarnation
	c.record(st.Organ, results)
	o.queue = append(append([]actors.Item(nil), rest...), o.queue...)
	running := ctl.Abandoned(st.Organ)
	c.log.WarnContext(c.r.ctx, "handler ignored its deadline; abandoned", slog.String("organ", o.name),
		slog.Int("abandoned_running", running))
	if running <= c.r.cfg.MaxAbandoned || o.abandonQuarantine {
		return
	}
	o.abandonQuarantine = true
	c.quarantine(o, tooManyAbandoned)
	delay := c.r.cfg.Restart.Quarantine
	if delay <= 0 {
		delay = supervision.DefaultQuarantine
	}
	c.log.ErrorContext(c.r.ctx, "organ quarantined: too many abandoned handlers", slog.String("organ", o.name),
		slog.Int("abandoned_running", running), slog.Duration("delay", delay), slog.Int("waiting", len(o.queue)))
	ctl.After(delay, quarantineOver{organ: st.Organ})
}

// quarantine reports an organ's quarantine: a health problem and its counts.
func (c *coordinator) quarantine(o *organState, cause quarantineCause) {
	c.r.health.set(cause.problem(o.name), true)
	c.r.stats.quarantines.Add(1)
	c.r.stats.quarantineWaits.Add(int64(len(o.queue)))
}

// endAbandonQuarantine lets an organ quarantined for its abandoned calls take work again.
func (c *coordinator) endAbandonQuarantine(organ int) {
	o := &c.organs[organ]
	o.markQuarantined()
	o.abandonQuarantine = false
	c.r.health.set(tooManyAbandoned.problem(o.name), false)
	c.log.InfoContext(c.r.ctx, "organ quarantine over", slog.String("organ", o.name))
}

// commit settles, in sequence order, every delivery at the head of the reorder buffer
// whose organs have all answered.
func (c *coordinator) commit() {
	c.out = c.out[:0]
	// The children of a whole commit batch share one backing array, handed over with
	// the batch; the next batch starts a new one.
	c.children = nil
	now := time.Now().UTC()
	for c.commitSeq < c.nextSeq {
		rec := &c.ring[c.commitSeq&c.mask]
		if rec.waiting > 0 {
			break
		}
		c.out = append(c.out, c.settle(rec, now))
		rec.used = false
		rec.d = backend.Delivery{}
		c.commitSeq++
	}
	if len(c.out) > 0 {
		c.r.commits.push(c.out)
	}
}

// settle decides what becomes of one delivery from its organs' results.
func (c *coordinator) settle(rec *record, now time.Time) backend.Settlement {
	st := backend.Settlement{Delivery: rec.d, Outcome: backend.Ack}
	ev := rec.d.Event
	first := len(c.children)
	cfg := &c.r.cfg
	stats := c.r.stats
	if c.settleRouting(&st, rec, now) {
		return st
	}
	maxDepth, maxFanOut := limit(cfg.MaxDepth), limit(cfg.MaxFanOut)
	tel := cfg.Telemetry
	for i, organ := range rec.organs {
		res := rec.results[i]
		name := c.organs[organ].name
		span := res.Span
		err := res.Err
		if res.Abandoned {
			span.Note("necro.abandoned", "the handler ignored its deadline; its organ went on with a fresh actor")
		}
		if err == nil {
			err = checkChildren(res.Children, maxFanOut)
			if err != nil {
				stats.fanOutExceeded.Add(1)
				span.Note("necro.budget_exceeded", "fan-out budget exceeded")
			}
		}
		if tel.Metering() {
			tel.Handled(span.Context(c.r.ctx), ev, name, res.Duration, err)
		}
		if err == nil {
			if ev.Attempt() > 1 || rec.d.Deliveries > 1 {
				c.r.s.tracker.Forget(ev.ID(), name)
			}
			var tc necro.TraceContext
			if len(res.Children) > 0 {
				tc = span.TraceContext() // the children are created in the span that emitted them
			}
			for j, child := range res.Children {
				child = child.EmittedBy(ev, name, j, tc)
				if child.Depth() > maxDepth {
					stats.depthExceeded.Add(1)
					span.Note("necro.budget_exceeded", "depth budget exceeded")
					st.DeadLetters = append(st.DeadLetters, backend.DeadLetter{Event: child, Organ: name, Attempts: 0,
						Error: necro.ErrDepthBudgetExceeded.Error(), Reason: "depth budget exceeded", At: now, Receipt: rec.d.Receipt})
					continue
				}
				c.children = append(c.children, child)
			}
			span.Settled("ack", "")
			span.End(res.Duration, len(res.Children))
			continue
		}
		span.Fail(err)
		c.failed(&st, rec, organ, err, now, span)
		span.End(res.Duration, 0)
	}
	if len(c.children) > first {
		st.Children = c.children[first:len(c.children):len(c.children)]
	}
	if tel.Metering() {
		tel.Latency(c.r.ctx, ev, now)
	}
	return st
}

// failed decides the retry or the terminal mode of one failed (event, organ).
func (c *coordinator) failed(st *backend.Settlement, rec *record, index int, err error, now time.Time, span telemetry.Span) {
	ev := rec.d.Event
	organ := c.organs[index].name
	// The lines logged about this failure carry the flow's ids and the span's.
	ctx := span.Context(telemetry.WithFlow(c.r.ctx, telemetry.Flow{Event: ev, Organ: organ}))
	stats := c.r.stats
	stats.handlerError(organ)
	if errors.Is(err, necro.ErrHandlerTimeout) {
		stats.timeouts.Add(1)
	}
	attempts := max(ev.Attempt(), c.r.s.tracker.Fail(ev.ID(), organ))
	seed := supervision.Seed(ev.ID())
	d := c.r.s.retry[index].Decide(attempts, err, seed)
	if d.Retry {
		span.Retrying(attempts+1, d.Delay)
		c.log.WarnContext(ctx, "organ failed; retrying", slog.String("organ", organ), slog.String("event_id", ev.ID()),
			slog.String("event_type", ev.Type()), slog.String("correlation_id", ev.Correlation()),
			slog.Int("attempt", attempts), slog.Duration("delay", d.Delay), slog.Any("err", err))
		at := now.Add(d.Delay)
		if d.Delay <= time.Microsecond {
			at = time.Time{} // at once, right after the children: deterministic order
		}
		st.Retries = append(st.Retries, backend.Retry{Event: ev.Retry(attempts+1, organ), At: at})
		return
	}
	switch c.r.cfg.HandlerFailure {
	case HandlerDeadLetter:
		c.r.s.tracker.Forget(ev.ID(), organ)
		span.Settled("dead_letter", d.Reason)
		st.DeadLetters = append(st.DeadLetters, backend.DeadLetter{Event: ev, Organ: organ, Attempts: attempts,
			Error: err.Error(), Reason: d.Reason, At: now, Receipt: rec.d.Receipt})
	case HandlerLog:
		c.r.s.tracker.Forget(ev.ID(), organ)
		span.Settled("given_up", d.Reason)
		c.log.ErrorContext(ctx, "event given up; acked", slog.String("organ", organ), slog.String("event_id", ev.ID()),
			slog.String("reason", d.Reason), slog.Any("err", err))
	case HandlerNack:
		st.Outcome = backend.Nack
		st.Targets = append(st.Targets, organ)
		span.Settled("nack", d.Reason)
		c.log.WarnContext(ctx, "event nacked", slog.String("organ", organ), slog.String("event_id", ev.ID()),
			slog.Int("attempt", attempts), slog.String("reason", d.Reason), slog.Any("err", err))
	}
}

// checkChildren rejects an emit that breaks MaxFanOut or holds a zero Event. Both are
// bugs in the organ, so retrying cannot help: the error is permanent.
func checkChildren(children []necro.Event, maxFanOut int) error {
	if len(children) > maxFanOut {
		return necro.Permanent(fmt.Errorf("%w: %d children, limit %d", necro.ErrFanOutExceeded, len(children), maxFanOut))
	}
	for i, ch := range children {
		if ch.IsZero() {
			return necro.Permanent(fmt.Errorf("%w: child %d is a zero Event", necro.ErrInvalidEvent, i))
		}
	}
	return nil
}

// abort gives every uncommitted delivery back to the backend. The committer gives
// them back newest first, after whatever it still had to settle.
func (c *coordinator) abort() {
	c.aborted = true
	var rel []backend.Settlement
	for seq := c.commitSeq; seq < c.nextSeq; seq++ {
		rec := &c.ring[seq&c.mask]
		rel = append(rel, backend.Settlement{Delivery: rec.d, Outcome: backend.Release})
		endReleased(rec.results)
		rec.used = false
	}
	c.commitSeq = c.nextSeq
	if len(rel) > 0 {
		c.r.commits.push(rel)
	}
}

// endReleased ends the process spans of handlings whose event goes back to the backend
// unsettled, to be handled again.
func endReleased(results []actors.Result) {
	for _, res := range results {
		res.Span.Settled("release", "")
		res.Span.End(res.Duration, 0)
	}
}

func (c *coordinator) giveBack(ds []backend.Delivery) {
	rel := make([]backend.Settlement, len(ds))
	for i, d := range ds {
		rel[i] = backend.Settlement{Delivery: d, Outcome: backend.Release}
	}
	c.r.commits.push(rel)
}
