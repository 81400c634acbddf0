package spine_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
)

// A two-organ chain run as a bounded job: the greeter turns each sign-up into an email
// request, the mailer sends it, and Run returns once the queue is empty. The mailer
// fails permanently for one address, so that event is dead-lettered instead of retried.
func ExampleNew() {
	ctx := context.Background()
	q, err := memory.New(memory.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	greeter := necro.NewOrgan([]string{"user.signed_up"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		var p struct{ User string }
		if err := ev.DecodePayload(&p); err != nil {
			return nil, necro.Permanent(err)
		}
		email, err := necro.NewEvent("email.requested", map[string]any{"to": p.User, "template": "welcome"})
		return []necro.Event{email}, err
	})
	mailer := necro.NewOrgan([]string{"email.requested"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		var p struct{ To string }
		if err := ev.DecodePayload(&p); err != nil {
			return nil, necro.Permanent(err)
		}
		if p.To == "nobody" {
			return nil, necro.Permanent(errors.New("no such mailbox"))
		}
		fmt.Println("welcome mail sent to", p.To)
		return nil, nil
	})
	sp, err := spine.New(q, []necro.Mount{
		{Name: "greeter", Organ: greeter},
		{Name: "mailer", Organ: mailer},
	}, spine.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}

	for _, user := range []string{"ada", "nobody", "grace"} {
		ev, err := necro.NewEvent("user.signed_up", map[string]any{"user": user})
		if err == nil {
			err = sp.Emit(ctx, ev)
		}
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := sp.Run(ctx); err != nil {
		fmt.Println(err)
		return
	}

	st := sp.Stats()
	fmt.Printf("processed %d, emitted %d, failed %v, dead-lettered %d\n",
		st.Processed, st.Emitted, st.HandlerErrors, st.DeadLettered)
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, dl := range dead {
		fmt.Printf("dead letter: %s in %s after %d attempt: %s\n", dl.Event.Type(), dl.Organ, dl.Attempts, dl.Error)
	}
	// Output:
	// welcome mail sent to ada
	// welcome mail sent to grace
	// processed 6, emitted 3, failed map[mailer:1], dead-lettered 1
	// dead letter: email.requested in mailer after 1 attempt: no such mailbox
}

// Emit is how a producer, such as an HTTP handler, hands events to a Spine at any time.
// A bounded backend refuses what does not fit, all or nothing, and the producer can
// answer that it is busy.
func ExampleSpine_Emit() {
	ctx := context.Background()
	q, err := memory.New(memory.Config{Capacity: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	printer := necro.NewOrgan([]string{"order.placed"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		fmt.Println("handled order", ev.Payload()["order"])
		return nil, nil
	})
	sp, err := spine.New(q, []necro.Mount{{Name: "printer", Organ: printer}}, spine.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var orders []necro.Event
	for n := range 3 {
		ev, err := necro.NewEvent("order.placed", map[string]any{"order": n + 1})
		if err != nil {
			fmt.Println(err)
			return
		}
		orders = append(orders, ev)
	}

	fmt.Println(sp.Emit(ctx, orders[0], orders[1]))
	err = sp.Emit(ctx, orders[2])
	fmt.Println(errors.Is(err, backend.ErrQueueFull), err)
	if err := sp.Run(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sp.Emit(ctx, orders[2]), "once there is room")
	// Output:
	// <nil>
	// true backend: queue full (capacity 2)
	// handled order 1
	// handled order 2
	// <nil> once there is room
}

// Serve runs a Spine as a service: it waits for events while the queue is empty, until
// Shutdown stops it. Shutdown lets the events in flight finish first.
func ExampleSpine_Serve() {
	ctx := context.Background()
	q, err := memory.New(memory.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	handled := make(chan struct{}) // tells main that a ping was handled
	pinger := necro.NewOrgan([]string{"ping"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		fmt.Println("ping", ev.Payload()["n"])
		select {
		case handled <- struct{}{}:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	sp, err := spine.New(q, []necro.Mount{{Name: "pinger", Organ: pinger}}, spine.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}

	served := make(chan error, 1) // Serve's result waits here until it is read
	go func() { served <- sp.Serve(ctx) }()
	for n := range 3 {
		ev, err := necro.NewEvent("ping", map[string]any{"n": n})
		if err == nil {
			err = sp.Emit(ctx, ev)
		}
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	for range 3 {
		<-handled
	}
	fmt.Println("ready:", sp.Ready(ctx))

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second) // how long the drain may take
	defer cancel()
	fmt.Println("shutdown:", sp.Shutdown(sctx))
	fmt.Println("serve:", <-served)
	fmt.Println("ready:", sp.Ready(ctx))
	fmt.Println("processed:", sp.Stats().Processed)
	// Output:
	// ping 0
	// ping 1
	// ping 2
	// ready: <nil>
	// shutdown: <nil>
	// serve: <nil>
	// ready: spine: not running
	// processed: 3
}
