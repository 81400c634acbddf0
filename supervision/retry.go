package supervision

import (
	"fmt"
	"time"

	"github.com/necrostack/necro"
)

// NoRetry as [RetryPolicy.MaxAttempts] allows a single attempt: a failure goes straight
// to the terminal failure mode.
const NoRetry = 1

// Reasons a [RetryDecision] gives for not retrying. They are meant for logs and
// dead-letter entries; code tests RetryDecision.Retry.
const (
	ReasonPermanent = "permanent error"   // the error was marked with necro.Permanent
	ReasonExhausted = "retries exhausted" // the last allowed attempt failed
)

// Default of a zero [RetryPolicy].
const defaultMaxAttempts = 3

// A RetryPolicy says whether an event whose Handle call failed is handled again by the
// same organ, and after how long. The zero value allows 3 attempts spaced by the
// default [Backoff].
type RetryPolicy struct {
	// MaxAttempts bounds the Handle calls one organ makes for one event, the first
	// included. Zero means 3; [NoRetry] allows only the first.
	MaxAttempts int
	// Backoff spaces the attempts: the retry after the n-th failed attempt waits
	// Backoff.Delay(n). The zero value is the default Backoff.
	Backoff Backoff
}

// Validate reports a negative MaxAttempts or an invalid Backoff with an error wrapping
// [ErrInvalidPolicy].
func (p RetryPolicy) Validate() error {
	if p.MaxAttempts < 0 {
		return fmt.Errorf("retry max attempts %d is negative: %w", p.MaxAttempts, ErrInvalidPolicy)
	}
	if err := p.Backoff.Validate(); err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	return nil
}

// A RetryDecision is the answer of [RetryPolicy.Decide].
type RetryDecision struct {
	Retry  bool          // handle the event again
	Delay  time.Duration // how long to wait first, when Retry is set
	Reason string        // why not, when Retry is unset: ReasonPermanent or ReasonExhausted
}

// String reads like "retry after 20ms" or "give up: retries exhausted".
func (d RetryDecision) String() string {
	if d.Retry {
		return "retry after " + d.Delay.String()
	}
	return "give up: " + d.Reason
}

// Decide says what follows the failure err of attempt number attempt (counting from 1;
// smaller values count as 1). It gives up when err is permanent ([necro.IsPermanent],
// which also sees through a [necro.PanicError] whose value is an error) or when attempt
// has reached MaxAttempts; otherwise it retries after Backoff.Delay(attempt, seed).
// Timeouts ([necro.ErrHandlerTimeout]) and panics are retried like any other error.
//
// Decide is a pure function; pass the same seed for every attempt at one event, such as
// [Seed] of its id.
func (p RetryPolicy) Decide(attempt int, err error, seed uint64) RetryDecision {
	maxAttempts := p.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = defaultMaxAttempts
	}
	attempt = max(attempt, 1)
	switch {
	case necro.IsPermanent(err):
		return RetryDecision{Reason: ReasonPermanent}
	case attempt >= maxAttempts:
		return RetryDecision{Reason: ReasonExhausted}
	}
	return RetryDecision{Retry: true, Delay: p.Backoff.Delay(attempt, seed)}
}
