package memory_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
)

// A queue that producers filled still takes the follow-ups of events in flight, up to
// a reserve of another Capacity; producers are refused all along.
func TestFollowUpsUseTheReserve(t *testing.T) {
	const capacity = 4
	b, err := memory.New(memory.Config{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(n int) []necro.Event {
		out := make([]necro.Event, n)
		for i := range out {
			if out[i], err = necro.NewEvent("reserve", nil); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	if err := b.Enqueue(t.Context(), mk(capacity)...); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Pull(t.Context(), 2)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Pull = %d, %v", len(ds), err)
	}
	if err := b.Enqueue(t.Context(), mk(3)...); !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("producer Enqueue of 3 with room for 2 = %v, want ErrQueueFull", err)
	}
	if err := b.Enqueue(t.Context(), mk(2)...); err != nil {
		t.Fatalf("producer Enqueue of 2 with room for 2 = %v", err)
	}
	// The queue holds 4 = Capacity. Follow-ups may add up to 4 more.
	if err := b.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Children: mk(3)}); err != nil {
		t.Fatalf("Settle with 3 children into a full queue = %v, want the reserve to take them", err)
	}
	if err := b.Settle(t.Context(), backend.Settlement{Delivery: ds[1], Children: mk(2)}); !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("Settle with 2 children and 1 reserve left = %v, want ErrQueueFull", err)
	}
	if err := b.Enqueue(t.Context(), mk(1)...); !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("producer Enqueue over Capacity = %v, want ErrQueueFull", err)
	}
	if got := b.Len(); got != 7 {
		t.Fatalf("Len() = %d, want 7", got)
	}
}

// Dropping a dead letter loses an event: every drop is counted and logged.
func TestDroppedDeadLettersAreLogged(t *testing.T) {
	var logs bytes.Buffer
	b, err := memory.New(memory.Config{DeadLetterCapacity: 1, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var evs []necro.Event
	for range 3 {
		ev, _ := necro.NewEvent("doomed", nil)
		evs = append(evs, ev)
	}
	if err := b.Enqueue(t.Context(), evs[0]); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Pull(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	st := backend.Settlement{Delivery: ds[0], DeadLetters: []backend.DeadLetter{
		{Event: evs[0], Organ: "o", Reason: "r"}, {Event: evs[1], Organ: "o", Reason: "r"}, {Event: evs[2], Organ: "o", Reason: "r"}}}
	if err := b.Settle(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	if b.Dropped() != 2 {
		t.Fatalf("Dropped() = %d, want 2", b.Dropped())
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], evs[0].ID()) || !strings.Contains(lines[1], evs[1].ID()) {
		t.Fatalf("logs = %q, want one line per dropped dead letter naming its event", lines)
	}
}

// A settlement that adds nothing (a Release, a Nack, an Ack without follow-ups) never
// fails for lack of room, even when give-backs and follow-ups have filled the reserve:
// a delivery the store refuses to take back stays handed out for good.
func TestGiveBackNeverFailsForRoom(t *testing.T) {
	b, err := memory.New(memory.Config{Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]necro.Event, 6)
	for i := range evs {
		if evs[i], err = necro.NewEvent("giveback", nil); err != nil {
			t.Fatal(err)
		}
	}
	var ds []backend.Delivery
	for i := range 4 {
		if err := b.Enqueue(t.Context(), evs[i]); err != nil {
			t.Fatalf("Enqueue %d = %v", i, err)
		}
		got, err := b.Pull(t.Context(), 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("Pull %d = %d deliveries, %v; want 1", i, len(got), err)
		}
		ds = append(ds, got[0])
	}
	if err := b.Enqueue(t.Context(), evs[4]); err != nil {
		t.Fatalf("Enqueue with the queue empty = %v", err)
	}
	steps := []struct {
		what string
		st   backend.Settlement
	}{
		{"Ack with one child", backend.Settlement{Delivery: ds[0], Outcome: backend.Ack, Children: evs[5:6]}},
		{"Release", backend.Settlement{Delivery: ds[1], Outcome: backend.Release}},
		{"Release", backend.Settlement{Delivery: ds[2], Outcome: backend.Release}},
		{"Ack without follow-ups", backend.Settlement{Delivery: ds[3], Outcome: backend.Ack}},
	}
	for i, s := range steps {
		if err := b.Settle(t.Context(), s.st); err != nil {
			t.Errorf("settlement %d (%s) with %d waiting in Capacity 1 = %v, want nil: it adds nothing", i+1, s.what, b.Len(), err)
		}
	}
	if !idleAfterDraining(t, b) {
		t.Fatal("store not idle after every waiting event was pulled and acked: a delivery stayed handed out")
	}
}

// idleAfterDraining pulls and acks every waiting event and reports whether the store
// is idle then.
func idleAfterDraining(t *testing.T, b *memory.Backend) bool {
	t.Helper()
	for b.Len() > 0 {
		ds, err := b.Pull(t.Context(), b.Len())
		if err != nil {
			t.Fatalf("Pull = %v", err)
		}
		for _, d := range ds {
			if err := b.Settle(t.Context(), backend.Settlement{Delivery: d}); err != nil {
				t.Fatalf("Ack %s = %v", d.Event.ID(), err)
			}
		}
	}
	return b.Idle()
}
