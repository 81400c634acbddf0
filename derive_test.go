package necro_test

import (
	"testing"

	"github.com/necrostack/necro"
)

func TestDeriveIDIsStableAndDistinct(t *testing.T) {
	parent := "550e8400-e29b-41d4-a716-446655440000"
	a := necro.DeriveID(parent, "organ", 0)
	if b := necro.DeriveID(parent, "organ", 0); a != b {
		t.Fatalf("DeriveID is not stable: %s then %s", a, b)
	}
	seen := map[string]string{a: "organ/0"}
	type input struct {
		parent, organ string
		index         int
	}
	others := []input{{parent, "organ", 1}, {parent, "organ2", 0}, {"650e8400-e29b-41d4-a716-446655440000", "organ", 0}, {parent, "organ", 1 << 30}}
	for _, c := range others {
		id := necro.DeriveID(c.parent, c.organ, c.index)
		if prev, dup := seen[id]; dup {
			t.Errorf("DeriveID(%s, %s, %d) = %s, the same as %s", c.parent, c.organ, c.index, id, prev)
		}
		seen[id] = c.organ
		if _, err := (necro.Draft{ID: id, Type: "t"}).Build(); err != nil {
			t.Errorf("DeriveID(%s, %s, %d) = %s is not a valid event id: %v", c.parent, c.organ, c.index, id, err)
		}
	}
	// Length prefixes keep field boundaries apart.
	if necro.DeriveID("ab", "c", 0) == necro.DeriveID("a", "bc", 0) {
		t.Error(`DeriveID("ab", "c") == DeriveID("a", "bc")`)
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
