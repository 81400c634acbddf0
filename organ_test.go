package necro_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/necrostack/necro"
)

// listener is an Organ with a fixed listens-to list that handles nothing.
type listener []string

func (l listener) ListensTo() []string { return l }

func (l listener) Handle(context.Context, necro.Event) ([]necro.Event, error) {
	return nil, nil
}

func noop(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil }

func TestMountValidateName(t *testing.T) { // B2
	rapid.Check(t, func(rt *rapid.T) {
		name := rapid.StringN(1, 50, -1).Filter(func(s string) bool { return strings.TrimSpace(s) != "" }).Draw(rt, "name")
		m := necro.Mount{Name: name, Organ: necro.NewOrgan([]string{"A"}, noop)}
		if _, err := m.Validate(); err != nil {
			rt.Fatalf("Mount{Name: %q}.Validate() = %v, want accepted", name, err)
		}
		if m.Name != name {
			rt.Fatalf("Name = %q, want %q", m.Name, name)
		}
	})
}

func TestMountValidateBlankName(t *testing.T) {
	for _, name := range []string{"", " ", "\t\n", "\u00a0"} {
		m := necro.Mount{Name: name, Organ: necro.NewOrgan([]string{"A"}, noop)}
		if _, err := m.Validate(); !errors.Is(err, necro.ErrInvalidOrgan) || !strings.Contains(err.Error(), "name") {
			t.Errorf("Mount{Name: %q}.Validate() = %v, want ErrInvalidOrgan about the name", name, err)
		}
	}
}

func TestMountValidateRejects(t *testing.T) { // B3
	organ := necro.NewOrgan([]string{"A"}, noop)
	tests := []struct {
		name  string
		mount necro.Mount
		want  string // in the error text
	}{
		{"neither organ nor factory", necro.Mount{Name: "m"}, "exactly one"},
		{"both organ and factory", necro.Mount{Name: "m", Organ: organ, Factory: func() necro.Organ { return organ }}, "exactly one"},
		{"factory returns nil", necro.Mount{Name: "m", Factory: func() necro.Organ { return nil }}, "nil"},
		{"empty listens_to entry", necro.Mount{Name: "m", Organ: listener{"A", ""}}, "listens_to"},
		{"blank listens_to entry", necro.Mount{Name: "m", Organ: listener{" \t"}}, "listens_to"},
		{"blank entry from factory", necro.Mount{Name: "m", Factory: func() necro.Organ { return listener{"A", "B", "\n"} }}, "listens_to"},
		{"listens_to entry too long", necro.Mount{Name: "m", Organ: listener{"A", strings.Repeat("t", necro.MaxTypeBytes+1)}}, "MaxTypeBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			types, err := tt.mount.Validate()
			if !errors.Is(err, necro.ErrInvalidOrgan) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %q, %v; want ErrInvalidOrgan mentioning %q", types, err, tt.want)
			}
			if types != nil {
				t.Errorf("Validate() types = %q, want nil with the error", types)
			}
		})
	}
}

func TestMountValidateAcceptsListensTo(t *testing.T) { // B5
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nil", nil, nil},
		{"empty", []string{}, nil},
		{"one", []string{"A"}, []string{"A"}},
		{"two", []string{"A", "B"}, []string{"A", "B"}},
		{"five", []string{"A", "B", "C", "D", "E"}, []string{"A", "B", "C", "D", "E"}},
		{"trimmed", []string{" A ", "\tB\n"}, []string{"A", "B"}},
	}
	for _, tt := range tests {
		for _, m := range []necro.Mount{
			{Name: tt.name, Organ: necro.NewOrgan(tt.in, noop)},
			{Name: tt.name, Organ: listener(tt.in)},
			{Name: tt.name, Factory: func() necro.Organ { return listener(tt.in) }},
		} {
			got, err := m.Validate()
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate() of %q = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		}
	}
}

func TestMountInstance(t *testing.T) {
	organ := &counter{}
	if got := (necro.Mount{Name: "m", Organ: organ}).Instance(); got != organ {
		t.Errorf("Instance() = %p, want the mounted organ %p", got, organ)
	}
	calls := 0
	m := necro.Mount{Name: "m", Factory: func() necro.Organ {
		calls++
		return &counter{}
	}}
	a, b := m.Instance(), m.Instance()
	if calls != 2 || a == b {
		t.Errorf("Instance() twice: %d factory calls, same organ %v; want 2 calls and fresh organs", calls, a == b)
	}
}

// counter is a stateful organ, the kind a Factory builds.
type counter struct{ n int }

func (c *counter) ListensTo() []string { return []string{"TICK"} }

func (c *counter) Handle(context.Context, necro.Event) ([]necro.Event, error) {
	c.n++
	return nil, nil
}

func TestNewOrganCopiesListensTo(t *testing.T) {
	types := []string{"A", "B"}
	o := necro.NewOrgan(types, noop)
	types[0] = "changed"
	got := o.ListensTo()
	if !reflect.DeepEqual(got, []string{"A", "B"}) {
		t.Fatalf("ListensTo() = %q after changing the caller's slice, want [A B]", got)
	}
	got[1] = "changed too"
	if again := o.ListensTo(); !reflect.DeepEqual(again, []string{"A", "B"}) {
		t.Errorf("ListensTo() = %q after changing a returned slice, want [A B]", again)
	}
}

func TestNewOrganHandleCallsThrough(t *testing.T) {
	in, err := necro.NewEvent("PING", map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := necro.NewEvent("PONG", nil)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{}
	ctx := context.WithValue(t.Context(), key{}, "v")
	wantErr := errors.New("boom")
	var gotEv necro.Event
	var gotCtx context.Context
	f := func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		gotCtx, gotEv = ctx, ev
		return []necro.Event{out}, wantErr
	}
	handlers := map[string]interface {
		Handle(context.Context, necro.Event) ([]necro.Event, error)
	}{
		"NewOrgan":  necro.NewOrgan([]string{"PING"}, f),
		"OrganFunc": necro.OrganFunc(f),
	}
	for name, h := range handlers {
		gotEv, gotCtx = necro.Event{}, nil
		evs, err := h.Handle(ctx, in)
		if len(evs) != 1 || !evs[0].Equal(out) || err != wantErr {
			t.Errorf("%s: Handle() = %v, %v; want [%v], %v", name, evs, err, out, wantErr)
		}
		if !gotEv.Equal(in) || gotCtx == nil || gotCtx.Value(key{}) != "v" {
			t.Errorf("%s: Handle() passed %v and another context, want %v and the caller's context", name, gotEv, in)
		}
	}
}
