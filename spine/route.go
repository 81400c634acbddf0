package spine

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
)

// UnroutedPolicy says what becomes of an event that no live worker routes: no organ
// mounted here or on another live worker of the store's roster listens to its type.
type UnroutedPolicy int

const (
	// UnroutedAck acks the event and counts it (Stats.Unrouted), logging the first of
	// each type; Python NecroStack does the same. The default.
	UnroutedAck UnroutedPolicy = iota
	// UnroutedDeadLetter writes the event to the dead-letter store with the reason
	// "unrouted", so that it can be replayed once a worker routes its type.
	UnroutedDeadLetter
)

func (p UnroutedPolicy) String() string {
	switch p {
	case UnroutedAck:
		return "ack"
	case UnroutedDeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("UnroutedPolicy(%d)", int(p))
}

// Dead-letter reasons of routing.
const (
	reasonUnrouted    = "unrouted"
	reasonNoSuchOrgan = "organ not mounted"
)

// maxUnroutedLogged bounds the event types whose first unrouted event is logged, so
// that producers sending ever new types cannot grow a worker's memory through it.
const maxUnroutedLogged = 1024

// How a run keeps its view of the roster fresh. It reads the roster every rosterPoll.
// A decision that an event is unrouted, or that an organ it is targeted at is mounted
// nowhere, is final only with a reading at most rosterStale old; with an older one the
// event waits (it is nacked) for a fresh one. And a worker that joins a group whose
// live workers do not serve some of its organs waits joinWait before its first pull.
// The three together mean that an event emitted by a worker is never found unrouted
// for want of that worker on another's roster: by the time it emits, every worker's
// fresh reading holds it.
const (
	rosterPoll  = 250 * time.Millisecond
	rosterStale = time.Second
	joinWait    = 2 * time.Second
)

// routing is what a run knows of the other live workers of its store: which of the
// organs they mount are not mounted here, per event type. The coordinator reads it
// through run.routes; a new reading replaces it whole.
type routing struct {
	at time.Time // when the store read the roster
	// remote lists, per event type, the organs that listen to it on another live
	// worker and not here, sorted; empty when every live worker serves what this one does.
	remote map[string][]string
	// holders lists the other live workers that mount an organ listening to a type.
	holders map[organType][]string
	others  bool // other live workers are on the roster
}

type organType struct{ organ, typ string }

// newRouting builds the routing of a roll; local tells whether an organ mounted here
// listens to a type.
func newRouting(roll backend.Roll, local map[organType]bool) *routing {
	rt := &routing{at: roll.At, remote: map[string][]string{}, holders: map[organType][]string{}}
	for _, m := range roll.Members {
		if m.Self {
			continue
		}
		rt.others = true
		for _, o := range m.Organs {
			for _, typ := range o.Types {
				k := organType{o.Organ, typ}
				rt.holders[k] = append(rt.holders[k], m.Name)
				if !local[k] && !slices.Contains(rt.remote[typ], o.Organ) {
					rt.remote[typ] = append(rt.remote[typ], o.Organ)
				}
			}
		}
	}
	for _, organs := range rt.remote {
		slices.Sort(organs)
	}
	return rt
}

// fateKind says how a delivery is routed, beside the organs mounted here.
type fateKind uint8

const (
	fateHandle   fateKind = iota // handled by the organs here (perhaps none: unrouted)
	fateHandoff                  // none of its organs is here: passed to another worker
	fateDeferred                 // cannot be decided without a fresh roster: nacked
)

// A fate is the routing of one delivery beyond the organs mounted here. The zero fate
// means: handle it here, and nothing else.
type fate struct {
	kind fateKind
	to   string // the worker a handoff passes it to
	// forward lists organs mounted only on other workers: a copy targeted at them goes
	// back to the store with the delivery's settlement.
	forward []string
	// lost lists organs the event is targeted at that no live worker mounts: each gets
	// a dead letter naming it.
	lost []string
}

// route decides where a delivery goes: the organs mounted here that take it, in mount
// order, and its fate beyond them.
func (c *coordinator) route(ev necro.Event, rt *routing) ([]int, fate) {
	s := c.r.s
	typ := ev.Type()
	organs := s.routes[typ]
	var missing []string
	if !ev.IsForAll() {
		organs = c.targeted(organs, ev)
		missing = c.targetsElsewhere(ev, organs)
	} else if rt != nil {
		missing = rt.remote[typ]
	}
	if len(missing) == 0 && len(organs) > 0 {
		return organs, fate{}
	}
	if !c.r.roster {
		// This process is the store's only worker: what is not mounted here is mounted
		// nowhere.
		return organs, fate{lost: missing}
	}
	var f fate
	f.forward, f.lost = rt.mountedElsewhere(typ, missing)
	if len(organs) == 0 && len(f.forward) > 0 {
		return nil, fate{kind: fateHandoff, to: pickHolder(ev.ID(), typ, f.forward, rt)}
	}
	unrouted := len(organs) == 0 && len(f.forward) == 0 && len(f.lost) == 0
	if (unrouted || len(f.lost) > 0) && (rt == nil || time.Since(rt.at) > rosterStale) {
		// Mounted nowhere, says a reading too old to be sure: a worker may have joined
		// since. It waits and comes back.
		return nil, fate{kind: fateDeferred}
	}
	return organs, f
}

// mountedElsewhere splits organs not mounted here, for events of type typ, into those
// another live worker mounts and those no live worker does, as far as rt knows; a nil
// rt knows of none.
func (rt *routing) mountedElsewhere(typ string, organs []string) (mounted, lost []string) {
	for _, o := range organs {
		if rt != nil && len(rt.holders[organType{o, typ}]) > 0 {
			mounted = append(mounted, o)
		} else {
			lost = append(lost, o)
		}
	}
	return mounted, lost
}

// targetsElsewhere lists the organs a targeted event is meant for that are not among
// the organs here that take it, each once, in the order of its targets.
func (c *coordinator) targetsElsewhere(ev necro.Event, here []int) []string {
	var missing []string
	for _, t := range ev.Meta().Targets {
		if !slices.ContainsFunc(here, func(o int) bool { return c.organs[o].name == t }) && !slices.Contains(missing, t) {
			missing = append(missing, t)
		}
	}
	return missing
}

// pickHolder chooses the worker to hand an event to: one that mounts the most of the
// organs it is for, and among those, one chosen by the event's id, so that the events
// spread over them.
func pickHolder(id, typ string, organs []string, rt *routing) string {
	covers := map[string]int{}
	for _, o := range organs {
		for _, w := range rt.holders[organType{o, typ}] {
			covers[w]++
		}
	}
	best, bestN, bestScore := "", 0, uint64(0)
	for w, n := range covers {
		h := fnv.New64a()
		h.Write([]byte(id))
		h.Write([]byte{0})
		h.Write([]byte(w))
		score := h.Sum64()
		if n > bestN || n == bestN && (score > bestScore || score == bestScore && w < best) {
			best, bestN, bestScore = w, n, score
		}
	}
	return best
}

// settleRouting adds to a settlement what its fate asks beyond the organs here: the
// copy for organs on other workers and the dead letters of targeted organs nobody
// mounts. It reports whether it settled the delivery whole (a handoff, a deferral or
// an unrouted event), in which case there is nothing to handle.
func (c *coordinator) settleRouting(st *backend.Settlement, rec *record, now time.Time) bool {
	ev := rec.d.Event
	stats := c.r.stats
	switch rec.fate.kind {
	case fateHandoff:
		st.Outcome, st.To = backend.Handoff, rec.fate.to
		stats.handedOff.Add(1)
		if c.debug {
			c.log.DebugContext(c.r.ctx, "no organ here; handed to a worker that routes it", slog.String("event_id", ev.ID()),
				slog.String("event_type", ev.Type()), slog.String("to", rec.fate.to))
		}
		return true
	case fateDeferred:
		st.Outcome = backend.Nack
		stats.deferred.Add(1)
		if !c.deferLogged {
			c.deferLogged = true
			c.log.WarnContext(c.r.ctx, "no fresh reading of the store's roster; an event this worker cannot route alone waits for one (logged once per run)",
				slog.String("event_type", ev.Type()), slog.Any("event", ev))
		}
		return true
	}
	if len(rec.fate.forward) > 0 {
		st.Retries = append(st.Retries, backend.Retry{Event: ev.Retry(ev.Attempt(), rec.fate.forward...)})
		stats.forwarded.Add(1)
	}
	for _, o := range rec.fate.lost {
		st.DeadLetters = append(st.DeadLetters, backend.DeadLetter{Event: ev.Retry(ev.Attempt(), o), Organ: o,
			Attempts: 0, Error: fmt.Sprintf("the event is targeted at organ %q, which no live worker mounts", o),
			Reason: reasonNoSuchOrgan, At: now, Receipt: rec.d.Receipt})
	}
	if len(rec.organs) > 0 || len(rec.fate.lost) > 0 {
		return false
	}
	stats.unrouted.Add(1)
	typ := ev.Type()
	if _, seen := c.unroutedLog[typ]; !seen && len(c.unroutedLog) < maxUnroutedLogged {
		c.unroutedLog[typ] = struct{}{}
		what := "no organ listens to this event type; acked"
		if c.r.roster {
			what = "no live worker routes this event type; acked"
		}
		if c.r.cfg.Unrouted == UnroutedDeadLetter {
			what = what[:len(what)-len("acked")] + "dead-lettered"
		}
		c.log.WarnContext(c.r.ctx, what, slog.String("event_type", typ), slog.String("unrouted", c.r.cfg.Unrouted.String()))
	}
	if c.r.cfg.Unrouted == UnroutedDeadLetter {
		st.DeadLetters = append(st.DeadLetters, backend.DeadLetter{Event: ev, Attempts: 0,
			Error: fmt.Sprintf("no live worker mounts an organ that listens to type %q", typ), Reason: reasonUnrouted,
			At: now, Receipt: rec.d.Receipt})
	}
	return true
}

// announce puts this worker on the store's roster and reads the roster, before the
// first pull. When other live workers do not serve some of the organs mounted here, it
// then waits joinWait, so that every other worker reads the roster again before this
// one emits an event that only it routes. A store that cannot answer now is logged;
// the heartbeat and the watcher try again.
func (r *run) announce(ro backend.Roster) {
	defer r.joining.Store(false)
	if err := ro.Announce(r.ctx, r.s.served); err != nil {
		r.stats.backendErrors.Add(1)
		r.log.WarnContext(r.ctx, "announcing this worker on the store's roster failed; trying again", slog.Any("err", err))
	}
	if !r.readRoster(ro) || !r.brings() {
		return
	}
	r.log.InfoContext(r.ctx, "joined a group whose live workers do not serve every organ mounted here; waiting for them to see this worker",
		slog.Duration("wait", joinWait))
	sleep(r.pullCtx, joinWait)
}

// brings reports whether other workers are live and some organ mounted here, with some
// type it listens to, is mounted by none of them.
func (r *run) brings() bool {
	rt := r.routes.Load()
	if rt == nil || !rt.others {
		return false
	}
	for k := range r.s.localRoutes {
		if len(rt.holders[k]) == 0 {
			return true
		}
	}
	return false
}

// readRoster replaces the routing with a fresh reading of the roster.
func (r *run) readRoster(ro backend.Roster) bool {
	roll, err := ro.Roll(r.ctx)
	if err != nil {
		return false
	}
	r.routes.Store(newRouting(roll, r.s.localRoutes))
	return true
}

// watchRoster reads the roster every rosterPoll until the run stops pulling.
func (r *run) watchRoster(ro backend.Roster) {
	failing := false
	for sleep(r.pullCtx, rosterPoll) {
		ok := r.readRoster(ro)
		switch {
		case !ok && !failing:
			failing = true
			r.log.WarnContext(r.ctx, "reading the store's roster failed; routing uses the last reading")
		case ok && failing:
			failing = false
			r.log.InfoContext(r.ctx, "the store's roster can be read again")
		}
	}
}

// withdraw takes this worker off the roster as it stops pulling, so that the others
// hand it nothing more.
func (r *run) withdraw(ro backend.Roster) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 2*time.Second)
	defer cancel()
	if err := ro.Withdraw(ctx); err != nil {
		r.log.WarnContext(r.ctx, "leaving the store's roster failed; the others see this worker gone after its heartbeats stop",
			slog.Any("err", err))
	}
}
