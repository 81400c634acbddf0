package spine_test

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
)

// seedQueue is the real in-memory store with failures injected in front of it and a
// record of every call the Spine made. Nothing is mocked: whatever is not refused goes
// to the store underneath, so ordering, room and receipts are the store's own. The
// hooks are set before Run and called under mu, so they may keep state.
type seedQueue struct {
	*memory.Backend // Idle, DeadLetters and Len come from the store

	// failPull, when set, is asked before the n-th Pull (counting from 1); a non-nil
	// error fails that Pull without touching the store.
	failPull func(n int) error
	// failSettle, when set, is asked for each settlement offered to Settle; a non-nil
	// error refuses it. The settlements before it in the batch are applied, the ones
	// after it are not, and Settle returns a *backend.SettleError, as a real store does.
	failSettle func(st backend.Settlement) error
	// failEnqueue, when set, is asked for each event passed to Enqueue; a non-nil error
	// refuses the whole call, which then stores nothing (Enqueue is all or none).
	failEnqueue func(ev necro.Event) error
	// steal, when set, picks settlements whose delivery someone else settles (acks)
	// just before the Spine's Settle reaches the store: the store then answers
	// backend.ErrUnknownDelivery by itself, as after a redelivery to another worker.
	steal func(st backend.Settlement) bool
	// onEmptyPull, when set, runs after a Pull with an already-done ctx found nothing
	// ready, before that Pull returns: a test uses it to let work settle in that gap.
	onEmptyPull func()

	mu       sync.Mutex
	pulls    int                  // Pull calls
	enqueued []necro.Event        // events passed to Enqueue, refused or not
	offered  []backend.Settlement // settlements passed to Settle, refused or not
	applied  []backend.Settlement // settlements the store applied
}

func newSeedQueue(mem *memory.Backend) *seedQueue { return &seedQueue{Backend: mem} }

func (q *seedQueue) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	q.mu.Lock()
	q.pulls++
	n := q.pulls
	var err error
	if q.failPull != nil {
		err = q.failPull(n)
	}
	q.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ds, err := q.Backend.Pull(ctx, max)
	if len(ds) == 0 && ctx.Err() != nil && q.onEmptyPull != nil {
		q.onEmptyPull()
	}
	return ds, err
}

func (q *seedQueue) Enqueue(ctx context.Context, events ...necro.Event) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.enqueued = append(q.enqueued, events...)
	if q.failEnqueue != nil {
		for _, ev := range events {
			if err := q.failEnqueue(ev); err != nil {
				return err
			}
		}
	}
	return q.Backend.Enqueue(ctx, events...)
}

func (q *seedQueue) Settle(ctx context.Context, batch ...backend.Settlement) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.offered = append(q.offered, batch...)
	n := len(batch)
	var refusal error
	if q.failSettle != nil {
		for i, st := range batch {
			if err := q.failSettle(st); err != nil {
				n, refusal = i, err
				break
			}
		}
	}
	if q.steal != nil {
		for _, st := range batch[:n] {
			if q.steal(st) {
				// Another holder acks it first; the error is the store's, seen below.
				_ = q.Backend.Settle(ctx, backend.Settlement{Delivery: st.Delivery, Outcome: backend.Ack})
			}
		}
	}
	err := q.Backend.Settle(ctx, batch[:n]...)
	applied := n
	var se *backend.SettleError
	if err != nil {
		applied = 0
		if errors.As(err, &se) {
			applied = se.Applied
		}
	}
	q.applied = append(q.applied, batch[:applied]...)
	if err != nil {
		return err
	}
	if refusal != nil {
		return &backend.SettleError{Applied: n, Err: refusal}
	}
	return nil
}

// pullCount returns how many times Pull was called.
func (q *seedQueue) pullCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pulls
}

// enqueueCalls returns the events passed to Enqueue, in order.
func (q *seedQueue) enqueueCalls() []necro.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.enqueued)
}

// settlementsOffered returns the settlements passed to Settle that keep is true for.
func (q *seedQueue) settlementsOffered(keep func(backend.Settlement) bool) []backend.Settlement {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(q.offered), func(st backend.Settlement) bool { return !keep(st) })
}

// settlementsApplied returns the settlements the store applied that keep is true for.
func (q *seedQueue) settlementsApplied(keep func(backend.Settlement) bool) []backend.Settlement {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(q.applied), func(st backend.Settlement) bool { return !keep(st) })
}

// ofEvent keeps the settlements of the delivery of the event with this id.
func ofEvent(id string) func(backend.Settlement) bool {
	return func(st backend.Settlement) bool { return st.Delivery.Event.ID() == id }
}

// withChild keeps the settlements that carry a child of type typ.
func withChild(typ string) func(backend.Settlement) bool {
	return func(st backend.Settlement) bool {
		return slices.ContainsFunc(st.Children, func(c necro.Event) bool { return c.Type() == typ })
	}
}
