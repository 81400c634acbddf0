package backendtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"pgregory.net/rapid"
)

// Config says what kind of store a subtest needs from the factory given to [Run].
type Config struct {
	// Capacity asks for a bounded store that holds at most this many waiting events.
	// Zero asks for no particular bound: the store's default, which must be roomy
	// enough for the suite's few thousand events.
	Capacity int
	// NackDelay asks for a store that hands a nacked event out again after this delay.
	// The suite always sets it, and small.
	NackDelay time.Duration
}

const (
	// nackDelay is what the suite asks for: long enough to observe that a nacked
	// event is not back at once, short enough to keep the suite fast.
	nackDelay = 100 * time.Millisecond
	// patience bounds every wait for something that must happen; only a broken store
	// takes that long.
	patience = 10 * time.Second
	// settleTime is how long a Pull that must find nothing waits before it concludes so.
	settleTime = 50 * time.Millisecond
)

// Run runs the conformance suite as subtests of t. For every subtest it calls open for
// a new, empty store with cfg.NackDelay applied. When cfg.Capacity is positive the
// store must hold at most that many waiting events; a store that cannot be bounded
// returns nil and the subtests that need a bound are skipped. open registers the
// store's cleanup with t.Cleanup, tolerating a store the suite has closed already.
func Run(t *testing.T, open func(t *testing.T, cfg Config) backend.Backend) {
	s := suite{open: open}
	t.Run("FIFO", s.fifo)
	t.Run("FIFOProperty", s.fifoProperty)
	t.Run("PullWaitsForEvent", s.pullWaits)
	t.Run("PullHonoursCancel", s.pullCancel)
	t.Run("PullHonoursDeadline", s.pullDeadline)
	t.Run("PullWithDoneContextReturnsReady", s.pullDoneContext)
	t.Run("AckRemoves", s.ackRemoves)
	t.Run("ReleaseRedeliversFirstInLine", s.release)
	t.Run("NackRedeliversLaterWithTargets", s.nack)
	t.Run("NackWithoutTargetsKeepsEvent", s.nackWithoutTargets)
	t.Run("ChildrenThenDueRetries", s.dueRetries)
	t.Run("RetryWaitsUntilDue", s.futureRetry)
	t.Run("DeadLetterRoundTrip", s.deadLetters)
	t.Run("SettleIsAtomic", s.atomicSettle)
	t.Run("SettleUnknownReceipt", s.settleUnknown)
	t.Run("SettleBatchStopsAtFailure", s.settleBatch)
	t.Run("CloseUnblocksPull", s.closeUnblocks)
	t.Run("ClosedRefusesCalls", s.closedRefuses)
	t.Run("ConcurrentConsumers", s.concurrentConsumers)
	t.Run("BoundedRejectsAtOnce", s.boundedRejects)
	t.Run("BoundedEnqueueIsAllOrNone", s.boundedAllOrNone)
	t.Run("BoundedConcurrentProducers", s.boundedConcurrent)
	t.Run("BoundedSettlementAddingNothingNeverFull", s.boundedAddingNothing)
	t.Run("Idle", s.idle)
}

type suite struct {
	open func(t *testing.T, cfg Config) backend.Backend
}

// store opens a store without a particular bound.
func (s suite) store(t *testing.T) backend.Backend {
	t.Helper()
	b := s.open(t, Config{NackDelay: nackDelay})
	if b == nil {
		t.Fatal("open(Config{}) returned nil; only a bounded store may be refused")
	}
	return b
}

// bounded opens a store of the given capacity, or skips the test.
func (s suite) bounded(t *testing.T, capacity int) backend.Backend {
	t.Helper()
	b := s.open(t, Config{Capacity: capacity, NackDelay: nackDelay})
	if b == nil {
		t.Skipf("the store cannot be bounded (open with Capacity %d returned nil)", capacity)
	}
	return b
}

func (s suite) fifo(t *testing.T) {
	b := s.store(t)
	evs := newEvents(t, "suite.fifo", 10)
	enqueue(t, b, evs[:5]...)
	for _, ev := range evs[5:] {
		enqueue(t, b, ev)
	}
	var got []string
	for range evs {
		ds := pullWait(t, b, 1)
		if len(ds) != 1 {
			t.Fatalf("Pull(max 1) handed out %d deliveries", len(ds))
		}
		got = append(got, ds[0].Event.ID())
		settle(t, b, ack(ds[0]))
	}
	if want := ids(evs); !slices.Equal(got, want) {
		t.Errorf("pulled %v, want the enqueue order %v", got, want)
	}
	expectNothing(t, b)
}

