package memory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/backendtest"
	"github.com/necrostack/necro/backend/memory"
	"pgregory.net/rapid"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T, cfg backendtest.Config) backend.Backend {
		return newBackend(t, memory.Config{Capacity: cfg.Capacity, NackDelay: cfg.NackDelay})
	})
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     memory.Config
		wantErr error
	}{
		{"zero value is valid", memory.Config{}, nil},
		{"unbounded queue", memory.Config{Capacity: memory.Unbounded}, nil},
		{"unbounded dead letters", memory.Config{DeadLetterCapacity: memory.Unbounded}, nil},
		{"all set", memory.Config{Capacity: 5, DeadLetterCapacity: 3, NackDelay: time.Millisecond}, nil},
		{"negative capacity", memory.Config{Capacity: -2}, memory.ErrInvalidConfig},
		{"negative dead-letter capacity", memory.Config{DeadLetterCapacity: -7}, memory.ErrInvalidConfig},
		{"negative nack delay", memory.Config{NackDelay: -time.Second}, memory.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := memory.New(tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New(%+v) = %v, want %v", tt.cfg, err, tt.wantErr)
			}
			if (b == nil) != (tt.wantErr != nil) {
				t.Errorf("New(%+v) returned store %v with error %v", tt.cfg, b, err)
			}
		})
	}
}

func TestDefaultCapacity(t *testing.T) {
	b := newBackend(t, memory.Config{})
	evs := newEvents(t, "default", 100_000)
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatalf("Enqueue(100,000 events) into the default store = %v", err)
	}
	err := b.Enqueue(t.Context(), evs[0])
	if !errors.Is(err, backend.ErrQueueFull) || !strings.Contains(err.Error(), "capacity 100000") {
		t.Fatalf("Enqueue beyond the default capacity = %v, want ErrQueueFull naming capacity 100000", err)
	}
}

func TestPullMaxMustBePositive(t *testing.T) {
	b := newBackend(t, memory.Config{})
	enqueue(t, b, newEvents(t, "x", 1)...)
	for _, max := range []int{0, -1} {
		if ds, err := b.Pull(t.Context(), max); err == nil {
			t.Errorf("Pull(max %d) = %d deliveries, nil; want an error", max, len(ds))
		}
	}
}

func TestZeroEventRefused(t *testing.T) {
	b := newBackend(t, memory.Config{})
	if err := b.Enqueue(t.Context(), necro.Event{}); !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("Enqueue(zero Event) = %v, want ErrInvalidEvent", err)
	}
	enqueue(t, b, newEvents(t, "x", 1)...)
	d := pull(t, b, 1)[0]
	err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Children: []necro.Event{{}}})
	if !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("Settle with a zero child = %v, want ErrInvalidEvent", err)
	}
	err = b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: backend.Nack, Targets: []string{" "}})
	if !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("Nack with a blank target = %v, want ErrInvalidEvent", err)
	}
	settle(t, b, backend.Settlement{Delivery: d}) // refused settlements left it settleable
	if !b.Idle() {
		t.Error("store not idle after the only delivery was acked")
	}
}

// Release and Nack return an event admitted once already, so they succeed even when
// the queue has filled up meanwhile.
func TestReleaseAndNackIgnoreCapacity(t *testing.T) {
	b := newBackend(t, memory.Config{Capacity: 1})
	evs := newEvents(t, "full", 3)
	enqueue(t, b, evs[0])
	first := pull(t, b, 1)[0]
	enqueue(t, b, evs[1]) // the last room, taken while the first is handed out
	settle(t, b, backend.Settlement{Delivery: first, Outcome: backend.Release})
	if got := b.Len(); got != 2 {
		t.Errorf("Len() = %d after Release into a full queue, want 2", got)
	}
	second := pull(t, b, 1)[0]
	if second.Event.ID() != evs[0].ID() {
		t.Fatalf("pulled %s after Release, want the released %s", second.Event.ID(), evs[0].ID())
	}
	settle(t, b, backend.Settlement{Delivery: second, Outcome: backend.Nack})
	if err := b.Enqueue(t.Context(), evs[2]); !errors.Is(err, backend.ErrQueueFull) {
		t.Errorf("Enqueue with the nacked event scheduled in capacity 1 = %v, want ErrQueueFull", err)
	}
}

