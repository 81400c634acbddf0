package spine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// Per-organ policies: each organ retries and times out by its own policy, and the
// others keep the Spine's.
func TestOrganPoliciesOverrideTheSpine(t *testing.T) {
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	fail := func(context.Context, necro.Event) ([]necro.Event, error) { return nil, errors.New("always") }
	waitCtx := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
		deadline, _ := ctx.Deadline()
		if until := time.Until(deadline); until > 5*time.Second {
			return nil, necro.Permanent(errors.New("deadline too far: the organ's own timeout was not applied"))
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	mounts := []necro.Mount{
		{Name: "once", Organ: necro.NewOrgan([]string{"job"}, fail)},
		{Name: "five", Organ: necro.NewOrgan([]string{"job"}, fail)},
		{Name: "default", Organ: necro.NewOrgan([]string{"job"}, fail)},
		{Name: "quick", Organ: necro.NewOrgan([]string{"job"}, waitCtx)},
	}
	tiny := supervision.Backoff{Base: time.Microsecond, Max: time.Microsecond, Jitter: supervision.NoJitter}
	sp, err := spine.New(q, mounts, spine.Config{
		Retry: supervision.RetryPolicy{MaxAttempts: 2, Backoff: tiny},
		Organs: map[string]spine.OrganPolicy{
			"once":  {Retry: supervision.RetryPolicy{MaxAttempts: 1}},
			"five":  {Retry: supervision.RetryPolicy{MaxAttempts: 5, Backoff: tiny}},
			"quick": {HandlerTimeout: 50 * time.Millisecond, Retry: supervision.RetryPolicy{MaxAttempts: 1}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := necro.NewEvent("job", nil)
	if err := q.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	st := sp.Stats()
	want := map[string]int64{"once": 1, "five": 5, "default": 2, "quick": 1}
	for organ, n := range want {
		if st.HandlerErrors[organ] != n {
			t.Errorf("HandlerErrors[%s] = %d, want %d (all: %v)", organ, st.HandlerErrors[organ], n, st.HandlerErrors)
		}
	}
	if st.Timeouts != 1 {
		t.Errorf("Timeouts = %d, want 1: quick's 50ms timeout", st.Timeouts)
	}
	dls, err := q.DeadLetters(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		if dl.Organ == "quick" && dl.Error != "necro: handler timed out after 50ms" {
			t.Errorf("quick's dead letter says %q, want the 50ms timeout", dl.Error)
		}
	}
	if len(dls) != 4 {
		t.Errorf("%d dead letters, want one per organ", len(dls))
	}
}

func TestOrganPoliciesMustNameMountedOrgans(t *testing.T) {
	q, _ := memory.New(memory.Config{})
	mounts := []necro.Mount{{Name: "a", Organ: necro.NewOrgan([]string{"x"}, func(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil })}}
	for _, tt := range []struct {
		name string
		p    map[string]spine.OrganPolicy
	}{
		{"unknown organ", map[string]spine.OrganPolicy{"b": {}}},
		{"negative timeout", map[string]spine.OrganPolicy{"a": {HandlerTimeout: -time.Second}}},
		{"invalid retry", map[string]spine.OrganPolicy{"a": {Retry: supervision.RetryPolicy{MaxAttempts: -1}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := spine.New(q, mounts, spine.Config{Organs: tt.p}); !errors.Is(err, spine.ErrInvalidConfig) {
				t.Errorf("New() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}
