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

// coordinator is the Spine actor's state. Only the coordinator's goroutine touches it:
// receive is the actor's behaviour.
type coordinator struct {
	r      *run
	host   *actors.Host
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

type organState struct {
	name    string
	queue   []actors.Item // items waiting for this organ, in sequence order
	busy    bool          // a batch is out and its final Done has not come back
	up      bool          // its actor announced itself Ready and has not failed since
	held    bool          // quarantined after too many abandoned calls
	benched bool          // quarantined by its restart intensity, until its actor is Ready
	seen    int64         // the latest actor incarnation heard from
	downTo  int64         // incarnations up to this one crashed or were abandoned
	// crashOpen is set between the first and the second report of a crash; see
	// crashReported.
	crashOpen bool
	history   supervision.History
}

type record struct {
	used    bool
	seq     uint64
	d       backend.Delivery
	organs  []int // the organs it was dispatched to, in mount order
	fate    fate  // where it goes beyond them
	results []actors.Result
	waiting int
}

type quarantineOver struct{ organ int }

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

// receive is the Spine actor's behaviour.
func (c *coordinator) receive(msg any) {
	switch m := msg.(type) {
	case fetched:
		c.admit(m.ds)
	case *actors.Done:
		c.done(m)
	case actors.Ready:
		o := &c.organs[m.Organ]
		o.seen = max(o.seen, m.Incarnation)
		if m.Incarnation <= o.downTo {
			break // stale: sent by an instance that has crashed or been abandoned since
		}
		if o.benched {
			o.markQuarantined()
		}
		o.up, o.benched = true, false
		c.r.health.set("organ "+o.name+" quarantined: restart intensity exceeded", false)
	case actors.Crashed:
		c.crashed(m)
	case actors.Stuck:
		c.stuck(m)
	case quarantineOver:
		c.organs[m.organ].markQuarantined()
		c.organs[m.organ].held = false
		c.r.health.set("organ "+c.organs[m.organ].name+" quarantined: too many abandoned handlers", false)
		c.log.InfoContext(c.r.ctx, "organ quarantine over", slog.String("organ", c.organs[m.organ].name))
	case abortMsg:
		c.abort()
		close(m.done)
		return
	}
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
	c.dispatch()
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
			if og.held || og.benched {
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

// dispatch sends each organ that can take work everything waiting for it.
func (c *coordinator) dispatch() {
	for i := range c.organs {
		o := &c.organs[i]
		if len(o.queue) == 0 || o.busy || !o.up || o.held {
			continue
		}
		items := o.queue
		o.queue = nil
		o.busy = true
		c.host.Dispatch(i, items)
	}
}

func (c *coordinator) done(m *actors.Done) {
	if m.Crashed {
		c.crashReported(m.Organ)
	}
	if c.aborted {
		endReleased(m.Results)
		return
	}
	o := &c.organs[m.Organ]
	c.record(m.Organ, m.Results)
	o.seen = max(o.seen, m.Incarnation)
	if m.Crashed {
		// Its Crashed may come later; until the restart, the actor must get no work.
		o.up = false
		o.downTo = max(o.downTo, m.Incarnation)
	}
	if m.Final {
		o.busy = false
	}
	if len(m.Rest) > 0 {
		o.queue = append(append([]actors.Item(nil), m.Rest...), o.queue...)
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

func (c *coordinator) crashed(m actors.Crashed) {
	c.crashReported(m.Organ)
	o := &c.organs[m.Organ]
	o.up = false
	st := c.r.stats
	now := time.Now()
	d := c.r.cfg.Restart.Decide(&o.history, now, uint64(now.UnixNano()))
	attrs := []any{slog.String("organ", o.name), slog.Any("err", m.Err), slog.Duration("delay", d.Delay),
		slog.Int("waiting", len(o.queue))}
	if d.Directive == supervision.Quarantine {
		o.benched = true
		c.r.health.set("organ "+o.name+" quarantined: restart intensity exceeded", true)
		st.quarantines.Add(1)
		st.quarantineWaits.Add(int64(len(o.queue)))
		c.log.ErrorContext(c.r.ctx, "organ quarantined: restart intensity exceeded", attrs...)
	} else {
		c.log.WarnContext(c.r.ctx, "organ panicked; restarting", attrs...)
	}
	c.host.Restart(m.Organ, d.Delay)
}

func (c *coordinator) stuck(m actors.Stuck) {
	results, rest, ok := c.host.Abandon(m)
	if !ok {
		return // it finished meanwhile
	}
	o := &c.organs[m.Organ]
	st := c.r.stats
	st.abandoned.Add(1)
	o.up, o.busy = false, false
	o.downTo = max(o.downTo, o.seen) // the replacement is a newer incarnation
	c.record(m.Organ, results)
	o.queue = append(append([]actors.Item(nil), rest...), o.queue...)
	running := c.host.Abandoned(m.Organ)
	c.log.WarnContext(c.r.ctx, "handler ignored its deadline; abandoned", slog.String("organ", o.name),
		slog.Int("abandoned_running", running))
	if running > c.r.cfg.MaxAbandoned && !o.held {
		o.held = true
		c.r.health.set("organ "+o.name+" quarantined: too many abandoned handlers", true)
		st.quarantines.Add(1)
		st.quarantineWaits.Add(int64(len(o.queue)))
		delay := c.r.cfg.Restart.Quarantine
		if delay <= 0 {
			delay = 5 * time.Second
		}
		c.log.ErrorContext(c.r.ctx, "organ quarantined: too many abandoned handlers", slog.String("organ", o.name),
			slog.Int("abandoned_running", running), slog.Duration("delay", delay), slog.Int("waiting", len(o.queue)))
		c.host.After(delay, quarantineOver{organ: m.Organ})
	}
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
