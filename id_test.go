package necro_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/necrostack/necro"
)

var canonicalUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewEventIDsAreUniqueLowercaseV4(t *testing.T) { // A2
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 20).Draw(rt, "n")
		seen := make(map[string]bool, n)
		for range n {
			id := newEvent(t, "TEST", nil).ID()
			if !canonicalUUID.MatchString(id) {
				rt.Fatalf("ID() = %q, want a lowercase canonical UUID v4", id)
			}
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
				rt.Fatalf("uuid.Parse(%q) = version %v variant %v, %v; want version 4, RFC 4122", id, u.Version(), u.Variant(), err)
			}
			if seen[id] {
				rt.Fatalf("id %s generated twice among %d events", id, n)
			}
			seen[id] = true
		}
	})
}

func TestDraftIDAccepted(t *testing.T) { // A6, A7
	tests := []struct{ in, want string }{
		{validID, validID},
		{strings.ToUpper(validID), validID},
		{"550E8400-e29b-41D4-A716-446655440000", validID},
		{"00000000-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000"},
		{"ffffffff-ffff-4fff-bfff-ffffffffffff", "ffffffff-ffff-4fff-bfff-ffffffffffff"},
	}
	for _, tt := range tests {
		if got := build(t, necro.Draft{ID: tt.in, Type: "TEST"}).ID(); got != tt.want {
			t.Errorf("Draft{ID: %q}.Build().ID() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDraftWithoutIDGeneratesOne(t *testing.T) {
	ev := build(t, necro.Draft{Type: "TEST"})
	if !canonicalUUID.MatchString(ev.ID()) {
		t.Errorf("Draft{}.Build().ID() = %q, want a fresh UUID v4", ev.ID())
	}
}

var badIDs = []struct{ name, id string }{ // A8, A10
	{"not a uuid", "not-a-uuid"},
	{"truncated", validID[:35]},
	{"extra suffix", validID + "0"},
	{"no hyphens", strings.ReplaceAll(validID, "-", "")},
	{"non-hex digit", "g50e8400-e29b-41d4-a716-446655440000"},
	{"blank", "   "},
	{"hyphen moved", "550e840-0e29b-41d4-a716-446655440000"},
	{"braces", "{" + validID[:34] + "}"},
	{"version 1", "550e8400-e29b-11d4-a716-446655440000"},
	{"version 7", "01890a5d-ac96-774b-bcce-b302099a8057"},
	{"nil uuid", "00000000-0000-0000-0000-000000000000"},
	{"variant 0", "550e8400-e29b-41d4-0716-446655440000"},
	{"variant c", "550e8400-e29b-41d4-c716-446655440000"},
}

func TestDraftBadIDRejected(t *testing.T) { // A8, A9, A10
	for _, tt := range badIDs {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := necro.Draft{ID: tt.id, Type: "TEST"}.Build()
			if !ev.IsZero() {
				t.Errorf("Draft{ID: %q}.Build() = %v, want the zero Event", tt.id, ev)
			}
			checkInvalid(t, err, "id", "id", "UUID")
		})
	}
}

func TestDecodeEventBadIDRejected(t *testing.T) { // A8, A9, A10 on the wire
	for _, tt := range append(badIDs, struct{ name, id string }{"empty", ""}) {
		t.Run(tt.name, func(t *testing.T) {
			_, err := necro.DecodeEvent(wire(tt.id, "2025-01-15T10:30:45.123456+00:00", "TEST", "{}"))
			checkInvalid(t, err, "id", "UUID")
		})
	}
}

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
