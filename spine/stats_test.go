package spine_test

import (
	"context"
	"testing"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// A run that ends right after a panic, before protoactor has reported the crash to the
// supervisor, still counts the restart that the panic calls for: when Run returns,
// Stats().Restarts equals Stats().Panics.
func TestRestartsEqualPanicsWhenRunEndsRightAfterPanic(t *testing.T) {
	for round := range stopRounds {
		q := lcQueue(t)
		organ := func(context.Context, necro.Event) ([]necro.Event, error) { panic("boom") }
		sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}},
			spine.Config{HandlerFailure: spine.HandlerLog, Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}})
		lcEnqueue(t, q, "job", 0, 1)
		if err := sp.Run(t.Context()); err != nil {
			t.Fatalf("round %d: Run() = %v, want nil", round, err)
		}
		if st := sp.Stats(); st.Panics != 1 || st.Restarts != st.Panics {
			t.Fatalf("round %d: when Run returned, Stats: Panics %d, Restarts %d; want 1 and 1: every panic crashes its organ's actor, which the supervisor restarts",
				round, st.Panics, st.Restarts)
		}
	}
}
