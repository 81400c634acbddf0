package spine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
)

// benchPayload is the ~100-byte JSON object of the chain and fanout workloads.
var benchPayload = json.RawMessage(`{"order_id":"ord-000123","customer":"alice","amount":149.5,"currency":"EUR","items":3,"note":"x"}`)

// chainMounts is the chain workload: A emits one b per a (payload copied plus a
// counter), B emits one c (payload copied), C emits nothing.
func chainMounts() []necro.Mount {
	a := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		p := ev.PayloadJSON()
		p = append(p[:len(p)-1], `,"hop":1}`...)
		child, err := necro.NewEvent("b", p)
		return []necro.Event{child}, err
	}
	b := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		child, err := necro.NewEvent("c", ev.PayloadJSON())
		return []necro.Event{child}, err
	}
	c := func(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil }
	return []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, a)},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, b)},
		{Name: "C", Organ: necro.NewOrgan([]string{"c"}, c)},
	}
}

// fanoutMounts is the fanout workload: four organs listen to x and emit nothing.
func fanoutMounts() []necro.Mount {
	var ms []necro.Mount
	for i := range 4 {
		ms = append(ms, necro.Mount{Name: fmt.Sprintf("F%d", i), Organ: necro.NewOrgan([]string{"x"},
			func(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil })})
	}
	return ms
}

func runWorkload(b *testing.B, mounts []necro.Mount, root string, roots, handledPerRoot int) {
	b.ReportAllocs()
	var handled int64
	for b.Loop() {
		q, err := memory.New(memory.Config{Capacity: roots * 2})
		if err != nil {
			b.Fatal(err)
		}
		evs := make([]necro.Event, roots)
		for i := range evs {
			if evs[i], err = necro.NewEvent(root, benchPayload); err != nil {
				b.Fatal(err)
			}
		}
		if err := q.Enqueue(b.Context(), evs...); err != nil {
			b.Fatal(err)
		}
		sp, err := spine.New(q, mounts, spine.Config{MaxSteps: spine.Unlimited, Window: 1024})
		if err != nil {
			b.Fatal(err)
		}
		if err := sp.Run(b.Context()); err != nil {
			b.Fatal(err)
		}
		st := sp.Stats()
		if st.Processed != int64(roots*(handledPerRoot)) && handledPerRoot != 4 {
			b.Fatalf("processed %d, want %d", st.Processed, roots*handledPerRoot)
		}
		handled += int64(roots * handledPerRoot)
	}
	b.ReportMetric(float64(handled)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkChain: R roots through A → B → C; handled = 3R.
func BenchmarkChain(b *testing.B) {
	for _, r := range []int{10_000, 200_000} {
		b.Run(fmt.Sprintf("R=%d", r), func(b *testing.B) { runWorkload(b, chainMounts(), "a", r, 3) })
	}
}

// BenchmarkFanout: R roots, four organs each; handled = 4R handler invocations.
func BenchmarkFanout(b *testing.B) {
	for _, r := range []int{10_000, 200_000} {
		b.Run(fmt.Sprintf("R=%d", r), func(b *testing.B) { runWorkload(b, fanoutMounts(), "x", r, 4) })
	}
}
