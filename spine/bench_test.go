package spine_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
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

// benchWindow is the Spine window of the workloads; -window changes it. Zero is the
// default window.
var benchWindow int

func runWorkload(b *testing.B, mounts []necro.Mount, root string, roots, handledPerRoot int) {
	runWorkloadWith(b, mounts, root, roots, handledPerRoot, spine.Config{})
}

// runWorkloadWith runs a workload with cfg; MaxSteps and Window are the benchmarks'.
func runWorkloadWith(b *testing.B, mounts []necro.Mount, root string, roots, handledPerRoot int, cfg spine.Config) {
	b.ReportAllocs()
	var handled int64
	for b.Loop() {
		// The roots are the producer's work, not the runtime's: untimed.
		b.StopTimer()
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
		evs = nil // the queue holds the roots now
		b.StartTimer()
		cfg.MaxSteps, cfg.Window = spine.Unlimited, benchWindow
		sp, err := spine.New(q, mounts, cfg)
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
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB") // Linux reports KiB; the whole process so far
	}
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

func init() {
	flag.IntVar(&benchWindow, "window", benchWindow, "Spine window of the chain and fanout benchmarks")
}

// BenchmarkChainStream is the chain workload fed the way a service is: a producer
// enqueues the R roots into a bounded queue while the Spine serves, waiting whenever
// the queue is full. Memory then depends on the queue's bound, not on R.
func BenchmarkChainStream(b *testing.B) {
	const roots = 200_000
	b.ReportAllocs()
	var handled int64
	for b.Loop() {
		q, err := memory.New(memory.Config{Capacity: 16_384})
		if err != nil {
			b.Fatal(err)
		}
		sp, err := spine.New(q, chainMounts(), spine.Config{Window: benchWindow})
		if err != nil {
			b.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- sp.Serve(b.Context()) }()
		for range roots {
			ev, err := necro.NewEvent("a", benchPayload)
			if err != nil {
				b.Fatal(err)
			}
			for {
				err := q.Enqueue(b.Context(), ev)
				if err == nil {
					break
				}
				if !errors.Is(err, backend.ErrQueueFull) {
					b.Fatal(err)
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
		for sp.Stats().Processed < 3*roots {
			time.Sleep(time.Millisecond)
		}
		sp.Stop()
		if err := <-served; err != nil {
			b.Fatal(err)
		}
		handled += 3 * roots
	}
	b.ReportMetric(float64(handled)/b.Elapsed().Seconds(), "events/s")
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}