func TestConcurrentProducersFillExactlyCapacity(t *testing.T) {
	const capacity, producers, attempts = 100, 16, 50
	b := newBackend(t, memory.Config{Capacity: capacity})
	var wg sync.WaitGroup
	accepted := make([]int, producers)
	for p := range producers {
		evs := newEvents(t, "race", attempts)
		wg.Go(func() {
			for _, ev := range evs {
				switch err := b.Enqueue(t.Context(), ev); {
				case err == nil:
					accepted[p]++
				case !errors.Is(err, backend.ErrQueueFull):
					t.Errorf("Enqueue = %v, want nil or ErrQueueFull", err)
				}
			}
		})
	}
	wg.Wait()
	var total int
	for _, n := range accepted {
		total += n
	}
	if total != capacity || b.Len() != capacity {
		t.Errorf("%d producers racing into capacity %d: %d accepted, Len() %d; want exactly %d",
			producers, capacity, total, b.Len(), capacity)
	}
}

// Timing, on synctest's fake clock.

func TestNackWaitsNackDelay(t *testing.T) {
	for _, tt := range []struct {
		name  string
		delay time.Duration
		want  time.Duration
	}{
		{"default", 0, time.Second},
		{"configured", 250 * time.Millisecond, 250 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend(t, memory.Config{NackDelay: tt.delay})
				ev := newEvents(t, "nack", 1)[0]
				enqueue(t, b, ev)
				start := time.Now()
				settle(t, b, backend.Settlement{Delivery: pull(t, b, 1)[0], Outcome: backend.Nack})
				if !b.Idle() && b.Len() != 0 {
					t.Fatalf("Len() = %d right after a Nack, want 0", b.Len())
				}
				d := pull(t, b, 1)[0]
				if elapsed := time.Since(start); elapsed != tt.want {
					t.Errorf("nacked event came back after %v, want %v", elapsed, tt.want)
				}
				if d.Event.ID() != ev.ID() || d.Deliveries != 2 {
					t.Errorf("got %s with Deliveries %d, want %s with 2", d.Event.ID(), d.Deliveries, ev.ID())
				}
			})
		})
	}
}

func TestRetryComesDueAtItsTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, memory.Config{})
		evs := newEvents(t, "retry", 4)
		enqueue(t, b, evs[0])
		d := pull(t, b, 1)[0]
		start := time.Now()
		settle(t, b, backend.Settlement{Delivery: d, Retries: []backend.Retry{
			{Event: evs[1], At: start.Add(3 * time.Second)},
			{Event: evs[2], At: start.Add(time.Second)},
			{Event: evs[3], At: start.Add(time.Second)}, // same time: keeps its order
		}})
		var got []string
		var at []time.Duration
		for len(got) < 3 {
			for _, d := range pull(t, b, 10) {
				got = append(got, d.Event.ID())
				at = append(at, time.Since(start))
				settle(t, b, backend.Settlement{Delivery: d})
			}
		}
		want := []string{evs[2].ID(), evs[3].ID(), evs[1].ID()}
		wantAt := []time.Duration{time.Second, time.Second, 3 * time.Second}
		if !slices.Equal(got, want) || !slices.Equal(at, wantAt) {
			t.Errorf("retries came as %v at %v, want %v at %v", got, at, want, wantAt)
		}
	})
}

// A waiting Pull that set its timer for a late retry must still wake for an earlier one.
func TestEarlierScheduleWakesWaitingPull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, memory.Config{NackDelay: time.Second})
		evs := newEvents(t, "wake", 2)
		enqueue(t, b, evs...)
		ds := pull(t, b, 2)
		start := time.Now()
		settle(t, b, backend.Settlement{Delivery: ds[0], Retries: []backend.Retry{{Event: evs[0], At: start.Add(time.Hour)}}})
		var wg sync.WaitGroup
		var got []backend.Delivery
		wg.Go(func() { got = pull(t, b, 10) })
		synctest.Wait() // the Pull waits for the retry an hour away
		settle(t, b, backend.Settlement{Delivery: ds[1], Outcome: backend.Nack})
		wg.Wait()
		if len(got) != 1 || got[0].Event.ID() != evs[1].ID() || time.Since(start) != time.Second {
			t.Errorf("Pull returned %v after %v, want the nacked %s after 1s", got, time.Since(start), evs[1].ID())
		}
	})
}

