package necro_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/necrostack/necro"
)

func ExampleNewEvent() {
	ev, err := necro.NewEvent("  ORDER_PLACED ", map[string]any{"order_id": "12345", "amount": 99.99})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Type())
	fmt.Println(string(ev.PayloadJSON()))
	fmt.Println(len(ev.ID()), ev.Attempt())

	_, err = necro.NewEvent(" ", nil)
	fmt.Println(errors.Is(err, necro.ErrInvalidEvent), err)
	// Output:
	// ORDER_PLACED
	// {"amount":99.99,"order_id":"12345"}
	// 36 1
	// true necro: invalid event: event_type: must not be empty
}

func ExampleDecodeEvent() {
	// An event exactly as Python's json.dumps writes it to the Redis stream.
	data := []byte(`{"id": "550E8400-E29B-41D4-A716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", ` +
		`"event_type": "caf\u00e9", "payload": {"order_id": "12345", "total": 123456789012345678901234567890}}`)
	ev, err := necro.DecodeEvent(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.ID())
	fmt.Println(ev.Timestamp())
	fmt.Println(ev.Type())
	fmt.Println(ev.Payload()["total"])

	_, err = necro.DecodeEvent([]byte(`{"event_type": "X", "payload": {}, "trace_id": "abc"}`))
	fmt.Println(err)
	// Output:
	// 550e8400-e29b-41d4-a716-446655440000
	// 2025-01-15 10:30:45 +0000 UTC
	// café
	// 123456789012345678901234567890
	// necro: invalid event: trace_id: unknown field "trace_id" in event (extra fields not permitted)
}

func ExampleEvent_MarshalJSON() {
	ev, err := necro.Draft{
		ID:        "550e8400-e29b-41d4-a716-446655440000",
		Timestamp: time.Date(2025, 1, 15, 11, 30, 45, 0, time.FixedZone("CET", 3600)),
		Type:      "ORDER_PLACED",
		Payload:   map[string]any{"order_id": "12345"},
	}.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	data, err := ev.MarshalJSON()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(data))
	// Output:
	// {"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"2025-01-15T10:30:45.000000+00:00","event_type":"ORDER_PLACED","payload":{"order_id":"12345"}}
}

func ExampleNewOrgan() {
	greeter := necro.NewOrgan([]string{"USER_SIGNED_UP"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		var p struct{ Name string }
		if err := ev.DecodePayload(&p); err != nil {
			return nil, necro.Permanent(err)
		}
		welcome, err := necro.NewEvent("EMAIL_REQUESTED", map[string]any{"to": p.Name, "template": "welcome"})
		if err != nil {
			return nil, err
		}
		return []necro.Event{welcome}, nil
	})
	types, err := necro.Mount{Name: "greeter", Organ: greeter}.Validate()
	fmt.Println(types, err)

	ev, err := necro.NewEvent("USER_SIGNED_UP", map[string]any{"name": "ada"})
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := greeter.Handle(context.Background(), ev)
	for _, e := range out {
		fmt.Println(e.Type(), string(e.PayloadJSON()))
	}
	fmt.Println(err)
	// Output:
	// [USER_SIGNED_UP] <nil>
	// EMAIL_REQUESTED {"template":"welcome","to":"ada"}
	// <nil>
}

func ExamplePermanent() {
	errBadAmount := errors.New("amount must be positive")
	err := fmt.Errorf("handle order 12345: %w", necro.Permanent(errBadAmount))

	fmt.Println(err)
	fmt.Println(necro.IsPermanent(err), errors.Is(err, errBadAmount))
	fmt.Println(necro.IsPermanent(errors.New("connection reset")))
	// Output:
	// handle order 12345: amount must be positive
	// true true
	// false
}
