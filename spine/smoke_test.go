package spine_test

import (
	"context"
	"sync"
	"testing"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
)

func TestChainRuns(t *testing.T) {
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	relay := func(next string) necro.OrganFunc {
		return func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
			mu.Lock()
			seen = append(seen, ev.Type())
			mu.Unlock()
			if next == "" {
				return nil, nil
			}
			child, err := necro.NewEvent(next, ev.PayloadJSON())
			return []necro.Event{child}, err
		}
	}
	mounts := []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, relay("b"))},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, relay("c"))},
		{Name: "C", Organ: necro.NewOrgan([]string{"c"}, relay(""))},
	}
	sp, err := spine.New(q, mounts, spine.Config{Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		ev, _ := necro.NewEvent("a", map[string]any{"n": 1})
		if err := q.Enqueue(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	st := sp.Stats()
	if st.Processed != 30 || st.Emitted != 20 || len(seen) != 30 {
		t.Fatalf("processed %d emitted %d seen %d; want 30 20 30", st.Processed, st.Emitted, len(seen))
	}
}
