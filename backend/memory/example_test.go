package memory_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
)

func ExampleNew() {
	ctx := context.Background()
	q, err := memory.New(memory.Config{Capacity: 2})
	if err != nil {
		panic(err)
	}

	placed, _ := necro.NewEvent("order.placed", map[string]any{"order": 42})
	paid, _ := necro.NewEvent("order.paid", nil)
	shipped, _ := necro.NewEvent("order.shipped", nil)
	fmt.Println(q.Enqueue(ctx, placed, paid))
	fmt.Println(errors.Is(q.Enqueue(ctx, shipped), backend.ErrQueueFull))

	ds, _ := q.Pull(ctx, 10)
	for _, d := range ds {
		fmt.Println(d.Event.Type(), d.Deliveries)
	}
	// The first is done and emits a follow-up; the second goes back first in line.
	err = q.Settle(ctx,
		backend.Settlement{Delivery: ds[0], Outcome: backend.Ack, Children: []necro.Event{shipped}},
		backend.Settlement{Delivery: ds[1], Outcome: backend.Release})
	fmt.Println(err)

	ds, _ = q.Pull(ctx, 10)
	for _, d := range ds {
		fmt.Println(d.Event.Type(), d.Deliveries)
	}
	fmt.Println(q.Close())
	// Output:
	// <nil>
	// true
	// order.placed 1
	// order.paid 1
	// <nil>
	// order.paid 2
	// order.shipped 1
	// <nil>
}

func ExampleBackend_DeadLetters() {
	ctx := context.Background()
	q, err := memory.New(memory.Config{DeadLetterCapacity: 2})
	if err != nil {
		panic(err)
	}
	for _, typ := range []string{"a", "b", "c"} {
		ev, _ := necro.NewEvent(typ, nil)
		_ = q.Enqueue(ctx, ev)
		ds, _ := q.Pull(ctx, 1)
		_ = q.Settle(ctx, backend.Settlement{Delivery: ds[0], DeadLetters: []backend.DeadLetter{
			{Event: ds[0].Event, Organ: "billing", Attempts: 3, Error: "card declined", Reason: "retries exhausted"},
		}})
	}
	dls, _ := q.DeadLetters(ctx, 10)
	for _, dl := range dls {
		fmt.Println(dl.Event.Type(), dl.Organ, dl.Reason)
	}
	fmt.Println("dropped:", q.Dropped())
	fmt.Println(q.Close())
	// Output:
	// b billing retries exhausted
	// c billing retries exhausted
	// dropped: 1
	// <nil>
}