// fifoProperty checks the store against a slice under random enqueues, pulls and acks.
func (s suite) fifoProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		b := s.store(t)
		defer func() { _ = b.Close() }() // the factory's cleanup closes it again
		done, cancel := context.WithCancel(t.Context())
		cancel()
		var want []string // ready events, first in line first
		var held []backend.Delivery
		receipts := map[string]bool{}
		rt.Repeat(map[string]func(*rapid.T){
			"enqueue": func(rt *rapid.T) {
				n := rapid.IntRange(1, 5).Draw(rt, "n")
				evs := newEvents(rt, "suite.property", n)
				if err := b.Enqueue(t.Context(), evs...); err != nil {
					rt.Fatalf("Enqueue(%d events) = %v", n, err)
				}
				want = append(want, ids(evs)...)
			},
			"pull": func(rt *rapid.T) {
				max := rapid.IntRange(1, 8).Draw(rt, "max")
				ds, err := b.Pull(done, max)
				if len(want) == 0 {
					if len(ds) != 0 || !errors.Is(err, context.Canceled) {
						rt.Fatalf("Pull(done ctx) on an empty store = %v, %v; want nothing, context.Canceled", ids(events(ds)), err)
					}
					return
				}
				n := min(max, len(want))
				if err != nil || !slices.Equal(ids(events(ds)), want[:n]) {
					rt.Fatalf("Pull(done ctx, max %d) = %v, %v; want %v", max, ids(events(ds)), err, want[:n])
				}
				for _, d := range ds {
					if receipts[d.Receipt] {
						rt.Fatalf("receipt %q handed out twice", d.Receipt)
					}
					receipts[d.Receipt] = true
					if d.Deliveries != 1 {
						rt.Fatalf("first delivery of %s has Deliveries %d, want 1", d.Event.ID(), d.Deliveries)
					}
				}
				want = want[n:]
				held = append(held, ds...)
			},
			"ack": func(rt *rapid.T) {
				if len(held) == 0 {
					rt.Skip("nothing handed out")
				}
				i := rapid.IntRange(0, len(held)-1).Draw(rt, "i")
				if err := b.Settle(t.Context(), ack(held[i])); err != nil {
					rt.Fatalf("Settle(ack %s) = %v", held[i].Event.ID(), err)
				}
				held = slices.Delete(held, i, i+1)
			},
			"": func(rt *rapid.T) {
				if id, ok := b.(backend.Idler); ok {
					if got, wantIdle := id.Idle(), len(want) == 0 && len(held) == 0; got != wantIdle {
						rt.Fatalf("Idle() = %v with %d ready and %d handed out", got, len(want), len(held))
					}
				}
			},
		})
	})
}

func (s suite) pullWaits(t *testing.T) {
	b := s.store(t)
	ev := newEvents(t, "suite.wait", 1)[0]
	// No deadline of its own: a Pull that missed the Enqueue must not be rescued by
	// its ctx ending before awaitPull gives up.
	res := pullAsync(t.Context(), t, b)
	time.Sleep(settleTime) // let the Pull start waiting
	enqueue(t, b, ev)
	r := awaitPull(t, res, "Pull waiting for an Enqueue")
	if r.err != nil || len(r.ds) != 1 || r.ds[0].Event.ID() != ev.ID() {
		t.Fatalf("waiting Pull = %v, %v; want [%s], nil", ids(events(r.ds)), r.err, ev.ID())
	}
	settle(t, b, ack(r.ds[0]))
}

func (s suite) pullCancel(t *testing.T) {
	b := s.store(t)
	ctx, cancel := context.WithCancel(t.Context())
	res := pullAsync(ctx, t, b)
	time.Sleep(settleTime)
	cancel()
	r := awaitPull(t, res, "Pull after its ctx was canceled")
	if len(r.ds) != 0 || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Pull with canceled ctx = %v, %v; want nothing, context.Canceled", ids(events(r.ds)), r.err)
	}
}

func (s suite) pullDeadline(t *testing.T) {
	b := s.store(t)
	ctx, cancel := context.WithTimeout(t.Context(), settleTime)
	defer cancel()
	start := time.Now()
	ds, err := b.Pull(ctx, 1)
	elapsed := time.Since(start)
	if len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull on an empty store = %v, %v; want nothing, context.DeadlineExceeded", ids(events(ds)), err)
	}
	if elapsed < settleTime/2 {
		t.Errorf("Pull with a %v deadline returned after %v", settleTime, elapsed)
	}
}

