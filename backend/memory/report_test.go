package memory_test

import (
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
)

// Report counts what waits (ready or scheduled), what is handed out, and the dead
// letters; Describe names the store.
func TestReportAndDescribe(t *testing.T) {
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if d := q.Describe(); d.System != "memory" || d.Name != "memory" || d.Group != "" {
		t.Errorf("Describe = %+v, want memory, memory, no group", d)
	}
	var evs []necro.Event
	for i := range 4 {
		ev, err := necro.NewEvent("x", map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := q.Enqueue(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	ds, err := q.Pull(ctx, 2)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Pull = %d, %v", len(ds), err)
	}
	// One goes to the dead letters, one is retried an hour from now.
	err = q.Settle(ctx,
		backend.Settlement{Delivery: ds[0], DeadLetters: []backend.DeadLetter{{Event: ds[0].Event, Reason: "test"}}},
		backend.Settlement{Delivery: ds[1], Retries: []backend.Retry{{Event: ds[1].Event, At: time.Now().Add(time.Hour)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Pull(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := backend.Report{QueueDepth: 2, Pending: 1, DeadLetters: 1, Reconnections: -1}
	if got := q.Report(ctx); got != want {
		t.Errorf("Report = %+v, want %+v (1 ready + 1 scheduled, 1 handed out, 1 dead letter)", got, want)
	}
}
