package spine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/supervision"
)

// A bounded Run ends when the last delivery in flight settles just as the fetcher looks
// at what is in flight, and schedules a retry for later. The fetcher once read the
// settle count after that look; a settle in between left it waiting for another settle
// that could never come, and Run never returned (seen once in a few hundred runs of the
// trading app under load). Here the settle is made to land exactly there.
func TestBoundedRunEndsWhenLastSettleLandsAtTheInflightLook(t *testing.T) {
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	flaky := necro.NewOrgan([]string{"t"}, func(context.Context, necro.Event) ([]necro.Event, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("transient") // retried after the backoff, from the store's schedule
		}
		return nil, nil
	})
	sp, err := New(q, []necro.Mount{{Name: "flaky", Organ: flaky}}, Config{Window: 2,
		Retry: supervision.RetryPolicy{MaxAttempts: 2, Backoff: supervision.Backoff{Base: 50 * time.Millisecond,
			Max: 50 * time.Millisecond, Jitter: supervision.NoJitter}}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := necro.NewEvent("t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	var waited atomic.Bool
	afterInflightLook = func(r *run) {
		// The first time something is in flight, let it settle before the fetcher
		// goes on: the failed handling settles with its retry scheduled 50ms later.
		if r.inflight.Load() > 0 && waited.CompareAndSwap(false, true) {
			for r.inflight.Load() > 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	t.Cleanup(func() { afterInflightLook = nil })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := sp.Run(ctx); err != nil || calls.Load() != 2 || !waited.Load() {
		t.Fatalf("Run() = %v after %d calls (settle made to land at the look: %v); want nil after 2, the retry handled, well before 10s",
			err, calls.Load(), waited.Load())
	}
}