func (s suite) pullDoneContext(t *testing.T) {
	b := s.store(t)
	evs := newEvents(t, "suite.done", 3)
	enqueue(t, b, evs...)
	ds := pullReady(t, b, 10)
	if got, want := ids(events(ds)), ids(evs); !slices.Equal(got, want) {
		t.Fatalf("Pull(done ctx, max 10) = %v; want what is ready: %v", got, want)
	}
	settle(t, b, acks(ds)...)
	ds = pullReady(t, b, 10)
	if len(ds) != 0 {
		t.Fatalf("Pull(done ctx) after all were acked = %v, want nothing", ids(events(ds)))
	}
}

func (s suite) ackRemoves(t *testing.T) {
	b := s.store(t)
	evs := newEvents(t, "suite.ack", 2)
	enqueue(t, b, evs...)
	ds := pullN(t, b, 2)
	settle(t, b, acks(ds)...)
	expectNothing(t, b)
	err := b.Settle(t.Context(), ack(ds[0]))
	if !errors.Is(err, backend.ErrUnknownDelivery) {
		t.Fatalf("second ack of %s = %v, want ErrUnknownDelivery", ds[0].Event.ID(), err)
	}
}

func (s suite) release(t *testing.T) {
	b := s.store(t)
	evs := newEvents(t, "suite.release", 3)
	enqueue(t, b, evs...)
	ds := pullN(t, b, 2)
	if ds[1].Deliveries != 1 {
		t.Fatalf("first delivery has Deliveries %d, want 1", ds[1].Deliveries)
	}
	settle(t, b, ack(ds[0]), backend.Settlement{Delivery: ds[1], Outcome: backend.Release})
	again := pullN(t, b, 2)
	if got, want := ids(events(again)), []string{evs[1].ID(), evs[2].ID()}; !slices.Equal(got, want) {
		t.Fatalf("after Release of %s pulled %v, want it first in line: %v", evs[1].ID(), got, want)
	}
	if again[0].Deliveries != 2 {
		t.Errorf("released event came back with Deliveries %d, want 2", again[0].Deliveries)
	}
	if again[0].Receipt == ds[1].Receipt {
		t.Errorf("redelivery reused receipt %q", ds[1].Receipt)
	}
	if !again[0].Event.Equal(evs[1]) {
		t.Errorf("released event came back as %v, want %v unchanged", again[0].Event, evs[1])
	}
	settle(t, b, acks(again)...)
	expectNothing(t, b)
}

func (s suite) nack(t *testing.T) {
	b := s.store(t)
	evs := newEvents(t, "suite.nack", 2)
	enqueue(t, b, evs...)
	first := pullN(t, b, 1)[0]
	nackedAt := time.Now()
	settle(t, b, backend.Settlement{Delivery: first, Outcome: backend.Nack, Targets: []string{"organ.x"}})
	ds := pullReady(t, b, 10)
	if got, want := ids(events(ds)), []string{evs[1].ID()}; !slices.Equal(got, want) {
		t.Fatalf("right after the Nack pulled %v, want only %v: a nacked event waits NackDelay", got, want)
	}
	settle(t, b, ack(ds[0]))
	again := pullN(t, b, 1)[0]
	if elapsed := time.Since(nackedAt); elapsed < nackDelay/2 {
		t.Errorf("nacked event came back after %v, want about NackDelay %v", elapsed, nackDelay)
	}
	if again.Event.ID() != evs[0].ID() || again.Deliveries != 2 {
		t.Fatalf("redelivered %s with Deliveries %d, want %s with 2", again.Event.ID(), again.Deliveries, evs[0].ID())
	}
	if got := again.Event.Meta().Targets; !slices.Equal(got, []string{"organ.x"}) {
		t.Errorf("nacked event came back with Targets %q, want [organ.x]", got)
	}
	if again.Event.IsFor("organ.y") {
		t.Error("nacked event with Targets [organ.x] targets organ.y")
	}
	settle(t, b, ack(again))
	expectNothing(t, b)
}

func (s suite) nackWithoutTargets(t *testing.T) {
	b := s.store(t)
	ev := newEvents(t, "suite.nack", 1)[0]
	enqueue(t, b, ev)
	settle(t, b, backend.Settlement{Delivery: pullN(t, b, 1)[0], Outcome: backend.Nack})
	again := pullN(t, b, 1)[0]
	if !again.Event.Equal(ev) || again.Deliveries != 2 {
		t.Fatalf("nacked event came back as %v with Deliveries %d, want %v unchanged with 2", again.Event, again.Deliveries, ev)
	}
	settle(t, b, ack(again))
}

