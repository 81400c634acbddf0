package necro

import "unsafe"

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

// clone copies the event. A generated id lives in the event's own buffer; the copy's id
// must point into the copy's buffer, or every copy would keep the original alive.
func (e *event) clone() *event {
	c := *e
	if e.generatedID() {
		c.id = unsafe.String(&c.idBuf[0], len(c.idBuf))
	}
	return &c
}

// Targeted reports whether ev is a retried copy meant only for some organs (see
// [Event.Targets]).
func (ev Event) Targeted() bool { return ev.e != nil && len(ev.e.meta.Targets) > 0 }
