package supervision_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/supervision"
)

func ExampleBackoff_Delay() {
	b := supervision.Backoff{Base: 100 * time.Millisecond, Max: time.Second, Jitter: supervision.NoJitter}
	for n := 1; n <= 6; n++ {
		fmt.Println(n, b.Delay(n, 0))
	}
	// Output:
	// 1 100ms
	// 2 200ms
	// 3 400ms
	// 4 800ms
	// 5 1s
	// 6 1s
}

func ExampleSeed() {
	b := supervision.Backoff{Base: time.Second, Jitter: 0.5}
	seed := supervision.Seed("01JD6W8ZC4Q1V9E7T0R2M3N5P6")
	d := b.Delay(1, seed)
	fmt.Println(d == b.Delay(1, seed), d > 500*time.Millisecond, d <= time.Second)
	// Output:
	// true true true
}

func ExampleRetryPolicy_Decide() {
	p := supervision.RetryPolicy{Backoff: supervision.Backoff{Jitter: supervision.NoJitter}}
	seed := supervision.Seed("event-1")
	flaky := errors.New("connection reset")
	for attempt := 1; attempt <= 3; attempt++ {
		fmt.Println(attempt, p.Decide(attempt, flaky, seed))
	}
	fmt.Println(1, p.Decide(1, necro.Permanent(errors.New("bad payload")), seed))
	fmt.Println(1, supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}.Decide(1, flaky, seed))
	// Output:
	// 1 retry after 10ms
	// 2 retry after 20ms
	// 3 give up: retries exhausted
	// 1 give up: permanent error
	// 1 give up: retries exhausted
}

func ExampleOneForOne_Decide() {
	p := supervision.OneForOne{
		MaxRestarts: 2,
		Window:      time.Minute,
		Backoff:     supervision.Backoff{Jitter: supervision.NoJitter},
	}
	var h supervision.History
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		fmt.Println(p.Decide(&h, start.Add(time.Duration(i)*time.Second), 0))
	}
	// The quarantine cleared the history: the respawned organ may restart again.
	fmt.Println(p.Decide(&h, start.Add(10*time.Second), 0))
	// Output:
	// restart after 10ms
	// restart after 20ms
	// quarantine for 5s
	// restart after 10ms
}

func ExampleRetryTracker() {
	t := supervision.NewRetryTracker(0, 0) // 100,000 pairs, 10 minutes
	t.Fail("event-1", "billing")
	fmt.Println(t.Fail("event-1", "billing"), t.Count("event-1", "shipping"))
	t.Forget("event-1", "billing")
	fmt.Println(t.Count("event-1", "billing"), t.Len())
	// Output:
	// 2 0
	// 0 0
}
