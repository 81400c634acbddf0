package necro_test

import (
	"testing"

	"github.com/necrostack/necro"
)

// TestChildTraceContext checks where a child's trace context comes from: its own when it
// was created in one, else the context of the span that emitted it (EmittedBy's tc), else
// its parent's.
func TestChildTraceContext(t *testing.T) {
	own := necro.TraceContext{Parent: "00-11111111111111111111111111111111-1111111111111111-01", State: "own=1"}
	span := necro.TraceContext{Parent: "00-22222222222222222222222222222222-2222222222222222-01", State: "span=1"}
	inherited := necro.TraceContext{Parent: "00-33333333333333333333333333333333-3333333333333333-01", State: "parent=1"}
	tests := []struct {
		name              string
		own, span, parent necro.TraceContext
		childOf, emitted  necro.TraceContext
	}{
		{"own context kept", own, span, inherited, own, own},
		{"span's context over the parent's", necro.TraceContext{}, span, inherited, inherited, span},
		{"parent's when no span", necro.TraceContext{}, necro.TraceContext{}, inherited, inherited, inherited},
		{"a state without a parent is no context", necro.TraceContext{State: "x=1"}, necro.TraceContext{State: "y=1"}, inherited, inherited, inherited},
		{"none anywhere", necro.TraceContext{}, necro.TraceContext{}, necro.TraceContext{}, necro.TraceContext{}, necro.TraceContext{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := build(t, necro.Draft{Type: "parent", Meta: necro.Metadata{TraceParent: tt.parent.Parent, TraceState: tt.parent.State}})
			ev := build(t, necro.Draft{Type: "child", Meta: necro.Metadata{TraceParent: tt.own.Parent, TraceState: tt.own.State}})
			if got := ev.ChildOf(parent).TraceContext(); got != tt.childOf {
				t.Errorf("ChildOf().TraceContext() = %+v, want %+v", got, tt.childOf)
			}
			if got := ev.EmittedBy(parent, "organ", 0, tt.span).TraceContext(); got != tt.emitted {
				t.Errorf("EmittedBy(tc %+v).TraceContext() = %+v, want %+v", tt.span, got, tt.emitted)
			}
		})
	}
}

// TestChildLineage checks the lineage ChildOf and EmittedBy stamp, and that ChildOf keeps
// a generated id where EmittedBy derives one.
func TestChildLineage(t *testing.T) {
	root := newEvent(t, "root", nil)
	parent := build(t, necro.Draft{Type: "parent", Meta: necro.Metadata{CorrelationID: root.ID(), CausationID: root.ID(),
		Depth: 4, Attempt: 3, Targets: []string{"billing"}}})
	ev := newEvent(t, "child", nil)
	want := necro.Metadata{CorrelationID: root.ID(), CausationID: parent.ID(), Depth: 5, Attempt: 1}
	for _, c := range []struct {
		how    string
		got    necro.Event
		wantID string
	}{
		{"ChildOf", ev.ChildOf(parent), ev.ID()},
		{"EmittedBy", ev.EmittedBy(parent, "organ", 1, necro.TraceContext{}), necro.DeriveID(parent.ID(), "organ", 1)},
	} {
		if m := c.got.Meta(); m.CorrelationID != want.CorrelationID || m.CausationID != want.CausationID || m.Depth != want.Depth ||
			m.Attempt != want.Attempt || m.Targets != nil {
			t.Errorf("%s: Meta() = %+v, want %+v", c.how, m, want)
		}
		if c.got.ID() != c.wantID || c.got.Type() != "child" {
			t.Errorf("%s: ID(), Type() = %s, %s; want %s, child", c.how, c.got.ID(), c.got.Type(), c.wantID)
		}
	}
	if m := ev.Meta(); m.Depth != 0 || m.CausationID != "" {
		t.Errorf("stamping changed the original: %+v", m)
	}
	var zero necro.Event
	if !zero.ChildOf(parent).IsZero() || !zero.EmittedBy(parent, "organ", 0, necro.TraceContext{}).IsZero() {
		t.Error("a zero Event stamped as a child is no longer zero")
	}
	if got := ev.ChildOf(zero); !got.Equal(ev) {
		t.Errorf("ChildOf(zero Event) = %v %+v, want ev unchanged", got, got.Meta())
	}
}