func (s suite) dueRetries(t *testing.T) {
	b := s.store(t)
	parent := newEvents(t, "suite.retry", 1)[0]
	later := newEvents(t, "suite.later", 1)[0]
	enqueue(t, b, parent)
	d := pullN(t, b, 1)[0]
	enqueue(t, b, later)
	children := newEvents(t, "suite.child", 2)
	past := withAttempt(t, parent, 2)
	zero := withAttempt(t, parent, 3)
	settle(t, b, backend.Settlement{
		Delivery: d, Outcome: backend.Ack, Children: children,
		Retries: []backend.Retry{{Event: past, At: time.Now().Add(-time.Hour)}, {Event: zero}},
	})
	ds := pullN(t, b, 5)
	want := []necro.Event{later, children[0], children[1], past, zero}
	for i, d := range ds {
		if !d.Event.Equal(want[i]) {
			t.Fatalf("pulled %v, want the waiting event, the children, then the due retries: %v", events(ds), want)
		}
		if d.Deliveries != 1 {
			t.Errorf("%v has Deliveries %d, want 1 for a new entry", d.Event, d.Deliveries)
		}
	}
	if got := ds[3].Event.Attempt(); got != 2 {
		t.Errorf("retry came back with Attempt %d, want 2", got)
	}
	settle(t, b, acks(ds)...)
	expectNothing(t, b)
}

func (s suite) futureRetry(t *testing.T) {
	b := s.store(t)
	parent := newEvents(t, "suite.retry", 1)[0]
	enqueue(t, b, parent)
	d := pullN(t, b, 1)[0]
	retry := withAttempt(t, parent, 2)
	const delay = 200 * time.Millisecond
	start := time.Now()
	settle(t, b, backend.Settlement{Delivery: d, Outcome: backend.Ack,
		Retries: []backend.Retry{{Event: retry, At: start.Add(delay)}}})
	if ds := pullReady(t, b, 1); len(ds) != 0 {
		t.Fatalf("a retry due in %v was handed out at once: %v", delay, events(ds))
	}
	got := pullN(t, b, 1)[0]
	if elapsed := time.Since(start); elapsed < delay/2 {
		t.Errorf("a retry due in %v was handed out after %v", delay, elapsed)
	}
	if !got.Event.Equal(retry) || got.Deliveries != 1 {
		t.Errorf("pulled %v with Deliveries %d, want the retry %v with 1", got.Event, got.Deliveries, retry)
	}
	settle(t, b, ack(got))
	expectNothing(t, b)
}

