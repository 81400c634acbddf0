package necro_test

import (
	"fmt"
	"testing"

	"github.com/necrostack/necro"
)

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

// TestIsFor checks which organs may handle an event: every organ unless the event is a
// retried copy for some organs only.
func TestIsFor(t *testing.T) {
	ev := newEvent(t, "order.placed", nil)
	tests := []struct {
		name   string
		ev     necro.Event
		forAll bool
		organs map[string]bool
	}{
		{"zero Event", necro.Event{}, true, map[string]bool{"billing": true}},
		{"first delivery", ev, true, map[string]bool{"billing": true, "audit": true}},
		{"retried for billing", ev.Retry(2, "billing"), false, map[string]bool{"billing": true, "audit": false}},
		{"retried for two", ev.Retry(2, "billing", "audit"), false, map[string]bool{"billing": true, "audit": true, "mail": false}},
		{"retried for none", ev.Retry(2), true, map[string]bool{"billing": true}},
	}
	for _, tt := range tests {
		if got := tt.ev.IsForAll(); got != tt.forAll {
			t.Errorf("%s: IsForAll() = %v, want %v", tt.name, got, tt.forAll)
		}
		for organ, want := range tt.organs {
			if got := tt.ev.IsFor(organ); got != want {
				t.Errorf("%s: IsFor(%q) = %v, want %v", tt.name, organ, got, want)
			}
		}
	}
}

func TestEmittedByDerivesGeneratedIDsOnly(t *testing.T) {
	parent, err := necro.NewEvent("parent", nil)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := necro.NewEvent("child", map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	genID := gen.ID()
	got := gen.EmittedBy(parent, "A", 2, necro.TraceContext{})
	if want := necro.DeriveID(parent.ID(), "A", 2); got.ID() != want {
		t.Errorf("EmittedBy gave id %s, want DeriveID's %s", got.ID(), want)
	}
	if gen.ID() != genID {
		t.Errorf("EmittedBy changed the original event's id from %s to %s", genID, gen.ID())
	}
	if m := got.Meta(); m.CausationID != parent.ID() || m.Depth != 1 || got.Correlation() != parent.ID() {
		t.Errorf("EmittedBy lineage = %+v, want the lineage ChildOf stamps", m)
	}
	const chosen = "650e8400-e29b-41d4-a716-446655440000"
	own, err := necro.Draft{ID: chosen, Type: "child"}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if got := own.EmittedBy(parent, "A", 0, necro.TraceContext{}); got.ID() != chosen {
		t.Errorf("EmittedBy replaced the caller's id %s with %s", chosen, got.ID())
	}
	decoded, err := necro.DecodeEvent([]byte(`{"id":"` + chosen + `","timestamp":"2025-01-15T10:30:45+00:00","event_type":"x","payload":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := decoded.EmittedBy(parent, "A", 0, necro.TraceContext{}); got.ID() != chosen {
		t.Errorf("EmittedBy replaced a decoded event's id %s with %s", chosen, got.ID())
	}
}

// EmittedBy is what the Spine does to every event an organ emits: it stamps the lineage
// and, for an id the event generated itself, derives the id from the parent, the organ
// and the index, so that a handling that is repeated emits the same ids.
func ExampleEvent_EmittedBy() {
	order, err := necro.Draft{ID: "550e8400-e29b-41d4-a716-446655440000", Type: "order.placed"}.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	reserved, err := necro.NewEvent("stock.reserved", map[string]any{"sku": "kbd-01"})
	if err != nil {
		fmt.Println(err)
		return
	}

	first := reserved.EmittedBy(order, "inventory", 0, necro.TraceContext{})
	again := reserved.EmittedBy(order, "inventory", 0, necro.TraceContext{}) // the same handling, repeated
	fmt.Println(first.ID())
	fmt.Println(again.ID() == first.ID(), first.ID() == necro.DeriveID(order.ID(), "inventory", 0))
	m := first.Meta()
	fmt.Println(m.CorrelationID, m.CausationID == order.ID(), m.Depth)

	// Down the chain the correlation id stays the root's.
	paid, err := necro.NewEvent("payment.captured", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	paid = paid.EmittedBy(first, "billing", 0, necro.TraceContext{})
	fmt.Println(paid.Correlation(), paid.Depth())

	// An id the organ chose is kept.
	chosen, err := necro.Draft{ID: "6ba7b810-9dad-41d1-80b4-00c04fd430c8", Type: "audit.logged"}.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(chosen.EmittedBy(order, "audit", 0, necro.TraceContext{}).ID())
	// Output:
	// 13b4963e-bd94-47b9-b5bb-a481c0a44d5a
	// true true
	// 550e8400-e29b-41d4-a716-446655440000 true 1
	// 550e8400-e29b-41d4-a716-446655440000 2
	// 6ba7b810-9dad-41d1-80b4-00c04fd430c8
}
