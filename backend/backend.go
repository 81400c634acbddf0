// Package backend defines what a store of events promises the Spine: the [Backend]
// contract, the [Delivery] a store hands out and the [Settlement] that ends it.
//
// Package backend/backendtest holds the conformance suite every store passes;
// backend/memory and backend/redis are the stores. The spine speaks only to this
// contract, so a program that wants only the in-memory queue compiles no Redis client.
// Delivery is at least once: a delivery that is never settled comes back.
package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/necrostack/necro"
)

// Errors of the contract. ErrClosed is necro.ErrClosed, so either name matches.
var (
	// ErrQueueFull reports that a bounded store has no room; nothing was stored.
	ErrQueueFull = errors.New("backend: queue full")
	// ErrUnknownDelivery reports a settlement of a delivery the store did not hand out,
	// or one already settled.
	ErrUnknownDelivery = errors.New("backend: unknown delivery")
	// ErrClosed reports use of a store after Close.
	ErrClosed = necro.ErrClosed
)

// A Backend stores events and hands them out in FIFO order. All methods are safe for
// concurrent use.
type Backend interface {
	// Enqueue appends the events to the queue, in order, all or none. A bounded store
	// that lacks room for all of them returns ErrQueueFull at once. A store may bound
	// the call it applies all or none (backend/redis does, by count and bytes; the
	// memory store does not): a larger call is applied in parts, and one that fails
	// part-way returns an *EnqueueError saying how many leading events went in.
	Enqueue(ctx context.Context, events ...necro.Event) error
	// Pull hands out up to max events, oldest first. When none is ready it waits until
	// one is, or until ctx is done and then returns ctx's error; with a ctx already done
	// it still returns what is ready without waiting. Each delivery must be settled.
	Pull(ctx context.Context, max int) ([]Delivery, error)
	// Settle ends deliveries, in order. Each settlement is atomic: its children, retries
	// and dead letters are stored and its delivery settled together, or none of it is.
	// Settle stops at the first settlement that fails and returns a *SettleError saying
	// how many were applied before it. A store with a capacity may refuse children and
	// retries beyond it with ErrQueueFull, but never refuses for its capacity a
	// settlement without any (a Release, a Nack, an Ack without follow-ups): its
	// delivery would stay handed out for good.
	Settle(ctx context.Context, batch ...Settlement) error
	// Close releases the store. Calls waiting in Pull return ErrClosed; later calls
	// return ErrClosed. Unsettled deliveries are not lost by a durable store.
	Close() error
}

// A Delivery is one event handed out by a store, with what the store needs to settle it.
type Delivery struct {
	Event necro.Event
	// Receipt identifies this delivery to its store (a Redis stream entry id, a sequence
	// number); opaque to everyone else.
	Receipt string
	// Deliveries counts how often the store has handed out this entry, this time
	// included. It is not a failure count: a crashed worker also makes it grow.
	Deliveries int
}

// An Outcome says what becomes of the delivered event itself.
type Outcome int

const (
	// Ack: the event is done and leaves the store.
	Ack Outcome = iota
	// Nack: the event failed; the store hands it out again after its redelivery delay.
	// Settlement.Targets, when set, restricts the redelivery to those organs.
	Nack
	// Release: the event was not handled; it goes back at once, first in line, and the
	// delivery does not count as a failure.
	Release
	// Handoff: the event was not handled because this worker mounts none of the organs
	// it is for; the store passes the delivery, unhandled, to the [Roster] member named
	// by Settlement.To. Only a Roster takes it.
	Handoff
)

