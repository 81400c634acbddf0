package necro

import "slices"

// Correlation returns the correlation id of the chain: the root's id.
func (ev Event) Correlation() string {
	if ev.e == nil {
		return ""
	}
	if ev.e.meta.CorrelationID != "" {
		return ev.e.meta.CorrelationID
	}
	return ev.e.id
}

// Depth returns the event's depth in its causal chain, 0 for a root.
func (ev Event) Depth() int {
	if ev.e == nil {
		return 0
	}
	return ev.e.meta.Depth
}

// Attempt returns the event's attempt number, 1 for a first delivery.
func (ev Event) Attempt() int {
	if ev.e == nil {
		return 1
	}
	return ev.e.meta.Attempt
}

// Targets reports whether organ may handle this event: true unless the event is a
// retried copy meant for other organs only.
func (ev Event) Targets(organ string) bool {
	if ev.e == nil || len(ev.e.meta.Targets) == 0 {
		return true
	}
	return slices.Contains(ev.e.meta.Targets, organ)
}

// Targeted reports whether ev is a retried copy meant only for some organs (see
// [Event.Targets]).
func (ev Event) Targeted() bool { return ev.e != nil && len(ev.e.meta.Targets) > 0 }

// ChildOf returns a copy of ev stamped as a child of parent: the correlation id of
// parent's chain, parent's id as causation id, parent's depth + 1, attempt 1. The trace
// context ev was created with is kept; when it has none it inherits parent's. The
// Spine calls it on every event an organ emits; it validates nothing, since both events
// are valid already.
func (ev Event) ChildOf(parent Event) Event {
	if ev.e == nil || parent.e == nil {
		return ev
	}
	c := ev.e.clone()
	tp, ts := c.meta.TraceParent, c.meta.TraceState
	if tp == "" {
		tp, ts = parent.e.meta.TraceParent, parent.e.meta.TraceState
	}
	c.meta = Metadata{
		CorrelationID: parent.Correlation(),
		CausationID:   parent.e.id,
		Depth:         parent.e.meta.Depth + 1,
		Attempt:       1,
		TraceParent:   tp,
		TraceState:    ts,
	}
	return Event{c}
}

// EmittedBy returns ev stamped as the index-th event organ emitted while handling parent:
// the lineage of [Event.ChildOf] and, when ev's id was generated (by [NewEvent] or a
// [Draft] without an ID), the id [DeriveID] gives. An id the caller chose is kept. The
// Spine calls it on every event an organ emits.
func (ev Event) EmittedBy(parent Event, organ string, index int) Event {
	c := ev.ChildOf(parent) // a fresh copy, unless ev or parent is the zero Event
	if c.e == nil || parent.e == nil || !c.e.generatedID() {
		return c
	}
	deriveID(&c.e.idBuf, parent.e.id, organ, index)
	return c
}

// EmittedIn is [Event.EmittedBy] for a child emitted inside a traced handling: a child
// without a trace context of its own is created in tc, the context of the span that
// handled parent, rather than in parent's. A zero tc keeps EmittedBy's rule.
func (ev Event) EmittedIn(tc TraceContext, parent Event, organ string, index int) Event {
	c := ev.EmittedBy(parent, organ, index) // a fresh copy unless ev or parent is zero
	if c.e == nil || parent.e == nil || tc.IsZero() || ev.e.meta.TraceParent != "" {
		return c
	}
	c.e.meta.TraceParent, c.e.meta.TraceState = tc.Parent, tc.State
	return c
}

// Retry returns a copy of ev for another handling attempt by the given organs only:
// attempt set to attempt, Targets to organs, all other lineage kept. The organ names are
// taken as they are: they must be mounted names, which are never blank.
func (ev Event) Retry(attempt int, organs ...string) Event {
	if ev.e == nil {
		return ev
	}
	c := ev.e.clone()
	c.meta.Attempt = max(attempt, 1)
	c.meta.Targets = append([]string(nil), organs...)
	if len(c.meta.Targets) == 0 {
		c.meta.Targets = nil
	}
	return Event{c}
}