func TestCloseWakesWaitingPulls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, memory.Config{})
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() { _, errs[i] = b.Pull(t.Context(), 1) })
		}
		synctest.Wait()
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, backend.ErrClosed) || !errors.Is(err, necro.ErrClosed) {
				t.Errorf("Pull %d waiting at Close = %v, want ErrClosed", i, err)
			}
		}
	})
}

func TestIdleWithScheduled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, memory.Config{NackDelay: time.Minute})
		enqueue(t, b, newEvents(t, "idle", 1)...)
		settle(t, b, backend.Settlement{Delivery: pull(t, b, 1)[0], Outcome: backend.Nack})
		time.Sleep(59 * time.Second)
		if b.Idle() || b.Len() != 0 {
			t.Fatalf("Idle() = %v, Len() = %d before the nack delay passed; want false, 0", b.Idle(), b.Len())
		}
		time.Sleep(time.Second)
		if b.Len() != 1 {
			t.Fatalf("Len() = %d once the nack delay passed, want 1", b.Len())
		}
		settle(t, b, backend.Settlement{Delivery: pull(t, b, 1)[0]})
		if !b.Idle() {
			t.Error("Idle() = false after the redelivered event was acked")
		}
	})
}

// Seed behaviours §1.G: the in-memory backend, bounded queue included.

// G1: any number of events comes out in FIFO order, then nothing.
func TestSeedG1FIFOProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		b := newBackend(t, memory.Config{})
		n := rapid.IntRange(1, 50).Draw(rt, "n")
		evs := newEvents(t, "G1", n)
		for _, ev := range evs {
			enqueue(t, b, ev)
		}
		for i, ev := range evs {
			ds, err := b.Pull(doneContext(t), 1)
			if err != nil || len(ds) != 1 || ds[0].Event.ID() != ev.ID() {
				rt.Fatalf("pull %d = %v, %v; want %s", i, ds, err, ev.ID())
			}
		}
		if ds, err := b.Pull(doneContext(t), 1); len(ds) != 0 || !errors.Is(err, context.Canceled) {
			rt.Fatalf("pull %d = %v, %v; want nothing", n, ds, err)
		}
	})
}

// G2: Pull on an empty queue waits out its deadline, and a cancel ends it early.
func TestSeedG2PullTimeout(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		timeout := time.Duration(rapid.Int64Range(int64(10*time.Millisecond), int64(100*time.Millisecond)).Draw(rt, "timeout"))
		var (
			ds      []backend.Delivery
			err     error
			elapsed time.Duration
		)
		synctest.Test(t, func(t *testing.T) {
			b := newBackend(t, memory.Config{})
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			ds, err = b.Pull(ctx, 1)
			elapsed = time.Since(start)
		})
		if len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) || elapsed != timeout {
			rt.Fatalf("Pull with timeout %v = %v, %v after %v; want nothing, DeadlineExceeded after exactly %[1]v", timeout, ds, err, elapsed)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, memory.Config{})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(5*time.Millisecond, cancel)
		start := time.Now()
		if _, err := b.Pull(ctx, 1); !errors.Is(err, context.Canceled) || time.Since(start) != 5*time.Millisecond {
			t.Errorf("Pull canceled after 5ms = %v after %v", err, time.Since(start))
		}
	})
}

// G3: two events are pulled in order, then none.
func TestSeedG3TwoInOrder(t *testing.T) {
	b := newBackend(t, memory.Config{})
	evs := newEvents(t, "G3", 2)
	enqueue(t, b, evs...)
	for _, ev := range evs {
		if d := pull(t, b, 1)[0]; d.Event.ID() != ev.ID() {
			t.Fatalf("pulled %s, want %s", d.Event.ID(), ev.ID())
		}
	}
	if ds, err := b.Pull(doneContext(t), 1); len(ds) != 0 || err == nil {
		t.Fatalf("third Pull = %v, %v; want nothing", ds, err)
	}
}