func (s suite) deadLetters(t *testing.T) {
	b := s.store(t)
	r, ok := b.(backend.DeadLetterReader)
	if !ok {
		t.Skip("the store is not a backend.DeadLetterReader")
	}
	root := newEvents(t, "suite.root", 1)[0]
	ev, err := necro.Draft{Type: "suite.dead", Payload: map[string]any{"n": 1}, Meta: necro.Metadata{
		CorrelationID: root.ID(), CausationID: root.ID(), Depth: 2, Attempt: 3,
		Targets: []string{"organ.a"}, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, ev)
	d := pullN(t, b, 1)[0]
	at := time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.UTC)
	want := []backend.DeadLetter{
		{Event: d.Event, Organ: "organ.a", Attempts: 3, Error: "boom: übel", Reason: "retries exhausted", At: at, Receipt: d.Receipt},
		{Event: d.Event, Attempts: 0, Error: "depth 3 > 2", Reason: "depth budget exceeded", At: at.Add(time.Second), Receipt: d.Receipt},
	}
	settle(t, b, backend.Settlement{Delivery: d, Outcome: backend.Ack, DeadLetters: want})
	got, err := r.DeadLetters(t.Context(), 10)
	if err != nil {
		t.Fatalf("DeadLetters() = %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("DeadLetters() returned %d, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !deadLetterEqual(got[i], want[i]) {
			t.Errorf("dead letter %d = %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if first, err := r.DeadLetters(t.Context(), 1); err != nil || len(first) != 1 || !deadLetterEqual(first[0], want[0]) {
		t.Errorf("DeadLetters(max 1) = %+v, %v; want the oldest only", first, err)
	}
	expectNothing(t, b)
}

func (s suite) atomicSettle(t *testing.T) {
	b := s.bounded(t, 2)
	evs := newEvents(t, "suite.atomic", 2)
	enqueue(t, b, evs...)
	d := pullN(t, b, 1)[0]
	r, _ := b.(backend.DeadLetterReader)
	var deadBefore int
	if r != nil {
		dls, err := r.DeadLetters(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		deadBefore = len(dls)
	}
	tooMany := backend.Settlement{
		Delivery: d, Outcome: backend.Ack, Children: newEvents(t, "suite.child", 3),
		Retries:     []backend.Retry{{Event: withAttempt(t, d.Event, 2)}},
		DeadLetters: []backend.DeadLetter{{Event: d.Event, Reason: "test", At: time.Now()}},
	}
	err := b.Settle(t.Context(), tooMany)
	var se *backend.SettleError
	if !errors.As(err, &se) || se.Applied != 0 || !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("Settle with 3 children into capacity 2 = %v, want a *SettleError{Applied: 0} matching ErrQueueFull", err)
	}
	if r != nil {
		dls, err := r.DeadLetters(t.Context(), 0)
		if err != nil || len(dls) != deadBefore {
			t.Errorf("failed settlement left %d dead letters (%v), want %d", len(dls), err, deadBefore)
		}
	}
	ds := pullReady(t, b, 10)
	if got, want := ids(events(ds)), []string{evs[1].ID()}; !slices.Equal(got, want) {
		t.Fatalf("after the failed settlement pulled %v, want only %v: no child and no retry", got, want)
	}
	settle(t, b, ack(ds[0]))
	// The parent is still unsettled, and settleable.
	settle(t, b, ack(d))
	expectNothing(t, b)
}

func (s suite) settleUnknown(t *testing.T) {
	b := s.store(t)
	ev := newEvents(t, "suite.unknown", 1)[0]
	for _, receipt := range []string{"", "no-such-receipt", "0", "1-0", "999999999.0"} {
		err := b.Settle(t.Context(), backend.Settlement{Delivery: backend.Delivery{Event: ev, Receipt: receipt, Deliveries: 1}})
		var se *backend.SettleError
		if !errors.As(err, &se) || se.Applied != 0 || !errors.Is(err, backend.ErrUnknownDelivery) {
			t.Errorf("Settle(receipt %q never handed out) = %v, want a *SettleError{Applied: 0} matching ErrUnknownDelivery", receipt, err)
		}
	}
	if id, ok := b.(backend.Idler); ok && !id.Idle() {
		t.Error("failed settlements left the store not idle")
	}
}

func (s suite) settleBatch(t *testing.T) {
	b := s.store(t)
	evs := newEvents(t, "suite.batch", 3)
	enqueue(t, b, evs...)
	ds := pullN(t, b, 3)
	child := newEvents(t, "suite.child", 1)[0]
	bogus := ds[1]
	bogus.Receipt += "x"
	err := b.Settle(t.Context(),
		backend.Settlement{Delivery: ds[0], Outcome: backend.Ack, Children: []necro.Event{child}},
		backend.Settlement{Delivery: bogus, Outcome: backend.Ack},
		ack(ds[2]))
	var se *backend.SettleError
	if !errors.As(err, &se) || se.Applied != 1 || !errors.Is(err, backend.ErrUnknownDelivery) {
		t.Fatalf("Settle(ok, unknown, ok) = %v, want a *SettleError{Applied: 1} matching ErrUnknownDelivery", err)
	}
	if err := b.Settle(t.Context(), ack(ds[0])); !errors.Is(err, backend.ErrUnknownDelivery) {
		t.Errorf("the applied settlement could be settled again: %v", err)
	}
	// The ones after the failure were not applied: they are still settleable.
	settle(t, b, ack(ds[1]), ack(ds[2]))
	got := pullN(t, b, 1)
	if got[0].Event.ID() != child.ID() {
		t.Errorf("pulled %v, want the applied settlement's child %v", got[0].Event, child)
	}
	settle(t, b, ack(got[0]))
	expectNothing(t, b)
}

func (s suite) closeUnblocks(t *testing.T) {
	b := s.store(t)
	res := pullAsync(t.Context(), t, b) // no deadline of its own, as in pullWaits
	time.Sleep(settleTime)              // let the Pull start waiting
	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	r := awaitPull(t, res, "Pull waiting at Close")
	if len(r.ds) != 0 || !errors.Is(r.err, backend.ErrClosed) {
		t.Fatalf("Pull waiting at Close = %v, %v; want nothing, ErrClosed", ids(events(r.ds)), r.err)
	}
}

func (s suite) closedRefuses(t *testing.T) {
	b := s.store(t)
	evs := newEvents(t, "suite.closed", 2)
	enqueue(t, b, evs...)
	d := pullN(t, b, 1)[0]
	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := b.Enqueue(t.Context(), evs[0]); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if ds, err := b.Pull(t.Context(), 1); len(ds) != 0 || !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Pull after Close = %v, %v; want nothing, ErrClosed", ids(events(ds)), err)
	}
	if err := b.Settle(t.Context(), ack(d)); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("Settle after Close = %v, want ErrClosed", err)
	}
	if r, ok := b.(backend.DeadLetterReader); ok {
		if _, err := r.DeadLetters(t.Context(), 1); !errors.Is(err, backend.ErrClosed) {
			t.Errorf("DeadLetters after Close = %v, want ErrClosed", err)
		}
	}
	if err := b.Close(); !errors.Is(err, backend.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

func (s suite) concurrentConsumers(t *testing.T) {
	const (
		producers = 4
		perBatch  = 10
		batches   = 50 // per producer
		consumers = 4
		total     = producers * batches * perBatch
	)
	b := s.store(t)
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	var (
		mu       sync.Mutex
		seen     = make(map[string]int, total)
		receipts = make(map[string]bool, total)
		want     = make(map[string]bool, total)
		failure  error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if failure == nil {
			failure = err
		}
		cancel()
	}
	var wg sync.WaitGroup
	for p := range producers {
		evs := newEvents(t, fmt.Sprintf("suite.producer%d", p), batches*perBatch)
		for _, ev := range evs {
			want[ev.ID()] = true
		}
		wg.Go(func() {
			for chunk := range slices.Chunk(evs, perBatch) {
				if err := b.Enqueue(ctx, chunk...); err != nil {
					fail(fmt.Errorf("enqueue: %w", err))
					return
				}
			}
		})
	}
	for range consumers {
		wg.Go(func() {
			for {
				ds, err := b.Pull(ctx, 16)
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("pull: %w", err))
					}
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.Event.ID()]++
					if receipts[d.Receipt] {
						failure = errors.Join(failure, fmt.Errorf("receipt %q handed out twice", d.Receipt))
					}
					receipts[d.Receipt] = true
				}
				done := len(seen) == total
				mu.Unlock()
				// What was pulled is settled even after another consumer, having seen the
				// last event, ended ctx: its deliveries may still be settling.
				if err := b.Settle(t.Context(), acks(ds)...); err != nil {
					fail(fmt.Errorf("settle: %w", err))
					return
				}
				if done {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	if len(seen) != total {
		t.Fatalf("consumers saw %d distinct events within %v, want %d", len(seen), patience, total)
	}
	for id, n := range seen {
		if n != 1 || !want[id] {
			t.Errorf("event %s handed out %d times (enqueued: %v), want exactly once", id, n, want[id])
		}
	}
	expectNothing(t, b)
}

func (s suite) boundedRejects(t *testing.T) {
	b := s.bounded(t, 2)
	evs := newEvents(t, "suite.bounded", 3)
	enqueue(t, b, evs[0])
	enqueue(t, b, evs[1])
	start := time.Now()
	err := b.Enqueue(t.Context(), evs[2])
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Enqueue into a full store took %v, want an answer at once", elapsed)
	}
	if !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("third Enqueue into capacity 2 = %v, want ErrQueueFull", err)
	}
	if !strings.Contains(err.Error(), "queue full") {
		t.Errorf("error %q does not say %q", err, "queue full")
	}
	// An acked event frees its room.
	settle(t, b, ack(pullN(t, b, 1)[0]))
	enqueue(t, b, evs[2])
	ds := pullN(t, b, 2)
	if got, want := ids(events(ds)), ids(evs[1:]); !slices.Equal(got, want) {
		t.Errorf("pulled %v, want %v", got, want)
	}
	settle(t, b, acks(ds)...)
}

func (s suite) boundedAllOrNone(t *testing.T) {
	b := s.bounded(t, 3)
	evs := newEvents(t, "suite.allornone", 4)
	enqueue(t, b, evs[0])
	if err := b.Enqueue(t.Context(), evs[1:]...); !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("Enqueue of 3 events with room for 2 = %v, want ErrQueueFull", err)
	}
	enqueue(t, b, evs[1], evs[2]) // the room is still there
	ds := pullN(t, b, 3)
	if got, want := ids(events(ds)), ids(evs[:3]); !slices.Equal(got, want) {
		t.Errorf("pulled %v, want %v: the refused batch must leave nothing behind", got, want)
	}
	settle(t, b, acks(ds)...)
	expectNothing(t, b)
}

func (s suite) boundedConcurrent(t *testing.T) {
	const capacity, producers, attempts = 16, 8, 10
	b := s.bounded(t, capacity)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
		others   []error
	)
	for p := range producers {
		evs := newEvents(t, fmt.Sprintf("suite.race%d", p), attempts)
		wg.Go(func() {
			for _, ev := range evs {
				err := b.Enqueue(t.Context(), ev)
				mu.Lock()
				switch {
				case err == nil:
					accepted++
				case !errors.Is(err, backend.ErrQueueFull):
					others = append(others, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(others) > 0 {
		t.Fatalf("Enqueue failed other than with ErrQueueFull: %v", errors.Join(others...))
	}
	if accepted != capacity {
		t.Fatalf("%d producers × %d enqueues into capacity %d: %d accepted, want exactly %d", producers, attempts, capacity, accepted, capacity)
	}
	ds := pullN(t, b, capacity)
	settle(t, b, acks(ds)...)
	expectNothing(t, b)
}

// A settlement that adds nothing (a Release, a Nack, an Ack without children or
// retries) never fails for lack of room, however full the store is: its event was
// admitted once already, and a delivery the store refused to take back would stay
// handed out for good.
func (s suite) boundedAddingNothing(t *testing.T) {
	const capacity = 2
	b := s.bounded(t, capacity)
	outstanding := map[string]bool{} // events stored and not yet acked
	var held []backend.Delivery
	// Producers fill the store twice, with a pull in between: a store that does not
	// count what is handed out takes as much again.
	for range 2 {
		fillOneByOne(t, b, capacity, outstanding)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		ds, err := b.Pull(ctx, 4*capacity)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Pull(done ctx) = %v", err)
		}
		held = append(held, ds...)
	}
	if len(held) < 2 {
		t.Fatalf("%d deliveries handed out after filling capacity %d, want at least 2", len(held), capacity)
	}
	// The children of the first delivery take as much of the follow-up room as fits.
	settleMostChildren(t, b, held[0], 2*capacity, outstanding)
	held = held[1:]
	if err := b.Enqueue(t.Context(), newEvents(t, "suite.addsnothing", 1)...); !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("Enqueue into the filled store = %v, want ErrQueueFull", err)
	}
	outcomes := []backend.Outcome{backend.Release, backend.Nack, backend.Ack}
	for i, d := range held {
		o := outcomes[i%len(outcomes)]
		if err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: o}); err != nil {
			t.Errorf("%v of %s in a full store = %v, want nil: it adds nothing", o, d.Event.ID(), err)
			continue
		}
		if o == backend.Ack {
			delete(outstanding, d.Event.ID())
		}
	}
	// Drained one at a time, each Ack comes while the store is still over its bound.
	for len(outstanding) > 0 && !t.Failed() {
		d := pullWait(t, b, 1)[0]
		if !outstanding[d.Event.ID()] {
			t.Fatalf("pulled %s, which is not outstanding", d.Event.ID())
		}
		if err := b.Settle(t.Context(), ack(d)); err != nil {
			t.Fatalf("Ack of %s without follow-ups in a full store = %v, want nil", d.Event.ID(), err)
		}
		delete(outstanding, d.Event.ID())
	}
	if !t.Failed() {
		expectNothing(t, b)
	}
}

// fillOneByOne enqueues events one at a time until the store answers ErrQueueFull, and
// notes each one stored in outstanding.
func fillOneByOne(t *testing.T, b backend.Backend, capacity int, outstanding map[string]bool) {
	t.Helper()
	for i := 0; ; i++ {
		if i > 4*capacity {
			t.Fatalf("Enqueue took %d events one by one into capacity %d", i, capacity)
		}
		ev := newEvents(t, "suite.addsnothing", 1)[0]
		err := b.Enqueue(t.Context(), ev)
		if errors.Is(err, backend.ErrQueueFull) {
			return
		}
		if err != nil {
			t.Fatalf("Enqueue = %v", err)
		}
		outstanding[ev.ID()] = true
	}
}

// settleMostChildren settles d with as many children, from most down, as the store
// takes, and notes them in outstanding in d's place.
func settleMostChildren(t *testing.T, b backend.Backend, d backend.Delivery, most int, outstanding map[string]bool) {
	t.Helper()
	for k := most; k > 0; k-- {
		children := newEvents(t, "suite.addsnothing.child", k)
		err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Children: children})
		if errors.Is(err, backend.ErrQueueFull) {
			continue
		}
		if err != nil {
			t.Fatalf("Settle with %d children = %v", k, err)
		}
		delete(outstanding, d.Event.ID())
		for _, c := range children {
			outstanding[c.ID()] = true
		}
		return
	}
	t.Fatalf("no child of %s fits: a store must take some follow-ups", d.Event.ID())
}

