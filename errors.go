package necro

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers match them with errors.Is; the text is for people.
var (
	// ErrInvalidEvent reports an event that breaks a rule of [Event]; the wrapping
	// *ValidationError names the field and the rule.
	ErrInvalidEvent = errors.New("necro: invalid event")
	// ErrInvalidOrgan reports a [Mount] that cannot be placed in a Spine.
	ErrInvalidOrgan = errors.New("necro: invalid organ")
	// ErrHandlerTimeout reports a Handle call that outlived its deadline.
	ErrHandlerTimeout = errors.New("necro: handler timed out")
	// ErrStepBudgetExceeded reports a bounded run that dispatched its MaxSteps events
	// while events were still waiting. The waiting events stay in the backend.
	ErrStepBudgetExceeded = errors.New("necro: step budget exceeded (Max steps exceeded)")
	// ErrDepthBudgetExceeded reports a child event deeper in its causal chain than MaxDepth.
	ErrDepthBudgetExceeded = errors.New("necro: depth budget exceeded")
	// ErrFanOutExceeded reports a Handle call that emitted more children than MaxFanOut.
	ErrFanOutExceeded = errors.New("necro: fan-out budget exceeded")
	// ErrClosed reports use of a component after it was closed or stopped.
	ErrClosed = errors.New("necro: closed")
)

// A ValidationError says which field of an event broke which rule. It matches
// [ErrInvalidEvent] with errors.Is.
type ValidationError struct {
	Field  string // the wire name: "id", "timestamp", "event_type", "payload", or a metadata key
	Reason string // what is wrong, in words
	Err    error  // the underlying cause, if any
}

func (e *ValidationError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("necro: invalid event: %s: %s: %v", e.Field, e.Reason, e.Err)
	}
	return fmt.Sprintf("necro: invalid event: %s: %s", e.Field, e.Reason)
}

// Is reports whether target is [ErrInvalidEvent].
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidEvent }

// Unwrap returns the underlying cause.
func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(field, reason string) error { return &ValidationError{Field: field, Reason: reason} }

// A PanicError is what a panicking Handle call becomes. Supervision treats it like any
// other failure: the event goes to the retry path and the organ's actor is restarted.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string { return fmt.Sprintf("necro: organ panicked: %v", e.Value) }

// Unwrap returns the panic value when it is an error, so errors.Is sees through it.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the Spine sends the event straight to its
// terminal failure mode. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with [Permanent].
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
