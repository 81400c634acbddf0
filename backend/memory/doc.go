// Package memory is the embedded default store: a bounded, in-process FIFO queue that
// implements the [backend.Backend] contract, with a schedule for retries and nacked
// events and a bounded ring of dead letters.
//
// The queue is bounded by default (100,000 waiting events): a full queue answers
// [backend.ErrQueueFull] at once instead of blocking, and one lock covers the check and
// the insert, so concurrent producers never overfill it. The children and retries a
// settlement adds may use a reserve of as much again, and a settlement that adds nothing
// (a Release, a Nack, an Ack without follow-ups) never fails for lack of room, so a
// delivery can always be given back or acked. [Unbounded] turns the bound off.
// Delivery is at least once within the process: an event leaves the store only when its
// delivery is acked. Nothing survives Close or the end of the process; use package
// backend/redis when events must.
//
// The store starts no goroutines: a Pull that waits is woken by the call that makes an
// event ready, or by its own timer when a scheduled event comes due.
package memory