func (s suite) idle(t *testing.T) {
	b := s.store(t)
	id, ok := b.(backend.Idler)
	if !ok {
		t.Skip("the store is not a backend.Idler")
	}
	check := func(when string, want bool) {
		t.Helper()
		if got := id.Idle(); got != want {
			t.Errorf("Idle() %s = %v, want %v", when, got, want)
		}
	}
	check("when new", true)
	enqueue(t, b, newEvents(t, "suite.idle", 1)...)
	check("with an event ready", false)
	d := pullN(t, b, 1)[0]
	check("with a delivery unsettled", false)
	settle(t, b, backend.Settlement{Delivery: d, Outcome: backend.Nack})
	check("with a nacked event scheduled", false)
	d = pullN(t, b, 1)[0]
	settle(t, b, backend.Settlement{Delivery: d, Outcome: backend.Ack,
		Retries: []backend.Retry{{Event: d.Event, At: time.Now().Add(time.Hour)}}})
	check("with a retry scheduled", false)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = s.store(t)
	id, _ = b.(backend.Idler)
	enqueue(t, b, newEvents(t, "suite.idle", 1)...)
	settle(t, b, ack(pullN(t, b, 1)[0]))
	check("after the only event was acked", true)
}

// helpers

// tb is what the helpers need of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func newEvents(t tb, typ string, n int) []necro.Event {
	t.Helper()
	evs := make([]necro.Event, n)
	for i := range evs {
		ev, err := necro.NewEvent(typ, map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		evs[i] = ev
	}
	return evs
}