// G4: pulling an empty queue with a short timeout returns nothing and the ctx's error.
func TestSeedG4EmptyPullTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, memory.Config{})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		if ds, err := b.Pull(ctx, 1); len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Pull on an empty queue = %v, %v; want nothing, DeadlineExceeded", ds, err)
		}
	})
}

// G5: the seed's ack of an event never enqueued was a silent no-op; the contract makes
// it an error the caller can see, and the store is unchanged.
func TestSeedG5AckNeverEnqueued(t *testing.T) {
	b := newBackend(t, memory.Config{})
	ev := newEvents(t, "G5", 1)[0]
	err := b.Settle(t.Context(), backend.Settlement{Delivery: backend.Delivery{Event: ev, Receipt: "1.0"}})
	if !errors.Is(err, backend.ErrUnknownDelivery) {
		t.Fatalf("ack of a never-enqueued event = %v, want ErrUnknownDelivery", err)
	}
	if !b.Idle() {
		t.Error("store not idle after a refused ack")
	}
}

// G6: ack after a pull succeeds.
func TestSeedG6AckAfterPull(t *testing.T) {
	b := newBackend(t, memory.Config{})
	enqueue(t, b, newEvents(t, "G6", 1)...)
	if err := b.Settle(t.Context(), backend.Settlement{Delivery: pull(t, b, 1)[0], Outcome: backend.Ack}); err != nil {
		t.Fatalf("ack after pull = %v", err)
	}
}

// G7: a queue of capacity 2 refuses the third event at once.
func TestSeedG7BoundedRejectsThird(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(t, memory.Config{Capacity: 2})
		evs := newEvents(t, "G7", 3)
		enqueue(t, b, evs[0])
		enqueue(t, b, evs[1])
		start := time.Now()
		err := b.Enqueue(t.Context(), evs[2])
		if !errors.Is(err, backend.ErrQueueFull) {
			t.Fatalf("third Enqueue = %v, want ErrQueueFull", err)
		}
		if time.Since(start) != 0 {
			t.Errorf("third Enqueue took %v, want an answer at once", time.Since(start))
		}
		if msg := err.Error(); !strings.Contains(msg, "queue full") || !strings.Contains(msg, "capacity 2") {
			t.Errorf("error %q does not say %q and %q", msg, "queue full", "capacity 2")
		}
	})
}

// G8: an unbounded queue takes 1000 events.
func TestSeedG8UnboundedTakesMany(t *testing.T) {
	b := newBackend(t, memory.Config{Capacity: memory.Unbounded})
	for _, ev := range newEvents(t, "G8", 1000) {
		enqueue(t, b, ev)
	}
	if got := b.Len(); got != 1000 {
		t.Errorf("Len() = %d, want 1000", got)
	}
}

// Seed behaviours §1.D D10–D14: the seed's failed-event store is the dead-letter ring.

// D10: a dead letter keeps the event and the error.
func TestSeedD10DeadLetterKeepsEventAndError(t *testing.T) {
	b := newBackend(t, memory.Config{})
	ev := newEvents(t, "D10", 1)[0]
	deadLetter(t, b, ev, "Handler failed: boom")
	got := deadLetters(t, b)
	if len(got) != 1 || !got[0].Event.Equal(ev) || got[0].Error != "Handler failed: boom" {
		t.Fatalf("DeadLetters() = %+v, want one holding %v and its error", got, ev)
	}
}

// D11: dead letters keep insertion order.
func TestSeedD11DeadLettersInOrder(t *testing.T) {
	b := newBackend(t, memory.Config{})
	for i := range 3 {
		deadLetter(t, b, newEvents(t, fmt.Sprintf("FAIL_%d", i), 1)[0], fmt.Sprintf("error %d", i))
	}
	got := deadLetters(t, b)
	for i, dl := range got {
		if want := fmt.Sprintf("FAIL_%d", i); dl.Event.Type() != want || dl.Error != fmt.Sprintf("error %d", i) {
			t.Errorf("dead letter %d = %s %q, want %s %q", i, dl.Event.Type(), dl.Error, want, fmt.Sprintf("error %d", i))
		}
	}
	if len(got) != 3 {
		t.Errorf("DeadLetters() returned %d, want 3", len(got))
	}
}

