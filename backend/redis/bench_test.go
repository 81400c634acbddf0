package redis_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
)

// benchPayload is the ~100-byte payload of the core issue's chain workload.
var benchPayload = json.RawMessage(`{"order_id":"ord-000123","customer":"alice","amount":149.5,"currency":"EUR","items":3,"note":"x"}`)

// chainMounts is the chain workload: A emits one b per a, B one c per b, C nothing and
// counts, calling done when it has seen want c events.
func chainMounts(seen *atomic.Int64, want int64, done func()) []necro.Mount {
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
	c := func(context.Context, necro.Event) ([]necro.Event, error) {
		if seen.Add(1) == want {
			done()
		}
		return nil, nil
	}
	return []necro.Mount{
		{Name: "A", Organ: necro.NewOrgan([]string{"a"}, a)},
		{Name: "B", Organ: necro.NewOrgan([]string{"b"}, b)},
		{Name: "C", Organ: necro.NewOrgan([]string{"c"}, c)},
	}
}

// BenchmarkChain runs the chain workload (R roots through A → B → C, 3R handled events)
// against a real redis-server on loopback, with workers Spines each on its own
// consumer of one group, in this process. Settles are atomic Lua scripts; delivery is
// at least once.
func BenchmarkChain(b *testing.B) {
	srv := redistest.Start(b, redistest.Config{})
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("R=50000/workers=%d", workers), func(b *testing.B) { runChain(b, srv, 50_000, workers) })
	}
	if stats, err := srv.Do("INFO", "commandstats"); err == nil {
		b.Log(stats)
	}
}

func runChain(b *testing.B, srv *redistest.Server, roots, workers int) {
	b.ReportAllocs()
	var handled int64
	for b.Loop() {
		b.StopTimer()
		stream, group := unique("necro:bench:"), unique("bench-")
		producer, err := necroredis.Open(b.Context(), necroredis.Config{URL: srv.URL(), Stream: stream, Group: group})
		if err != nil {
			b.Fatal(err)
		}
		evs := make([]necro.Event, 1000)
		for range roots / len(evs) {
			for i := range evs {
				if evs[i], err = necro.NewEvent("a", benchPayload); err != nil {
					b.Fatal(err)
				}
			}
			if err := producer.Enqueue(b.Context(), evs...); err != nil {
				b.Fatal(err)
			}
		}
		_ = producer.Close()
		var seen atomic.Int64
		var spines []*spine.Spine
		var stores []*necroredis.Backend
		var timers []*timed
		stop := sync.OnceFunc(func() {
			for _, sp := range spines {
				sp.Stop()
			}
		})
		for range workers {
			st, err := necroredis.Open(b.Context(), necroredis.Config{URL: srv.URL(), Stream: stream, Group: group})
			if err != nil {
				b.Fatal(err)
			}
			tb := &timed{Backend: st}
			timers = append(timers, tb)
			sp, err := spine.New(tb, chainMounts(&seen, int64(roots), stop), spine.Config{Window: benchWindow})
			if err != nil {
				b.Fatal(err)
			}
			spines, stores = append(spines, sp), append(stores, st)
		}
		b.StartTimer()
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for _, sp := range spines {
			wg.Go(func() { errs <- sp.Serve(b.Context()) })
		}
		wg.Wait()
		b.StopTimer()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		if got := seen.Load(); got < int64(roots) {
			b.Fatalf("handled %d c events, want %d", got, roots)
		}
		for _, st := range stores {
			_ = st.Close()
		}
		for _, tb := range timers {
			b.Logf("pull %v in %d calls (%d), settle %v in %d calls (%d)", time.Duration(tb.pullNs.Load()), tb.pulls.Load(), tb.pulled.Load(), time.Duration(tb.settleNs.Load()), tb.settles.Load(), tb.settled.Load())
		}
		handled += int64(3 * roots)
		b.StartTimer()
	}
	b.ReportMetric(float64(handled)/b.Elapsed().Seconds(), "events/s")
}

// benchWindow is the Spine window of the benchmark; -window changes it. Zero is the
// default window.
var benchWindow int

func init() {
	flag.IntVar(&benchWindow, "window", benchWindow, "Spine window of the chain benchmark")
}
