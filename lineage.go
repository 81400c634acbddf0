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

// IsFor reports whether organ may handle this event: true unless the event is a retried
// copy meant for other organs only (its [Metadata] Targets name the organs it is for).
func (ev Event) IsFor(organ string) bool {
	if ev.e == nil || len(ev.e.meta.Targets) == 0 {
		return true
	}
	return slices.Contains(ev.e.meta.Targets, organ)
}

// IsForAll reports whether every organ that listens to the event's type may handle it:
// true unless the event is a retried copy meant for some organs only (see [Event.IsFor]).
func (ev Event) IsForAll() bool { return ev.e == nil || len(ev.e.meta.Targets) == 0 }

// ChildOf returns a copy of ev stamped as a child of parent: the correlation id of
// parent's chain, parent's id as causation id, parent's depth + 1, attempt 1. The trace
// context ev was created with is kept; when it has none it inherits parent's. ev keeps
// its id. ChildOf records by hand that one event caused another; the Spine stamps the
// events organs emit with [Event.EmittedBy]. It validates nothing, since both events are
// valid already.
func (ev Event) ChildOf(parent Event) Event {
	return ev.stampChild(parent, TraceContext{}, false, "", 0)
}

// EmittedBy returns ev stamped as the index-th event organ emitted while handling parent,
// in the span whose trace context is tc. The Spine calls it on every event an organ
// emits. The lineage is that of [Event.ChildOf], with two differences:
//   - when ev's id was generated (by [NewEvent] or a [Draft] without an ID), the copy has
//     the id [DeriveID] gives for parent, organ and index, so that a handling that is
//     repeated emits the same ids; an id the caller chose is kept;
//   - a child without a trace context of its own is created in tc, the context of the
//     span that handled parent, rather than in parent's. A zero tc keeps parent's.
func (ev Event) EmittedBy(parent Event, organ string, index int, tc TraceContext) Event {
	return ev.stampChild(parent, tc, true, organ, index)
}

// stampChild is the one place lineage is stamped on a child, for ChildOf and EmittedBy.
// The trace context is ev's own, else tc, else parent's; with derive set, a generated id
// is replaced by the one DeriveID gives for parent, organ and index.
func (ev Event) stampChild(parent Event, tc TraceContext, derive bool, organ string, index int) Event {
	if ev.e == nil || parent.e == nil {
		return ev
	}
	c := ev.e.clone()
	trace := TraceContext{Parent: c.meta.TraceParent, State: c.meta.TraceState}
	if trace.IsZero() {
		trace = tc
	}
	if trace.IsZero() {
		trace = TraceContext{Parent: parent.e.meta.TraceParent, State: parent.e.meta.TraceState}
	}
	c.meta = Metadata{
		CorrelationID: parent.Correlation(),
		CausationID:   parent.e.id,
		Depth:         parent.e.meta.Depth + 1,
		Attempt:       1,
		TraceParent:   trace.Parent,
		TraceState:    trace.State,
	}
	if derive && c.generatedID() {
		deriveID(&c.idBuf, parent.e.id, organ, index)
	}
	return Event{c}
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
