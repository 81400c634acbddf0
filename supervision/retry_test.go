package supervision

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/necrostack/necro"
)

func TestRetryPolicyDecide(t *testing.T) {
	flaky := errors.New("connection reset")
	steady := Backoff{Base: 100 * time.Millisecond, Jitter: NoJitter}
	tests := []struct {
		name    string
		p       RetryPolicy
		attempt int
		err     error
		want    RetryDecision
	}{
		{"zero policy retries the first attempt", RetryPolicy{}, 1, flaky,
			RetryDecision{Retry: true, Delay: Backoff{}.Delay(1, 9)}},
		{"zero policy retries the second attempt", RetryPolicy{}, 2, flaky,
			RetryDecision{Retry: true, Delay: Backoff{}.Delay(2, 9)}},
		{"zero policy stops after three attempts", RetryPolicy{}, 3, flaky,
			RetryDecision{Reason: ReasonExhausted}},
		{"past the last attempt", RetryPolicy{}, 7, flaky, RetryDecision{Reason: ReasonExhausted}},
		{"attempt zero counts as first", RetryPolicy{Backoff: steady}, 0, flaky,
			RetryDecision{Retry: true, Delay: 100 * time.Millisecond}},
		{"delay follows the attempt", RetryPolicy{MaxAttempts: 5, Backoff: steady}, 4, flaky,
			RetryDecision{Retry: true, Delay: 800 * time.Millisecond}},
		{"no retry", RetryPolicy{MaxAttempts: NoRetry}, 1, flaky, RetryDecision{Reason: ReasonExhausted}},
		{"permanent", RetryPolicy{}, 1, necro.Permanent(flaky), RetryDecision{Reason: ReasonPermanent}},
		{"wrapped permanent", RetryPolicy{}, 1, fmt.Errorf("charge: %w", necro.Permanent(flaky)),
			RetryDecision{Reason: ReasonPermanent}},
		{"permanent wins over exhausted", RetryPolicy{}, 3, necro.Permanent(flaky),
			RetryDecision{Reason: ReasonPermanent}},
		{"panic with a permanent error", RetryPolicy{}, 1, &necro.PanicError{Value: necro.Permanent(flaky)},
			RetryDecision{Reason: ReasonPermanent}},
		{"panic is retried", RetryPolicy{Backoff: steady}, 1, &necro.PanicError{Value: "boom"},
			RetryDecision{Retry: true, Delay: 100 * time.Millisecond}},
		{"timeout is retried", RetryPolicy{Backoff: steady}, 2, fmt.Errorf("organ billing: %w", necro.ErrHandlerTimeout),
			RetryDecision{Retry: true, Delay: 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Decide(tt.attempt, tt.err, 9); got != tt.want {
				t.Errorf("%+v.Decide(%d, %v) = %+v, want %+v", tt.p, tt.attempt, tt.err, got, tt.want)
			}
		})
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       RetryPolicy
		wantErr error
	}{
		{"zero value is valid", RetryPolicy{}, nil},
		{"no retry", RetryPolicy{MaxAttempts: NoRetry}, nil},
		{"negative attempts", RetryPolicy{MaxAttempts: -1}, ErrInvalidPolicy},
		{"invalid backoff", RetryPolicy{Backoff: Backoff{Jitter: 2}}, ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); !errors.Is(err, tt.wantErr) {
				t.Errorf("%+v.Validate() = %v, want %v", tt.p, err, tt.wantErr)
			}
		})
	}
}

func TestRetryPolicyDecideAllocations(t *testing.T) {
	p, err := RetryPolicy{}, errors.New("connection reset")
	allocs := testing.AllocsPerRun(100, func() { _ = p.Decide(1, err, 3) })
	t.Logf("Decide allocates %v times per call", allocs)
	if allocs > 1 {
		t.Errorf("Decide allocates %v times per call, want at most 1 (necro.IsPermanent's errors.As target)", allocs)
	}
}
