package spine

import (
	"fmt"

	"github.com/necrostack/necro"
)

// An EnqueueError ends a run whose backend refused the children of a delivery in
// EnqueueFail mode, or after the retries of EnqueueRetry mode. The delivery went back
// to the backend unacked.
type EnqueueError struct {
	Event necro.Event // the first child refused
	Err   error       // the backend's error
}

func (e *EnqueueError) Error() string {
	return fmt.Sprintf("spine: enqueue %s %s: %v", e.Event.Type(), e.Event.ID(), e.Err)
}

// Unwrap returns the backend's error.
func (e *EnqueueError) Unwrap() error { return e.Err }

// A BackendUnavailableError ends a bounded run whose backend failed
// MaxConsecutiveBackendFailures pulls in a row.
type BackendUnavailableError struct {
	FailureCount int
	LastErr      error
}

func (e *BackendUnavailableError) Error() string {
	return fmt.Sprintf("spine: backend unavailable after %d failures (last error: %v)", e.FailureCount, e.LastErr)
}

// Unwrap returns the last pull error.
func (e *BackendUnavailableError) Unwrap() error { return e.LastErr }