func (o Outcome) String() string {
	switch o {
	case Ack:
		return "ack"
	case Nack:
		return "nack"
	case Release:
		return "release"
	case Handoff:
		return "handoff"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// A Settlement ends one delivery.
type Settlement struct {
	Delivery Delivery
	Outcome  Outcome
	// Targets restricts a Nack's redelivery to these organs; empty means all.
	Targets []string
	// To names the Roster member a Handoff passes the delivery to.
	To string
	// Children are enqueued at the tail, in order, before the delivery is settled.
	Children []necro.Event
	// Retries are copies of the delivered event to hand out again once due, after
	// the children.
	Retries []Retry
	// DeadLetters are written to the store's dead-letter area.
	DeadLetters []DeadLetter
}

// A Retry is an event to hand out once At has passed; a zero At means at once.
type Retry struct {
	Event necro.Event
	At    time.Time
}

// A DeadLetter records an event given up on, and why.
type DeadLetter struct {
	Event    necro.Event
	Organ    string    // the organ that failed on it, or that emitted a child too deep for the depth budget; empty for a poison entry
	Attempts int       // handling attempts made
	Error    string    // the last error's text
	Reason   string    // why it was given up: "retries exhausted", "depth budget exceeded", ...
	At       time.Time // when it was given up
	Receipt  string    // the store's id of the source entry, when there was one
}

// A SettleError reports a Settle call that stopped at a failing settlement.
type SettleError struct {
	Applied int   // settlements applied before the failing one
	Err     error // why the next one failed
}

func (e *SettleError) Error() string {
	return fmt.Sprintf("settle: %d applied, then: %v", e.Applied, e.Err)
}

// Unwrap returns the cause.
func (e *SettleError) Unwrap() error { return e.Err }

// An EnqueueError reports an Enqueue that stopped part-way, in a store that applies a
// large call in several all-or-none parts. The leading Enqueued events are stored, in
// order; the Unknown events right after them were sent and never answered for (the
// connection was lost and stayed lost), so either all of them are stored or none is;
// the events after those are not stored. An Enqueue that stored nothing, for certain,
// returns its error as it is, not as an EnqueueError.
type EnqueueError struct {
	Enqueued int   // leading events stored
	Unknown  int   // events right after them that may be stored, all of them or none
	Err      error // why the rest was not stored
}

func (e *EnqueueError) Error() string {
	if e.Unknown > 0 {
		return fmt.Sprintf("enqueue: %d events went in and %d more may have, then: %v", e.Enqueued, e.Unknown, e.Err)
	}
	return fmt.Sprintf("enqueue: %d events went in, then: %v", e.Enqueued, e.Err)
}

// Unwrap returns the cause.
func (e *EnqueueError) Unwrap() error { return e.Err }

// An Idler can tell at once whether it holds nothing: no event ready, scheduled or
// handed out and unsettled. A Spine's bounded run uses it to end exactly when the work
// is done; without it the run ends after an idle timeout.
type Idler interface {
	Idle() bool
}

// A DeadLetterReader lists the dead letters a store holds, oldest first.
type DeadLetterReader interface {
	DeadLetters(ctx context.Context, max int) ([]DeadLetter, error)
}

// A Describer names a store for telemetry: the messaging attributes of spans and the
// labels of metrics.
type Describer interface {
	Describe() Description
}

// A Description names a store.
type Description struct {
	System string // the kind of store: "memory", "redis"
	Name   string // the queue: a stream name, "memory" for the in-process queue
	Group  string // the consumer group; empty when the store has none
}

// A Reporter reports a store's levels for metrics. Report may ask a remote store and is
// called at each metrics collection, not on the hot path.
type Reporter interface {
	Report(ctx context.Context) Report
}

// A Report is what a [Reporter] tells. A level of -1 means the store cannot tell.
type Report struct {
	QueueDepth    int64 // events waiting to be handed out
	Pending       int64 // events handed out and not settled, by every consumer
	DeadLetters   int64 // dead letters held
	Reconnections int64 // connections made again after one was lost; -1 for a store without connections
}

// A Roster is a store shared by several workers, each of which announces the organs it
// mounts. It lets a worker tell an event that no live worker routes from one that
// another worker routes, and hand the second kind over ([Handoff]) instead of acking
// it unhandled: during a rolling deploy two versions of a service share one store, and
// a worker must not drop the events only the other version serves. A store that one
// process owns, such as the in-memory queue, is not a Roster.
type Roster interface {
	// Announce publishes what this worker serves, replacing what it announced before.
	// The store renews the announcement (a heartbeat) until Withdraw or Close, so that
	// a worker that dies drops out of every other worker's roll.
	Announce(ctx context.Context, organs []OrganRoutes) error
	// Withdraw removes this worker's announcement.
	Withdraw(ctx context.Context) error
	// Roll reads the live members from the store; Roll.At says when the read was sent.
	Roll(ctx context.Context) (Roll, error)
}

// OrganRoutes names one mounted organ and the event types it listens to.
type OrganRoutes struct {
	Organ string
	Types []string
}

// A Roll lists the workers whose announcements are live.
type Roll struct {
	Members []Member
	At      time.Time // when the store read it
}

// A Member is one live worker of a [Roster].
type Member struct {
	Name   string        // the worker's name in the store (a Redis consumer name)
	Self   bool          // this worker
	Organs []OrganRoutes // as announced, sorted by organ name
	Seen   time.Time     // its last heartbeat, by the store's clock
}