// D12: clearing empties the dead letters.
func TestSeedD12ClearDeadLetters(t *testing.T) {
	b := newBackend(t, memory.Config{})
	for _, ev := range newEvents(t, "D12", 3) {
		deadLetter(t, b, ev, "e")
	}
	if n := len(deadLetters(t, b)); n != 3 {
		t.Fatalf("%d dead letters before clearing, want 3", n)
	}
	b.ClearDeadLetters()
	if n := len(deadLetters(t, b)); n != 0 {
		t.Errorf("%d dead letters after ClearDeadLetters, want 0", n)
	}
}

// D13: the dead letters are counted.
func TestSeedD13CountDeadLetters(t *testing.T) {
	b := newBackend(t, memory.Config{})
	if n := len(deadLetters(t, b)); n != 0 {
		t.Fatalf("%d dead letters in a new store, want 0", n)
	}
	deadLetter(t, b, newEvents(t, "D13", 1)[0], "e")
	if n := len(deadLetters(t, b)); n != 1 {
		t.Errorf("%d dead letters after one, want 1", n)
	}
}

// D14: a bounded dead-letter ring keeps the newest and counts the dropped; the default
// bound is 10,000.
func TestSeedD14BoundedDeadLetters(t *testing.T) {
	t.Run("capacity 3", func(t *testing.T) {
		b := newBackend(t, memory.Config{DeadLetterCapacity: 3})
		for i := range 5 {
			deadLetter(t, b, newEvents(t, fmt.Sprintf("E%d", i), 1)[0], "e")
		}
		var types []string
		for _, dl := range deadLetters(t, b) {
			types = append(types, dl.Event.Type())
		}
		if want := []string{"E2", "E3", "E4"}; !slices.Equal(types, want) || b.Dropped() != 2 {
			t.Errorf("kept %v, dropped %d; want %v, 2", types, b.Dropped(), want)
		}
	})
	t.Run("default", func(t *testing.T) {
		b := newBackend(t, memory.Config{})
		ev := newEvents(t, "D14", 1)[0]
		enqueue(t, b, ev)
		dls := make([]backend.DeadLetter, 10_001)
		for i := range dls {
			dls[i] = backend.DeadLetter{Event: ev, Attempts: i}
		}
		settle(t, b, backend.Settlement{Delivery: pull(t, b, 1)[0], DeadLetters: dls})
		got := deadLetters(t, b)
		if len(got) != 10_000 || got[0].Attempts != 1 || b.Dropped() != 1 {
			t.Errorf("kept %d starting at %d, dropped %d; want 10000 starting at 1, dropped 1", len(got), got[0].Attempts, b.Dropped())
		}
	})
	t.Run("unbounded", func(t *testing.T) {
		b := newBackend(t, memory.Config{DeadLetterCapacity: memory.Unbounded})
		ev := newEvents(t, "D14", 1)[0]
		enqueue(t, b, ev)
		settle(t, b, backend.Settlement{Delivery: pull(t, b, 1)[0], DeadLetters: make([]backend.DeadLetter, 20_000)})
		if n := len(deadLetters(t, b)); n != 20_000 || b.Dropped() != 0 {
			t.Errorf("kept %d, dropped %d; want 20000, 0", n, b.Dropped())
		}
	})
}