func withAttempt(t *testing.T, ev necro.Event, attempt int) necro.Event {
	t.Helper()
	m := ev.Meta()
	m.Attempt = attempt
	out, err := ev.WithMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func enqueue(t *testing.T, b backend.Backend, evs ...necro.Event) {
	t.Helper()
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatalf("Enqueue(%d events) = %v", len(evs), err)
	}
}

func settle(t *testing.T, b backend.Backend, batch ...backend.Settlement) {
	t.Helper()
	if err := b.Settle(t.Context(), batch...); err != nil {
		t.Fatalf("Settle(%d settlements) = %v", len(batch), err)
	}
}

func ack(d backend.Delivery) backend.Settlement {
	return backend.Settlement{Delivery: d, Outcome: backend.Ack}
}

func acks(ds []backend.Delivery) []backend.Settlement {
	out := make([]backend.Settlement, len(ds))
	for i, d := range ds {
		out[i] = ack(d)
	}
	return out
}

// pullWait pulls once, waiting up to the suite's patience.
func pullWait(t *testing.T, b backend.Backend, max int) []backend.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	ds, err := b.Pull(ctx, max)
	if err != nil {
		t.Fatalf("Pull(max %d) = %v", max, err)
	}
	if len(ds) == 0 || len(ds) > max {
		t.Fatalf("Pull(max %d) handed out %d deliveries", max, len(ds))
	}
	return ds
}