func BenchmarkEnqueuePullSettle(b *testing.B) {
	for _, batch := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			q := newBackend(b, memory.Config{})
			evs := newEvents(b, "bench", batch)
			ss := make([]backend.Settlement, batch)
			b.ReportAllocs()
			for b.Loop() {
				if err := q.Enqueue(b.Context(), evs...); err != nil {
					b.Fatal(err)
				}
				ds, err := q.Pull(b.Context(), batch)
				if err != nil || len(ds) != batch {
					b.Fatalf("Pull(%d) = %d deliveries, %v", batch, len(ds), err)
				}
				for i, d := range ds {
					ss[i] = backend.Settlement{Delivery: d, Outcome: backend.Ack}
				}
				if err := q.Settle(b.Context(), ss...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkConcurrent runs producers and consumers at once, as a Spine with workers does.
func BenchmarkConcurrent(b *testing.B) {
	const batch = 100
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("consumers=%d", workers), func(b *testing.B) {
			q := newBackend(b, memory.Config{})
			evs := newEvents(b, "bench", batch)
			ctx, cancel := context.WithCancel(b.Context())
			defer cancel()
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					ss := make([]backend.Settlement, batch)
					for {
						ds, err := q.Pull(ctx, batch)
						if err != nil {
							return
						}
						for i, d := range ds {
							ss[i] = backend.Settlement{Delivery: d}
						}
						if err := q.Settle(ctx, ss[:len(ds)]...); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportAllocs()
			for b.Loop() {
				for q.Enqueue(ctx, evs...) != nil {
					// Full: the consumers are behind. Yield to them rather than spin.
					time.Sleep(10 * time.Microsecond)
				}
			}
			for !q.Idle() {
				time.Sleep(10 * time.Microsecond)
			}
			cancel()
			wg.Wait()
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// helpers

func newBackend(t testing.TB, cfg memory.Config) *memory.Backend {
	t.Helper()
	b, err := memory.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	t.Cleanup(func() { _ = b.Close() }) // ErrClosed when the test closed it already
	return b
}

func newEvents(t testing.TB, typ string, n int) []necro.Event {
	t.Helper()
	evs := make([]necro.Event, n)
	for i := range evs {
		ev, err := necro.NewEvent(typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		evs[i] = ev
	}
	return evs
}

func doneContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

func enqueue(t *testing.T, b *memory.Backend, evs ...necro.Event) {
	t.Helper()
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatalf("Enqueue(%d events) = %v", len(evs), err)
	}
}

// pull waits for deliveries; inside a synctest bubble the wait is on the fake clock.
func pull(t *testing.T, b *memory.Backend, max int) []backend.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	ds, err := b.Pull(ctx, max)
	if err != nil {
		t.Fatalf("Pull(max %d) = %v", max, err)
	}
	return ds
}

func settle(t *testing.T, b *memory.Backend, batch ...backend.Settlement) {
	t.Helper()
	if err := b.Settle(t.Context(), batch...); err != nil {
		t.Fatalf("Settle = %v", err)
	}
}

// deadLetter passes ev through the store and gives it up with errText.
func deadLetter(t *testing.T, b *memory.Backend, ev necro.Event, errText string) {
	t.Helper()
	enqueue(t, b, ev)
	d := pull(t, b, 1)[0]
	settle(t, b, backend.Settlement{Delivery: d, DeadLetters: []backend.DeadLetter{{
		Event: d.Event, Organ: "organ", Attempts: 1, Error: errText, Reason: "retries exhausted",
		At: time.Now(), Receipt: d.Receipt,
	}}})
}

func deadLetters(t *testing.T, b *memory.Backend) []backend.DeadLetter {
	t.Helper()
	dls, err := b.DeadLetters(t.Context(), 0)
	if err != nil {
		t.Fatalf("DeadLetters() = %v", err)
	}
	return dls
}

// A dead letter keeps a receipt of its own, not a piece of the string that all receipts
// of its Pull share: a piece would keep that whole string alive with the dead letter
// (measured: about 8 KiB per dead letter kept, with the Spine's pulls).
func TestDeadLetterReceiptDoesNotPinThePull(t *testing.T) {
	b := newBackend(t, memory.Config{})
	enqueue(t, b, newEvents(t, "x", 64)...)
	ds := pull(t, b, 64)
	d := ds[len(ds)-1]
	settle(t, b, backend.Settlement{Delivery: d, DeadLetters: []backend.DeadLetter{{
		Event: d.Event, Organ: "organ", Attempts: 1, Reason: "retries exhausted", At: time.Now(), Receipt: d.Receipt}}})
	dls := deadLetters(t, b)
	if len(dls) != 1 || dls[0].Receipt != d.Receipt {
		t.Fatalf("dead letters %+v, want one with receipt %q", dls, d.Receipt)
	}
	if unsafe.StringData(dls[0].Receipt) == unsafe.StringData(d.Receipt) {
		t.Error("the dead letter's receipt shares the Pull's receipts string")
	}
}