// pullN pulls until it holds n deliveries.
func pullN(t *testing.T, b backend.Backend, n int) []backend.Delivery {
	t.Helper()
	var out []backend.Delivery
	for len(out) < n {
		out = append(out, pullWait(t, b, n-len(out))...)
	}
	return out
}

// pullReady pulls with a done ctx: what is ready, without waiting.
func pullReady(t *testing.T, b backend.Backend, max int) []backend.Delivery {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ds, err := b.Pull(ctx, max)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull(done ctx, max %d) = %v", max, err)
	}
	if (err == nil) == (len(ds) == 0) {
		t.Fatalf("Pull(done ctx, max %d) = %d deliveries, %v; want deliveries or context.Canceled", max, len(ds), err)
	}
	return ds
}

// expectNothing checks that nothing is handed out within a short wait.
func expectNothing(t *testing.T, b backend.Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), settleTime)
	defer cancel()
	ds, err := b.Pull(ctx, 10)
	if len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull on a drained store = %v, %v; want nothing, context.DeadlineExceeded", ids(events(ds)), err)
	}
}

type pullResult struct {
	ds  []backend.Delivery
	err error
}

// pullAsync starts one Pull with ctx and returns where its result arrives. The test
// waits for the goroutine in its cleanup, after t.Context is canceled, so a store
// that never returns cannot leave it behind.
func pullAsync(ctx context.Context, t *testing.T, b backend.Backend) <-chan pullResult {
	res := make(chan pullResult, 1) // one result; the buffer lets the goroutine end unread
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		ds, err := b.Pull(ctx, 10)
		res <- pullResult{ds, err}
	})
	return res
}

func awaitPull(t *testing.T, res <-chan pullResult, what string) pullResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(patience):
		t.Fatalf("%s did not return within %v", what, patience)
		return pullResult{}
	}
}

func events(ds []backend.Delivery) []necro.Event {
	out := make([]necro.Event, len(ds))
	for i, d := range ds {
		out[i] = d.Event
	}
	return out
}

func ids(evs []necro.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID()
	}
	return out
}

func deadLetterEqual(a, b backend.DeadLetter) bool {
	return a.Event.Equal(b.Event) && a.Organ == b.Organ && a.Attempts == b.Attempts &&
		a.Error == b.Error && a.Reason == b.Reason && a.At.Equal(b.At) && a.Receipt == b.Receipt
}
