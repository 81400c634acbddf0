package spine_test

// The seed behaviours of Python NecroStack (shared/reference/seed-behaviors.md §1.B,
// §1.C, §1.D, §1.E, §1.F, §1.I and §1.K), each run against the real Spine over the real
// in-memory store. Test names carry the seed ids. Where the Go runtime keeps a promise
// stronger than the seed's, or changes it on purpose, the test says so.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// seedNoWait retries at once, so retries follow their event in a fixed order.
var seedNoWait = supervision.Backoff{Base: time.Nanosecond, Max: time.Nanosecond, Jitter: supervision.NoJitter}

// seedTiny spaces backend and enqueue retries so little that failure paths stay fast.
var seedTiny = supervision.Backoff{Base: 100 * time.Microsecond, Max: time.Millisecond, Jitter: supervision.NoJitter}

// errSimulated stands for the seed's ConnectionError("Simulated failure").
var errSimulated = errors.New("simulated failure")

// seedRunLimit bounds every Run, so a hang fails its test instead of the whole binary.
const seedRunLimit = 30 * time.Second

func seedStore(t *testing.T) *memory.Backend {
	t.Helper()
	q, err := memory.New(memory.Config{Capacity: memory.Unbounded, DeadLetterCapacity: memory.Unbounded})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func seedEvent(t *testing.T, typ string, payload map[string]any) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		t.Fatalf("NewEvent(%q, %v) = %v", typ, payload, err)
	}
	return ev
}

func seedPut(t *testing.T, q backend.Backend, evs ...necro.Event) {
	t.Helper()
	if err := q.Enqueue(t.Context(), evs...); err != nil {
		t.Fatalf("Enqueue = %v", err)
	}
}

func seedSpine(t *testing.T, q backend.Backend, cfg spine.Config, mounts ...necro.Mount) *spine.Spine {
	t.Helper()
	sp, err := spine.New(q, mounts, cfg)
	if err != nil {
		t.Fatalf("spine.New = %v", err)
	}
	return sp
}

func seedOrgan(name string, types []string, f necro.OrganFunc) necro.Mount {
	return necro.Mount{Name: name, Organ: necro.NewOrgan(types, f)}
}

// seedRun runs sp to its end and fails the test when that takes longer than seedRunLimit.
func seedRun(t *testing.T, sp *spine.Spine) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), seedRunLimit)
	defer cancel()
	err := sp.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run did not finish within %s; it returned %v", seedRunLimit, err)
	}
	return err
}

// seedTimedRun runs sp and returns its error and how long it took.
func seedTimedRun(t *testing.T, sp *spine.Spine) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	err := seedRun(t, sp)
	return time.Since(start), err
}

// seedLeft takes every event ready in q, in order. Only for the end of a test: the
// deliveries are never settled.
func seedLeft(t *testing.T, q *memory.Backend) []necro.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ds, err := q.Pull(ctx, 1<<20)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull = %v", err)
	}
	evs := make([]necro.Event, len(ds))
	for i, d := range ds {
		evs[i] = d.Event
	}
	return evs
}

func seedDeadLetters(t *testing.T, q *memory.Backend) []backend.DeadLetter {
	t.Helper()
	dls, err := q.DeadLetters(t.Context(), 0)
	if err != nil {
		t.Fatalf("DeadLetters = %v", err)
	}
	return dls
}

func seedTypes(evs []necro.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type()
	}
	return out
}

// seedBody is the payload the tests' events carry.
type seedBody struct {
	I    int    `json:"i"`
	N    int    `json:"n"`
	Src  string `json:"src"`
	Name string `json:"name"`
}

func bodyOf(ev necro.Event) seedBody {
	var b seedBody
	_ = ev.DecodePayload(&b) // a payload that does not decode reads as zero, which the asserts catch
	return b
}

// seedCalls records strings from several organ goroutines.
type seedCalls struct {
	mu    sync.Mutex
	items []string
}

func (c *seedCalls) add(s string) {
	c.mu.Lock()
	c.items = append(c.items, s)
	c.mu.Unlock()
}

func (c *seedCalls) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.items)
}

func (c *seedCalls) count(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, it := range c.items {
		if it == s {
			n++
		}
	}
	return n
}

// seedCollector is an organ that records the Name, or else the type, of every event of
// the given types it handles.
func seedCollector(calls *seedCalls, types ...string) necro.Mount {
	return seedOrgan("Collector", types, func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		if n := bodyOf(ev).Name; n != "" {
			calls.add(n)
		} else {
			calls.add(ev.Type())
		}
		return nil, nil
	})
}

// seedEmit is an organ function that records name and emits one event of type typ per
// payload.
func seedEmit(calls *seedCalls, name, typ string, payloads ...map[string]any) necro.OrganFunc {
	return func(_ context.Context, _ necro.Event) ([]necro.Event, error) {
		calls.add(name)
		out := make([]necro.Event, 0, len(payloads))
		for _, p := range payloads {
			ev, err := necro.NewEvent(typ, p)
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		return out, nil
	}
}

func seedFail(calls *seedCalls, name string, err error) necro.OrganFunc {
	return func(context.Context, necro.Event) ([]necro.Event, error) {
		calls.add(name)
		return nil, err
	}
}

// ---------------------------------------------------------------------------------
// 1.B Organ contract

// B6 (Python: a sync and an async handler on one event, both invoked in registration
// order). Go has one kind of handler; organs run in parallel on their own actors, so
// the order they are *called* in is not observable as such. What the mount order
// fixes is what the runtime shows: both are handled, and their children are committed
// in mount order even when the first organ finishes last.
func TestSeedB6FastAndBlockingHandlersBothRunAndCommitInMountOrder(t *testing.T) {
	q := seedStore(t)
	var calls, collected seedCalls
	blocking := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
		calls.add("Blocking")
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		ev, err := necro.NewEvent("DONE", map[string]any{"name": "Blocking"})
		return []necro.Event{ev}, err
	}
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("Blocking", []string{"MIXED"}, blocking),
		seedOrgan("Fast", []string{"MIXED"}, seedEmit(&calls, "Fast", "DONE", map[string]any{"name": "Fast"})),
		seedCollector(&collected, "DONE"),
	)
	seedPut(t, q, seedEvent(t, "MIXED", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got := slices.Sorted(slices.Values(calls.list())); !slices.Equal(got, []string{"Blocking", "Fast"}) {
		t.Errorf("handlers called %v, want each of [Blocking Fast] once", got)
	}
	if got, want := collected.list(), []string{"Blocking", "Fast"}; !slices.Equal(got, want) {
		t.Errorf("children handled in order %v, want mount order %v", got, want)
	}
}

// B7/B8 are C3: a returned event is enqueued and delivered.

// B9 (Python: a handler returning a str, a dict or a list holding a non-Event). Go's
// signature rules those out; the nearest is a slice holding a zero Event: a handler
// error, nothing of that slice enqueued, and the run completes. The error is permanent
// (a bug in the organ), so it is not retried even with retries on.
func TestSeedB9ZeroEventInReturnedSliceIsHandlerError(t *testing.T) {
	q := seedStore(t)
	var received seedCalls
	bad := func(context.Context, necro.Event) ([]necro.Event, error) {
		ok, err := necro.NewEvent("VALID", nil)
		return []necro.Event{ok, {}}, err
	}
	sp := seedSpine(t, q, spine.Config{Retry: supervision.RetryPolicy{Backoff: seedNoWait}},
		seedOrgan("BadOrgan", []string{"START"}, bad),
		seedCollector(&received, "VALID"),
	)
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	st := sp.Stats()
	if want := map[string]int64{"BadOrgan": 1}; !maps.Equal(st.HandlerErrors, want) {
		t.Errorf("HandlerErrors = %v, want %v", st.HandlerErrors, want)
	}
	if got := received.list(); len(got) != 0 || st.Emitted != 0 {
		t.Errorf("the valid sibling of the zero Event was delivered %v (Emitted %d); want nothing of the slice enqueued", got, st.Emitted)
	}
	dls := seedDeadLetters(t, q)
	if len(dls) != 1 || dls[0].Event.ID() != start.ID() || !strings.Contains(dls[0].Error, necro.ErrInvalidEvent.Error()) {
		t.Errorf("dead letters = %+v, want START dead-lettered with an error mentioning %q", dls, necro.ErrInvalidEvent)
	}
}

// ---------------------------------------------------------------------------------
// 1.C Dispatch, order, max steps, stats

// C1: only the organs listening to the event's type are invoked.
func TestSeedC1RoutesToMatchingOrgansOnly(t *testing.T) {
	q := seedStore(t)
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("OrganA", []string{"X"}, seedEmit(&calls, "OrganA", "")),
		seedOrgan("OrganB", []string{"Y"}, seedEmit(&calls, "OrganB", "")),
		seedOrgan("OrganC", []string{"X", "Y"}, seedEmit(&calls, "OrganC", "")),
	)
	seedPut(t, q, seedEvent(t, "X", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	// Organs run in parallel: compare the set, each organ once.
	if got, want := slices.Sorted(slices.Values(calls.list())), []string{"OrganA", "OrganC"}; !slices.Equal(got, want) {
		t.Errorf("invoked %v, want %v", got, want)
	}
}

// C2: an event no organ listens to invokes nothing, is counted as processed and acked,
// and the run ends normally.
func TestSeedC2UnroutedEventIsProcessedAndAcked(t *testing.T) {
	q := seedStore(t)
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{}, seedOrgan("OrganY", []string{"Y"}, seedEmit(&calls, "OrganY", "")))
	seedPut(t, q, seedEvent(t, "NOBODY_LISTENS", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	st := sp.Stats()
	if got := calls.list(); len(got) != 0 {
		t.Errorf("invoked %v, want nothing", got)
	}
	if st.Processed != 1 || st.Unrouted != 1 || st.Dispatched != 1 {
		t.Errorf("Processed %d Unrouted %d Dispatched %d, want 1 1 1", st.Processed, st.Unrouted, st.Dispatched)
	}
	if !q.Idle() {
		t.Errorf("the store still holds the unrouted event (Len %d); want it acked", q.Len())
	}
}

// C3 (and B7, B8): one returned event is enqueued and reaches its listener exactly
// once, payload intact and stamped as the start event's child.
func TestSeedC3SingleReturnedEventIsDelivered(t *testing.T) {
	q := seedStore(t)
	var got []necro.Event
	var mu sync.Mutex
	emitter := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		child, err := necro.NewEvent("EMITTED", map[string]any{"src": ev.ID()})
		return []necro.Event{child}, err
	}
	receiver := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return nil, nil
	}
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("Emitter", []string{"START"}, emitter),
		seedOrgan("Receiver", []string{"EMITTED"}, receiver),
	)
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if len(got) != 1 {
		t.Fatalf("receiver got %d events, want 1", len(got))
	}
	if got[0].Type() != "EMITTED" || bodyOf(got[0]).Src != start.ID() {
		t.Errorf("receiver got %s with src %q, want EMITTED with src %q", got[0].Type(), bodyOf(got[0]).Src, start.ID())
	}
	if m := got[0].Meta(); m.CausationID != start.ID() || m.CorrelationID != start.ID() || m.Depth != 1 {
		t.Errorf("child lineage = %+v, want causation and correlation %s, depth 1", m, start.ID())
	}
}

// C4: every event of a returned list is enqueued and delivered, in list order.
func TestSeedC4ReturnedListIsDeliveredInOrder(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			q := seedStore(t)
			var calls, received seedCalls
			payloads := make([]map[string]any, n)
			want := make([]string, n)
			for i := range n {
				payloads[i] = map[string]any{"name": fmt.Sprint(i)}
				want[i] = fmt.Sprint(i)
			}
			sp := seedSpine(t, q, spine.Config{},
				seedOrgan("Emitter", []string{"START"}, seedEmit(&calls, "Emitter", "EMITTED", payloads...)),
				seedCollector(&received, "EMITTED"),
			)
			seedPut(t, q, seedEvent(t, "START", nil))
			if err := seedRun(t, sp); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			if got := received.list(); !slices.Equal(got, want) {
				t.Errorf("received %v, want %v", got, want)
			}
		})
	}
}

// C5: a handler returning nil enqueues nothing: the only Enqueue is the user's.
func TestSeedC5NilReturnEnqueuesNothing(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	var calls, received seedCalls
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("Quiet", []string{"START"}, seedEmit(&calls, "Quiet", "EMITTED")),
		seedCollector(&received, "EMITTED"),
	)
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got := seedTypes(q.enqueueCalls()); !slices.Equal(got, []string{"START"}) {
		t.Errorf("Enqueue calls carried %v, want only the user's [START]", got)
	}
	for _, st := range q.settlementsOffered(ofEvent(start.ID())) {
		if len(st.Children) != 0 {
			t.Errorf("START settled with children %v, want none", seedTypes(st.Children))
		}
	}
	if got := received.list(); len(got) != 0 || sp.Stats().Emitted != 0 {
		t.Errorf("received %v, Emitted %d; want nothing", got, sp.Stats().Emitted)
	}
}

// C6: the organs matching one event follow the mount order. They are called in
// parallel (see B6), so the observable order is the commit order of their children.
func TestSeedC6MountOrderDecidesOrder(t *testing.T) {
	for _, order := range [][]string{{"A", "B", "C"}, {"C", "B", "A"}, {"B", "A", "C"}, {"A", "B", "C", "D", "E"}} {
		t.Run(strings.Join(order, ""), func(t *testing.T) {
			q := seedStore(t)
			var calls, collected seedCalls
			var mounts []necro.Mount
			for _, name := range order {
				mounts = append(mounts, seedOrgan(name, []string{"EV"}, seedEmit(&calls, name, "DONE", map[string]any{"name": name})))
			}
			mounts = append(mounts, seedCollector(&collected, "DONE"))
			sp := seedSpine(t, q, spine.Config{}, mounts...)
			seedPut(t, q, seedEvent(t, "EV", nil))
			if err := seedRun(t, sp); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			if got := collected.list(); !slices.Equal(got, order) {
				t.Errorf("children in order %v, want mount order %v", got, order)
			}
			if got := calls.list(); len(got) != len(order) {
				t.Errorf("handlers called %v, want each of %v once", got, order)
			}
		})
	}
}

// C7 and C9: a self-emitting loop ends with the step budget: Run's error matches
// necro.ErrStepBudgetExceeded and says "Max steps exceeded", exactly MaxSteps events
// were handled, and the event not dispatched stays in the store. The row of 10 is C9
// (LOOP→LOOP on the in-memory store).
func TestSeedC7SelfLoopHitsMaxSteps(t *testing.T) {
	for _, maxSteps := range []int{1, 2, 5, 10} {
		t.Run(fmt.Sprint(maxSteps), func(t *testing.T) {
			q := seedStore(t)
			var calls seedCalls
			sp := seedSpine(t, q, spine.Config{MaxSteps: maxSteps},
				seedOrgan("Looper", []string{"LOOP"}, seedEmit(&calls, "Looper", "LOOP", nil)))
			seedPut(t, q, seedEvent(t, "LOOP", nil))
			err := seedRun(t, sp)
			if !errors.Is(err, necro.ErrStepBudgetExceeded) || !strings.Contains(fmt.Sprint(err), "Max steps exceeded") {
				t.Fatalf("Run() = %v, want necro.ErrStepBudgetExceeded saying \"Max steps exceeded\"", err)
			}
			if n := len(calls.list()); n != maxSteps || sp.Stats().Dispatched != int64(maxSteps) {
				t.Errorf("handled %d, dispatched %d; want %d", n, sp.Stats().Dispatched, maxSteps)
			}
			left := seedLeft(t, q)
			if len(left) != 1 || left[0].Type() != "LOOP" || left[0].Depth() != maxSteps {
				t.Errorf("left in the store %v, want the one LOOP at depth %d not dispatched", left, maxSteps)
			}
		})
	}
}

// C8: a 3-event chain under the budget runs its 3 handlers and Run returns nil. With
// MaxSteps exactly 3 it returns nil too: that is our improvement, the seed raised
// "Max steps exceeded" there although nothing was left to do.
func TestSeedC8ChainWithinMaxStepsSucceeds(t *testing.T) {
	for _, maxSteps := range []int{10, 3} {
		t.Run(fmt.Sprint(maxSteps), func(t *testing.T) {
			q := seedStore(t)
			var calls seedCalls
			sp := seedSpine(t, q, spine.Config{MaxSteps: maxSteps},
				seedOrgan("A", []string{"a"}, seedEmit(&calls, "A", "b", nil)),
				seedOrgan("B", []string{"b"}, seedEmit(&calls, "B", "c", nil)),
				seedOrgan("C", []string{"c"}, seedEmit(&calls, "C", "")),
			)
			seedPut(t, q, seedEvent(t, "a", nil))
			if err := seedRun(t, sp); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			if got := calls.list(); !slices.Equal(got, []string{"A", "B", "C"}) {
				t.Errorf("handlers ran %v, want [A B C]", got)
			}
		})
	}
}

// C8, the race behind an occasional hang of any bounded run (seen in C18 about once
// in 40 runs under -race): the fetcher, with a delivery in flight, pulls what is
// ready with a done ctx, finds nothing, and waits for the next settlement. When the
// delivery settles in between (its child is now in the store, nothing is in flight)
// that wake-up is missed and Run waits forever. The store hook holds the empty Pull
// open until the parent has settled, which makes the gap certain.
func TestSeedC8ChainFinishesWhenParentSettlesDuringAnEmptyPull(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	start := seedEvent(t, "a", nil)
	var once sync.Once
	q.onEmptyPull = func() {
		once.Do(func() {
			deadline := time.Now().Add(10 * time.Second)
			for len(q.settlementsApplied(ofEvent(start.ID()))) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // the committer accounts for the settlement and signals
		})
	}
	var calls seedCalls
	parent := func(context.Context, necro.Event) ([]necro.Event, error) {
		calls.add("A")
		// Return only once the fetcher has pulled again while this delivery is in flight.
		for deadline := time.Now().Add(10 * time.Second); q.pullCount() < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		child, err := necro.NewEvent("b", nil)
		return []necro.Event{child}, err
	}
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("A", []string{"a"}, parent),
		seedOrgan("B", []string{"b"}, seedEmit(&calls, "B", "")))
	seedPut(t, q, start)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := sp.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run hung (returned %v after 20s): handled %v, the store holds %d ready event(s); want [A B] and nil",
			err, calls.list(), q.Len())
	}
	if err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got := calls.list(); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("handled %v, want [A B]", got)
	}
}

// C10: two organs that emit each other's events hit the budget.
func TestSeedC10PingPongHitsMaxSteps(t *testing.T) {
	q := seedStore(t)
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{MaxSteps: 10},
		seedOrgan("Ping", []string{"PING"}, seedEmit(&calls, "Ping", "PONG", nil)),
		seedOrgan("Pong", []string{"PONG"}, seedEmit(&calls, "Pong", "PING", nil)),
	)
	seedPut(t, q, seedEvent(t, "PING", nil))
	err := seedRun(t, sp)
	if !errors.Is(err, necro.ErrStepBudgetExceeded) || !strings.Contains(fmt.Sprint(err), "Max steps exceeded") {
		t.Fatalf("Run() = %v, want necro.ErrStepBudgetExceeded saying \"Max steps exceeded\"", err)
	}
	if calls.count("Ping") != 5 || calls.count("Pong") != 5 {
		t.Errorf("handlers ran %v, want 5 Ping and 5 Pong", calls.list())
	}
	if left := seedTypes(seedLeft(t, q)); !slices.Equal(left, []string{"PING"}) {
		t.Errorf("left in the store %v, want [PING]", left)
	}
}

// C11 (Python introspects the Spine for a queue attribute). Go's version is behaviour:
// the Spine holds at most Window deliveries; everything else stays in the backend. A
// shallow look at the Spine's own fields backs the design rule.
func TestSeedC11EventsWaitInTheBackendNotInTheSpine(t *testing.T) {
	for f := range reflect.TypeFor[spine.Spine]().Fields() {
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice || ft.Kind() == reflect.Chan || ft.Kind() == reflect.Array {
			ft = ft.Elem()
		}
		if ft == reflect.TypeFor[necro.Event]() || ft == reflect.TypeFor[backend.Delivery]() {
			t.Errorf("Spine field %s (%s) holds events: queueing belongs to the backend", f.Name, f.Type)
		}
	}

	q := seedStore(t)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	blocker := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
		once.Do(func() { close(started) })
		select {
		case <-release:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	sp := seedSpine(t, q, spine.Config{Window: 4}, seedOrgan("Blocker", []string{"JOB"}, blocker))
	for i := range 20 {
		seedPut(t, q, seedEvent(t, "JOB", map[string]any{"i": i}))
	}
	done := make(chan error, 1)
	go func() { done <- sp.Run(t.Context()) }()
	select {
	case <-started:
	case <-time.After(seedRunLimit):
		t.Fatal("the organ was never called")
	}
	if n := q.Len(); n != 16 {
		t.Errorf("with a window of 4 full, the store holds %d of 20 events, want 16", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if st := sp.Stats(); st.Processed != 20 {
		t.Errorf("Processed = %d, want 20", st.Processed)
	}
}

// C12: the Spine goes through the backend. Our API has no start parameter: the user
// enqueues the start event. The Spine pulls it, and the events it emits reach the store
// through Settle, as the children of the settlement that acks their parent.
func TestSeedC12SpineGoesThroughTheBackend(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	var calls, received seedCalls
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("Emitter", []string{"START"}, seedEmit(&calls, "Emitter", "EMITTED", nil)),
		seedCollector(&received, "EMITTED"),
	)
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got := seedTypes(q.enqueueCalls()); !slices.Equal(got, []string{"START"}) {
		t.Errorf("Enqueue calls carried %v, want only the user's [START]", got)
	}
	if n := q.pullCount(); n < 1 {
		t.Errorf("Pull called %d times, want at least 1", n)
	}
	sts := q.settlementsApplied(ofEvent(start.ID()))
	if len(sts) != 1 || sts[0].Outcome != backend.Ack || !slices.Equal(seedTypes(sts[0].Children), []string{"EMITTED"}) {
		t.Fatalf("START settled as %+v, want one Ack carrying the EMITTED child", sts)
	}
	child := sts[0].Children[0]
	if got := q.settlementsApplied(ofEvent(child.ID())); len(got) != 1 || got[0].Outcome != backend.Ack {
		t.Errorf("EMITTED settled as %+v, want pulled and acked once", got)
	}
	if got := received.list(); !slices.Equal(got, []string{"EMITTED"}) {
		t.Errorf("received %v, want [EMITTED]", got)
	}
}

// C13 and C14: a handler error (C13) or panic (C14, the Go reading of an async raise)
// does not reach Run's caller. HandlerErrors counts failed attempts: 3 with the
// default retries, 1 with MaxAttempts 1 as in the seed.
func TestSeedC13C14HandlerErrorAndPanicAreCounted(t *testing.T) {
	for _, tc := range []struct {
		name        string
		panics      bool
		maxAttempts int
		want        int
	}{
		{"error/retries", false, 0, 3},
		{"error/no retry", false, supervision.NoRetry, 1},
		{"panic/retries", true, 0, 3},
		{"panic/no retry", true, supervision.NoRetry, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := seedStore(t)
			var calls seedCalls
			failing := func(context.Context, necro.Event) ([]necro.Event, error) {
				calls.add("FailingOrgan")
				if tc.panics {
					panic("boom")
				}
				return nil, errors.New("boom")
			}
			sp := seedSpine(t, q, spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: tc.maxAttempts, Backoff: seedNoWait}},
				seedOrgan("FailingOrgan", []string{"START"}, failing))
			seedPut(t, q, seedEvent(t, "START", nil))
			if err := seedRun(t, sp); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			st := sp.Stats()
			if got := st.HandlerErrors["FailingOrgan"]; got != int64(tc.want) {
				t.Errorf("HandlerErrors[FailingOrgan] = %d, want %d", got, tc.want)
			}
			if n := len(calls.list()); n != tc.want {
				t.Errorf("called %d times, want %d", n, tc.want)
			}
			wantPanics := int64(0)
			if tc.panics {
				wantPanics = int64(tc.want)
			}
			if st.Panics != wantPanics || st.DeadLettered != 1 {
				t.Errorf("Panics %d DeadLettered %d, want %d 1", st.Panics, st.DeadLettered, wantPanics)
			}
		})
	}
}

// C15: when one organ fails the others on the same event still run. Our stronger
// promise: the retry targets the failing organ only, so the sibling that succeeded
// runs once and its child is emitted once.
func TestSeedC15SiblingRunsOnceWhileFailingOrganIsRetried(t *testing.T) {
	for _, tc := range []struct {
		maxAttempts  int
		wantFailures int
	}{{supervision.NoRetry, 1}, {0, 3}, {5, 5}} {
		t.Run(fmt.Sprint("attempts ", tc.wantFailures), func(t *testing.T) {
			q := seedStore(t)
			var calls, collected seedCalls
			sp := seedSpine(t, q, spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: tc.maxAttempts, Backoff: seedNoWait}},
				seedOrgan("Failing", []string{"EV"}, seedFail(&calls, "Failing", errors.New("boom"))),
				seedOrgan("Sibling", []string{"EV"}, seedEmit(&calls, "Sibling", "SIB_DONE", nil)),
				seedCollector(&collected, "SIB_DONE"),
			)
			seedPut(t, q, seedEvent(t, "EV", nil))
			if err := seedRun(t, sp); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			if f, s := calls.count("Failing"), calls.count("Sibling"); f != tc.wantFailures || s != 1 {
				t.Errorf("Failing called %d times, Sibling %d; want %d and 1", f, s, tc.wantFailures)
			}
			if got := collected.list(); len(got) != 1 || sp.Stats().Emitted != 1 {
				t.Errorf("sibling's child handled %v (Emitted %d), want once", got, sp.Stats().Emitted)
			}
		})
	}
}

// C16: an empty returned slice emits nothing.
func TestSeedC16EmptySliceEmitsNothing(t *testing.T) {
	q := seedStore(t)
	sp := seedSpine(t, q, spine.Config{}, seedOrgan("Empty", []string{"START"},
		func(context.Context, necro.Event) ([]necro.Event, error) { return []necro.Event{}, nil }))
	seedPut(t, q, seedEvent(t, "START", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if st := sp.Stats(); st.Emitted != 0 || st.Processed != 1 {
		t.Errorf("Emitted %d Processed %d, want 0 1", st.Emitted, st.Processed)
	}
}

// C17: a fan-out of 10 children: all 10 are handled (in emit order, too).
func TestSeedC17FanOutOfTenIsHandled(t *testing.T) {
	q := seedStore(t)
	var calls, collected seedCalls
	var payloads []map[string]any
	var want []string
	for i := range 10 {
		payloads = append(payloads, map[string]any{"name": fmt.Sprint(i)})
		want = append(want, fmt.Sprint(i))
	}
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("Fan", []string{"START"}, seedEmit(&calls, "Fan", "ITEM", payloads...)),
		seedCollector(&collected, "ITEM"))
	seedPut(t, q, seedEvent(t, "START", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got := collected.list(); !slices.Equal(got, want) {
		t.Errorf("collected %v, want %v", got, want)
	}
}

// C18: Processed counts every delivery, routed or not: a 3-event chain plus one event
// nobody listens to gives 4.
func TestSeedC18ProcessedCountsEveryPulledEvent(t *testing.T) {
	q := seedStore(t)
	var calls seedCalls
	count := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		calls.add("Count")
		n := bodyOf(ev).N
		if n >= 3 {
			return nil, nil
		}
		next, err := necro.NewEvent("COUNT", map[string]any{"n": n + 1})
		return []necro.Event{next}, err
	}
	sp := seedSpine(t, q, spine.Config{}, seedOrgan("Counter", []string{"COUNT"}, count))
	seedPut(t, q, seedEvent(t, "COUNT", map[string]any{"n": 1}), seedEvent(t, "NOBODY_LISTENS", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	st := sp.Stats()
	if st.Processed != 4 || st.Dispatched != 4 || st.Unrouted != 1 || len(calls.list()) != 3 {
		t.Errorf("Processed %d Dispatched %d Unrouted %d handled %d, want 4 4 1 3",
			st.Processed, st.Dispatched, st.Unrouted, len(calls.list()))
	}
}

// C19: Emitted counts the children enqueued, not the start event.
func TestSeedC19EmittedCountsChildrenOnly(t *testing.T) {
	q := seedStore(t)
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{}, seedOrgan("Five", []string{"START"},
		seedEmit(&calls, "Five", "CHILD", nil, nil, nil, nil, nil)))
	seedPut(t, q, seedEvent(t, "START", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if st := sp.Stats(); st.Emitted != 5 || st.Processed != 6 {
		t.Errorf("Emitted %d Processed %d, want 5 6", st.Emitted, st.Processed)
	}
}

// C20: HandlerErrors is keyed by organ name and holds only organs that failed.
func TestSeedC20HandlerErrorsKeyedByOrganName(t *testing.T) {
	q := seedStore(t)
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}},
		seedOrgan("FailingOrgan", []string{"START"}, seedFail(&calls, "FailingOrgan", errors.New("boom"))),
		seedOrgan("FineOrgan", []string{"START"}, seedEmit(&calls, "FineOrgan", "")),
	)
	seedPut(t, q, seedEvent(t, "START", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got, want := sp.Stats().HandlerErrors, map[string]int64{"FailingOrgan": 1}; !maps.Equal(got, want) {
		t.Errorf("HandlerErrors = %v, want %v", got, want)
	}
}

// C21: a Spine with no organs is allowed; Stats is zero; the maps it returns are copies.
func TestSeedC21ZeroOrgansAndStatsSnapshot(t *testing.T) {
	q := seedStore(t)
	sp := seedSpine(t, q, spine.Config{})
	if got := sp.Organs(); len(got) != 0 {
		t.Errorf("Organs() = %v, want none", got)
	}
	assertZero := func(when string) {
		t.Helper()
		st := sp.Stats()
		if len(st.HandlerErrors) != 0 || len(st.EnqueueFailures) != 0 {
			t.Errorf("%s: maps = %v %v, want empty", when, st.HandlerErrors, st.EnqueueFailures)
		}
		st.HandlerErrors, st.EnqueueFailures = nil, nil
		if !reflect.DeepEqual(st, spine.Stats{}) {
			t.Errorf("%s: Stats() = %+v, want zero", when, st)
		}
	}
	assertZero("before Run")
	st := sp.Stats()
	if st.HandlerErrors != nil {
		st.HandlerErrors["Intruder"] = 7
	}
	if st.EnqueueFailures != nil {
		st.EnqueueFailures["INTRUDER"] = 7
	}
	assertZero("after changing the returned maps")

	// The same holds after a run that filled the maps.
	q2 := seedStore(t)
	var calls seedCalls
	sp2 := seedSpine(t, q2, spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}},
		seedOrgan("FailingOrgan", []string{"START"}, seedFail(&calls, "FailingOrgan", errors.New("boom"))))
	seedPut(t, q2, seedEvent(t, "START", nil))
	if err := seedRun(t, sp2); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	snap := sp2.Stats()
	snap.HandlerErrors["FailingOrgan"] = 100
	snap.HandlerErrors["Intruder"] = 1
	if got := sp2.Stats().HandlerErrors; !maps.Equal(got, map[string]int64{"FailingOrgan": 1}) {
		t.Errorf("after changing a snapshot, HandlerErrors = %v, want map[FailingOrgan:1]", got)
	}

	// With no organs, a run acks what it pulls as unrouted.
	seedPut(t, q, seedEvent(t, "ANY", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if st := sp.Stats(); st.Unrouted != 1 || st.Processed != 1 {
		t.Errorf("Unrouted %d Processed %d, want 1 1", st.Unrouted, st.Processed)
	}
}

// C22: Stop called from inside Handle ends the run after the current event: its
// children are still enqueued and it is acked; Run returns nil. Stats start again at
// zero on every run. Cancelling ctx also stops a run.
func TestSeedC22StopFromInsideHandle(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	var sp *spine.Spine
	var calls seedCalls
	stopper := func(context.Context, necro.Event) ([]necro.Event, error) {
		calls.add("Stopper")
		sp.Stop()
		next, err := necro.NewEvent("NEXT", nil)
		return []necro.Event{next}, err
	}
	sp = seedSpine(t, q, spine.Config{},
		seedOrgan("Stopper", []string{"START"}, stopper),
		seedOrgan("Next", []string{"NEXT"}, seedEmit(&calls, "Next", "")),
	)
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	sts := q.settlementsApplied(ofEvent(start.ID()))
	if len(sts) != 1 || sts[0].Outcome != backend.Ack || !slices.Equal(seedTypes(sts[0].Children), []string{"NEXT"}) {
		t.Errorf("START settled as %+v, want one Ack carrying NEXT", sts)
	}
	if got := calls.list(); !slices.Equal(got, []string{"Stopper"}) {
		t.Errorf("handlers ran %v, want only [Stopper]: the run stops after the current event", got)
	}
	if left := seedTypes(seedLeftOf(t, q)); !slices.Equal(left, []string{"NEXT"}) {
		t.Errorf("left in the store %v, want [NEXT]", left)
	}
	if st := sp.Stats(); st.Processed != 1 || st.Emitted != 1 {
		t.Errorf("first run: Processed %d Emitted %d, want 1 1", st.Processed, st.Emitted)
	}

	// A second run starts its stats from zero.
	q2 := seedStore(t)
	sp2 := seedSpine(t, q2, spine.Config{}, seedOrgan("Counter", []string{"JOB"}, seedEmit(&calls, "Counter", "")))
	for range 2 {
		seedPut(t, q2, seedEvent(t, "JOB", nil), seedEvent(t, "JOB", nil))
		if err := seedRun(t, sp2); err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
		if st := sp2.Stats(); st.Processed != 2 || st.Dispatched != 2 {
			t.Errorf("Processed %d Dispatched %d, want 2 2 on each run", st.Processed, st.Dispatched)
		}
	}

	// Cancelling ctx from a handler ends the run too, with nil.
	q3 := seedStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	canceler := func(context.Context, necro.Event) ([]necro.Event, error) {
		cancel()
		next, err := necro.NewEvent("JOB", nil) // a loop that only the cancel ends
		return []necro.Event{next}, err
	}
	sp3 := seedSpine(t, q3, spine.Config{MaxSteps: spine.Unlimited}, seedOrgan("Canceler", []string{"JOB"}, canceler))
	seedPut(t, q3, seedEvent(t, "JOB", nil))
	result := make(chan error, 1)
	go func() { result <- sp3.Run(ctx) }()
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("Run() after cancel = %v, want nil", err)
		}
	case <-time.After(seedRunLimit):
		t.Fatal("Run did not return after its ctx was canceled")
	}
}

// seedLeftOf is seedLeft for a seedQueue.
func seedLeftOf(t *testing.T, q *seedQueue) []necro.Event { t.Helper(); return seedLeft(t, q.Backend) }

// ---------------------------------------------------------------------------------
// 1.D Failure modes

// D1: when every handler succeeds the event is acked exactly once.
func TestSeedD1SuccessAcksOnce(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{},
		seedOrgan("A", []string{"START"}, seedEmit(&calls, "A", "")),
		seedOrgan("B", []string{"START"}, seedEmit(&calls, "B", "")))
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	sts := q.settlementsOffered(ofEvent(start.ID()))
	if len(sts) != 1 || sts[0].Outcome != backend.Ack {
		t.Errorf("START settled as %+v, want exactly one Ack", sts)
	}
}

// D2: HandlerNack: a failed event is not acked but left to the backend, which hands it
// out again to the failed organ only. The run ends normally (here through Stop, as the
// seed's harness did: a nacked event keeps a bounded run waiting for its redelivery).
func TestSeedD2NackModeLeavesEventToBackend(t *testing.T) {
	mem, err := memory.New(memory.Config{NackDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	q := newSeedQueue(mem)
	var sp *spine.Spine
	failing := func(context.Context, necro.Event) ([]necro.Event, error) {
		sp.Stop()
		return nil, errors.New("Handler failed")
	}
	sp = seedSpine(t, q, spine.Config{HandlerFailure: spine.HandlerNack, Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}},
		seedOrgan("FailingOrgan", []string{"START"}, failing))
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	sts := q.settlementsApplied(ofEvent(start.ID()))
	if len(sts) != 1 || sts[0].Outcome != backend.Nack || !slices.Equal(sts[0].Targets, []string{"FailingOrgan"}) {
		t.Fatalf("START settled as %+v, want one Nack targeting FailingOrgan and no Ack", sts)
	}
	if got := sp.Stats().HandlerErrors["FailingOrgan"]; got != 1 {
		t.Errorf("HandlerErrors[FailingOrgan] = %d, want 1", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ds, err := mem.Pull(ctx, 10)
	if err != nil || len(ds) != 1 || ds[0].Event.ID() != start.ID() || ds[0].Deliveries != 2 ||
		!slices.Equal(ds[0].Event.Meta().Targets, []string{"FailingOrgan"}) {
		t.Errorf("after the run the store handed out %+v (err %v), want START again (2nd delivery) for FailingOrgan", ds, err)
	}
}

// D3: HandlerDeadLetter (the seed's STORE, our default): after its last attempt the
// event is in the dead-letter store with the handler's error, and each delivery is
// acked exactly once.
func TestSeedD3DeadLetterModeStoresEventAndAcks(t *testing.T) {
	for _, tc := range []struct {
		maxAttempts, want int
	}{{supervision.NoRetry, 1}, {0, 3}} {
		t.Run(fmt.Sprint("attempts ", tc.want), func(t *testing.T) {
			q := newSeedQueue(seedStore(t))
			var calls seedCalls
			sp := seedSpine(t, q, spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: tc.maxAttempts, Backoff: seedNoWait}},
				seedOrgan("FailingOrgan", []string{"START"}, seedFail(&calls, "FailingOrgan", errors.New("Handler failed"))))
			start := seedEvent(t, "START", nil)
			seedPut(t, q, start)
			if err := seedRun(t, sp); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			dls := seedDeadLetters(t, q.Backend)
			if len(dls) != 1 {
				t.Fatalf("dead letters = %+v, want 1", dls)
			}
			dl := dls[0]
			if dl.Event.ID() != start.ID() || dl.Organ != "FailingOrgan" || dl.Attempts != tc.want ||
				!strings.Contains(dl.Error, "Handler failed") || dl.Reason != supervision.ReasonExhausted {
				t.Errorf("dead letter = %+v, want START by FailingOrgan after %d attempts, error containing \"Handler failed\", reason %q",
					dl, tc.want, supervision.ReasonExhausted)
			}
			sts := q.settlementsOffered(ofEvent(start.ID()))
			acks := 0
			for _, st := range sts {
				if st.Outcome == backend.Ack {
					acks++
				}
			}
			if len(sts) != tc.want || acks != tc.want {
				t.Errorf("START's %d deliveries settled %d times, %d acks; want each acked once", tc.want, len(sts), acks)
			}
		})
	}
}

// D15, first half: HandlerLog counts the failure and acks the event anyway.
func TestSeedD15LogModeAcksFailedEvent(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{HandlerFailure: spine.HandlerLog, Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}},
		seedOrgan("FailingOrgan", []string{"START"}, seedFail(&calls, "FailingOrgan", errors.New("Handler failed"))))
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	sts := q.settlementsApplied(ofEvent(start.ID()))
	if len(sts) != 1 || sts[0].Outcome != backend.Ack || len(sts[0].DeadLetters) != 0 {
		t.Errorf("START settled as %+v, want one Ack without dead letters", sts)
	}
	st := sp.Stats()
	if st.HandlerErrors["FailingOrgan"] != 1 || st.DeadLettered != 0 || len(seedDeadLetters(t, q.Backend)) != 0 {
		t.Errorf("HandlerErrors %v DeadLettered %d, want FailingOrgan:1 and no dead letter", st.HandlerErrors, st.DeadLettered)
	}
	if !q.Idle() {
		t.Errorf("the store still holds something (Len %d), want START acked", q.Len())
	}
}

// D15, second half: a settle the store rejects as an unknown delivery (it was settled
// by someone else) is an ack error: counted, and the loop goes on.
func TestSeedD15AckErrorIsCountedAndLoopContinues(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	first, second := seedEvent(t, "JOB", map[string]any{"name": "first"}), seedEvent(t, "JOB", map[string]any{"name": "second"})
	q.steal = func(st backend.Settlement) bool { return st.Delivery.Event.ID() == first.ID() }
	var collected seedCalls
	sp := seedSpine(t, q, spine.Config{Window: 1}, seedCollector(&collected, "JOB"))
	seedPut(t, q, first, second)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if st := sp.Stats(); st.AckErrors != 1 {
		t.Errorf("AckErrors = %d, want 1", st.AckErrors)
	}
	if got := collected.list(); !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("handled %v, want [first second]: the loop goes on after the ack error", got)
	}
	if sts := q.settlementsApplied(ofEvent(second.ID())); len(sts) != 1 || sts[0].Outcome != backend.Ack {
		t.Errorf("second settled as %+v, want acked", sts)
	}
}

// seedEnqueueRig is an organ emitting the given child types for START, collectors for
// them, and a store that refuses settlements carrying a child of type refuse (and, for
// EnqueueStore, Enqueue calls of that type) with errSimulated.
func seedEnqueueRig(t *testing.T, cfg spine.Config, refuse string, children ...string) (*seedQueue, *spine.Spine, *seedCalls, necro.Event) {
	t.Helper()
	q := newSeedQueue(seedStore(t))
	q.failSettle = func(st backend.Settlement) error {
		if withChild(refuse)(st) {
			return errSimulated
		}
		return nil
	}
	q.failEnqueue = func(ev necro.Event) error {
		if ev.Type() == refuse {
			return errSimulated
		}
		return nil
	}
	collected := &seedCalls{}
	emit := func(context.Context, necro.Event) ([]necro.Event, error) {
		var out []necro.Event
		for _, typ := range children {
			ev, err := necro.NewEvent(typ, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		return out, nil
	}
	sp := seedSpine(t, q, cfg, seedOrgan("Emitter", []string{"START"}, emit), seedCollector(collected, children...))
	start := seedEvent(t, "START", nil)
	seedPut(t, q, start)
	return q, sp, collected, start
}

// D4 and D5: EnqueueFail: the refused child ends the run with an *EnqueueError that
// wraps the store's error and carries its text; the failure was counted first; the
// parent goes back to the store unacked.
func TestSeedD4D5EnqueueFailEndsRun(t *testing.T) {
	q, sp, collected, start := seedEnqueueRig(t, spine.Config{EnqueueFailure: spine.EnqueueFail}, "EMITTED", "EMITTED")
	err := seedRun(t, sp)
	var ee *spine.EnqueueError
	if !errors.As(err, &ee) || !errors.Is(err, errSimulated) || !strings.Contains(err.Error(), errSimulated.Error()) {
		t.Fatalf("Run() = %v, want an *EnqueueError wrapping %q", err, errSimulated)
	}
	if ee.Event.Type() != "EMITTED" {
		t.Errorf("EnqueueError.Event is a %s, want the refused EMITTED child", ee.Event.Type())
	}
	st := sp.Stats()
	if st.EnqueueFailureCount("EMITTED") != 1 || st.EnqueueFailureCount("") != 1 {
		t.Errorf("EnqueueFailureCount(EMITTED) %d, (\"\") %d; want 1 1", st.EnqueueFailureCount("EMITTED"), st.EnqueueFailureCount(""))
	}
	if got := collected.list(); len(got) != 0 {
		t.Errorf("handled %v, want nothing of the refused child", got)
	}
	if left := seedLeftOf(t, q); len(left) != 1 || left[0].ID() != start.ID() {
		t.Errorf("left in the store %v, want START back unacked", seedTypes(left))
	}
}

// D6: EnqueueStore (the default): the refused child is dead-lettered with the store's
// error, the parent is acked, and the run ends normally.
func TestSeedD6EnqueueStoreDeadLettersRefusedChild(t *testing.T) {
	q, sp, collected, start := seedEnqueueRig(t, spine.Config{}, "EMITTED", "EMITTED")
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	dls := seedDeadLetters(t, q.Backend)
	if len(dls) != 1 || dls[0].Event.Type() != "EMITTED" || !strings.Contains(dls[0].Reason, "enqueue") ||
		!strings.Contains(dls[0].Error, errSimulated.Error()) {
		t.Fatalf("dead letters = %+v, want the EMITTED child, reason about enqueue, error %q", dls, errSimulated)
	}
	if m := dls[0].Event.Meta(); m.CausationID != start.ID() {
		t.Errorf("dead-lettered child lineage %+v, want caused by START %s", m, start.ID())
	}
	if sts := q.settlementsApplied(ofEvent(start.ID())); len(sts) != 1 || sts[0].Outcome != backend.Ack {
		t.Errorf("START settled as %+v, want acked once", sts)
	}
	if got := collected.list(); len(got) != 0 {
		t.Errorf("handled %v, want the refused child never handled", got)
	}
	if st := sp.Stats(); st.EnqueueFailureCount("EMITTED") != 1 || st.EnqueueFailureCount("") != 1 {
		t.Errorf("EnqueueFailureCount(EMITTED) %d, (\"\") %d; want 1 1", st.EnqueueFailureCount("EMITTED"), st.EnqueueFailureCount(""))
	}
}

// D7: EnqueueStore with children [A B C] where only A is refused: A is dead-lettered
// and never handled; B and C are enqueued and handled, in order.
func TestSeedD7EnqueueStoreGoesOnAfterRefusedChild(t *testing.T) {
	q, sp, collected, _ := seedEnqueueRig(t, spine.Config{}, "A", "A", "B", "C")
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if got := collected.list(); !slices.Equal(got, []string{"B", "C"}) {
		t.Errorf("handled %v, want [B C]", got)
	}
	dls := seedDeadLetters(t, q.Backend)
	if len(dls) != 1 || dls[0].Event.Type() != "A" {
		t.Errorf("dead letters = %+v, want exactly A", dls)
	}
	// As in the seed, which enqueued children one by one, only the child that could
	// not be placed counts as an enqueue failure: B and C were enqueued.
	st := sp.Stats()
	if st.EnqueueFailureCount("A") != 1 || st.EnqueueFailureCount("B") != 0 || st.EnqueueFailureCount("C") != 0 {
		t.Errorf("EnqueueFailures = %v, want map[A:1]: B and C were enqueued", st.EnqueueFailures)
	}
}

// D8: EnqueueRetry with a store that refuses twice and then accepts: exactly 3 Settle
// attempts for that settlement, no error, and the child is handled once.
func TestSeedD8EnqueueRetrySucceedsOnThirdAttempt(t *testing.T) {
	q, sp, collected, start := seedEnqueueRig(t, spine.Config{EnqueueFailure: spine.EnqueueRetry, EnqueueBackoff: seedTiny}, "none", "EMITTED")
	refusals := 0
	q.failSettle = func(st backend.Settlement) error {
		if withChild("EMITTED")(st) && refusals < 2 {
			refusals++
			return errSimulated
		}
		return nil
	}
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if n := len(q.settlementsOffered(withChild("EMITTED"))); n != 3 {
		t.Errorf("Settle attempts carrying EMITTED = %d, want 3", n)
	}
	if got := collected.list(); !slices.Equal(got, []string{"EMITTED"}) {
		t.Errorf("handled %v, want [EMITTED] once", got)
	}
	if sts := q.settlementsApplied(ofEvent(start.ID())); len(sts) != 1 || sts[0].Outcome != backend.Ack {
		t.Errorf("START settled as %+v, want acked once", sts)
	}
}

// D9: EnqueueRetry exhausted: an *EnqueueError wrapping the last error after
// 1+EnqueueRetries attempts; the parent goes back unacked.
func TestSeedD9EnqueueRetryExhaustedEndsRun(t *testing.T) {
	q, sp, _, start := seedEnqueueRig(t, spine.Config{EnqueueFailure: spine.EnqueueRetry, EnqueueRetries: 2, EnqueueBackoff: seedTiny},
		"EMITTED", "EMITTED")
	err := seedRun(t, sp)
	var ee *spine.EnqueueError
	if !errors.As(err, &ee) || !errors.Is(err, errSimulated) {
		t.Fatalf("Run() = %v, want an *EnqueueError wrapping %q", err, errSimulated)
	}
	if n := len(q.settlementsOffered(withChild("EMITTED"))); n != 3 {
		t.Errorf("Settle attempts carrying EMITTED = %d, want 1+2", n)
	}
	if left := seedLeftOf(t, q); len(left) != 1 || left[0].ID() != start.ID() {
		t.Errorf("left in the store %v, want START back unacked", seedTypes(left))
	}
}

// ---------------------------------------------------------------------------------
// 1.E Circuit breaker on pull failures

var errBackendDown = errors.New("backend unavailable")

// E1: pulls that always fail end a bounded run with *BackendUnavailableError after
// MaxConsecutiveBackendFailures of them.
func TestSeedE1FailingPullsTripTheBreaker(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	q.failPull = func(int) error { return errBackendDown }
	sp := seedSpine(t, q, spine.Config{MaxConsecutiveBackendFailures: 3, BackendBackoff: seedTiny},
		seedOrgan("Any", []string{"JOB"}, func(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil }))
	seedPut(t, q, seedEvent(t, "JOB", nil)) // something to pull, so the run does not end at once
	err := seedRun(t, sp)
	var bu *spine.BackendUnavailableError
	if !errors.As(err, &bu) || bu.FailureCount != 3 || !errors.Is(bu.LastErr, errBackendDown) ||
		!strings.Contains(err.Error(), "3 failures") || !errors.Is(err, errBackendDown) {
		t.Fatalf("Run() = %#v, want *BackendUnavailableError{FailureCount: 3} saying \"3 failures\", last error %q", err, errBackendDown)
	}
	if n := q.pullCount(); n != 3 {
		t.Errorf("Pull called %d times, want 3", n)
	}
}

// E2: failures below the threshold are counted and a successful pull resets the
// count. The seed's test: 2 failures then success. Ours adds a real reset: 4
// failures, a success, 4 more failures, and no trip at a threshold of 5.
func TestSeedE2SuccessfulPullResetsTheBreaker(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     func(n int) bool
		events   int
		wantErrs int64
		pulls    int
	}{
		{"2 failures then success", func(n int) bool { return n <= 2 }, 1, 2, 3},
		{"4 failures, success, 4 failures", func(n int) bool { return n <= 4 || (n >= 6 && n <= 9) }, 2, 8, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newSeedQueue(seedStore(t))
			q.failPull = func(n int) error {
				if tc.fail(n) {
					return fmt.Errorf("pull %d: %w", n, errBackendDown)
				}
				return nil
			}
			var collected seedCalls
			// Window 1: each successful pull takes one event, and the next pull waits
			// until it is settled.
			sp := seedSpine(t, q, spine.Config{Window: 1, MaxConsecutiveBackendFailures: 5, BackendBackoff: seedTiny},
				seedCollector(&collected, "JOB"))
			for range tc.events {
				seedPut(t, q, seedEvent(t, "JOB", nil))
			}
			if err := seedRun(t, sp); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			st := sp.Stats()
			if st.BackendErrors != tc.wantErrs || st.Processed != int64(tc.events) {
				t.Errorf("BackendErrors %d Processed %d, want %d %d", st.BackendErrors, st.Processed, tc.wantErrs, tc.events)
			}
			if n := q.pullCount(); n != tc.pulls {
				t.Errorf("Pull called %d times, want %d", n, tc.pulls)
			}
		})
	}
}

// E3: BackendErrors counts every failed pull and can be read after Run failed.
func TestSeedE3BackendErrorsReadableAfterTrip(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	q.failPull = func(int) error { return errBackendDown }
	sp := seedSpine(t, q, spine.Config{MaxConsecutiveBackendFailures: 5, BackendBackoff: seedTiny})
	seedPut(t, q, seedEvent(t, "JOB", nil))
	var bu *spine.BackendUnavailableError
	if err := seedRun(t, sp); !errors.As(err, &bu) {
		t.Fatalf("Run() = %v, want *BackendUnavailableError", err)
	}
	if st := sp.Stats(); st.BackendErrors != 5 {
		t.Errorf("BackendErrors = %d, want 5", st.BackendErrors)
	}
}

// E4: the default threshold is 10, as a constant and in behaviour.
func TestSeedE4DefaultThresholdIsTen(t *testing.T) {
	if spine.DefaultMaxConsecutiveBackendFailures != 10 {
		t.Errorf("DefaultMaxConsecutiveBackendFailures = %d, want 10", spine.DefaultMaxConsecutiveBackendFailures)
	}
	q := newSeedQueue(seedStore(t))
	q.failPull = func(int) error { return errBackendDown }
	sp := seedSpine(t, q, spine.Config{BackendBackoff: seedTiny})
	seedPut(t, q, seedEvent(t, "JOB", nil))
	var bu *spine.BackendUnavailableError
	if err := seedRun(t, sp); !errors.As(err, &bu) || bu.FailureCount != 10 {
		t.Fatalf("Run() = %v, want *BackendUnavailableError after 10 failures", err)
	}
	if n := q.pullCount(); n != 10 {
		t.Errorf("Pull called %d times, want 10", n)
	}
}

// ---------------------------------------------------------------------------------
// 1.F Handler timeout

// F1: a handler that outlives HandlerTimeout fails with necro.ErrHandlerTimeout, is
// counted per attempt, and the run ends long before the handler would have.
func TestSeedF1SlowHandlerTimesOut(t *testing.T) {
	for _, tc := range []struct {
		maxAttempts, want int
	}{{supervision.NoRetry, 1}, {0, 3}} {
		t.Run(fmt.Sprint("attempts ", tc.want), func(t *testing.T) {
			q := seedStore(t)
			slow := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
				select {
				case <-time.After(10 * time.Second):
					return nil, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			sp := seedSpine(t, q, spine.Config{HandlerTimeout: 100 * time.Millisecond,
				Retry: supervision.RetryPolicy{MaxAttempts: tc.maxAttempts, Backoff: seedNoWait}},
				seedOrgan("SlowOrgan", []string{"SLOW"}, slow))
			seedPut(t, q, seedEvent(t, "SLOW", nil))
			took, err := seedTimedRun(t, sp)
			if err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			if took >= 5*time.Second {
				t.Errorf("Run took %s, want well under 5s", took)
			}
			st := sp.Stats()
			if st.HandlerErrors["SlowOrgan"] != int64(tc.want) || st.Timeouts != int64(tc.want) {
				t.Errorf("HandlerErrors[SlowOrgan] %d Timeouts %d, want %d %d", st.HandlerErrors["SlowOrgan"], st.Timeouts, tc.want, tc.want)
			}
			dls := seedDeadLetters(t, q)
			if len(dls) != 1 || !strings.Contains(dls[0].Error, necro.ErrHandlerTimeout.Error()) || dls[0].Attempts != tc.want {
				t.Errorf("dead letters = %+v, want one after %d attempts with error %q", dls, tc.want, necro.ErrHandlerTimeout)
			}
		})
	}
}

// F1, the Go addition: a handler that ignores its ctx cannot be killed, but the Spine
// moves on: the call is abandoned, the event is retried or dead-lettered, and the
// organ handles later events on a fresh actor.
func TestSeedF1HandlerIgnoringCtxIsAbandoned(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxAttempts int
		deadLetter  bool
	}{{"dead-lettered", supervision.NoRetry, true}, {"retried", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			q := seedStore(t)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			var calls seedCalls
			deaf := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
				name := bodyOf(ev).Name
				calls.add(fmt.Sprintf("%s#%d", name, ev.Attempt()))
				if name == "first" && ev.Attempt() == 1 {
					<-release // ignores ctx on purpose
				}
				return nil, nil
			}
			sp := seedSpine(t, q, spine.Config{HandlerTimeout: 100 * time.Millisecond,
				Retry: supervision.RetryPolicy{MaxAttempts: tc.maxAttempts, Backoff: seedNoWait}},
				seedOrgan("DeafOrgan", []string{"JOB"}, deaf))
			first := seedEvent(t, "JOB", map[string]any{"name": "first"})
			seedPut(t, q, first, seedEvent(t, "JOB", map[string]any{"name": "second"}))
			took, err := seedTimedRun(t, sp)
			if err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			if took >= 5*time.Second {
				t.Errorf("Run took %s, want well under 5s", took)
			}
			st := sp.Stats()
			if st.Abandoned != 1 || st.Timeouts != 1 || st.HandlerErrors["DeafOrgan"] != 1 {
				t.Errorf("Abandoned %d Timeouts %d HandlerErrors %v, want 1 1 DeafOrgan:1", st.Abandoned, st.Timeouts, st.HandlerErrors)
			}
			got := calls.list()
			if !slices.Contains(got, "second#1") {
				t.Errorf("calls %v, want the later event handled by a fresh actor", got)
			}
			dls := seedDeadLetters(t, q)
			if tc.deadLetter {
				if len(dls) != 1 || dls[0].Event.ID() != first.ID() || !strings.Contains(dls[0].Error, necro.ErrHandlerTimeout.Error()) {
					t.Errorf("dead letters = %+v, want the first event with error %q", dls, necro.ErrHandlerTimeout)
				}
			} else if len(dls) != 0 || !slices.Contains(got, "first#2") {
				t.Errorf("calls %v, dead letters %+v; want the first event retried (first#2) and nothing dead-lettered", got, dls)
			}
		})
	}
}

// F2: a 50ms handler under a 1s timeout succeeds.
func TestSeedF2HandlerWithinTimeoutSucceeds(t *testing.T) {
	q := seedStore(t)
	sp := seedSpine(t, q, spine.Config{HandlerTimeout: time.Second}, seedOrgan("Steady", []string{"JOB"},
		func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
			select {
			case <-time.After(50 * time.Millisecond):
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}))
	seedPut(t, q, seedEvent(t, "JOB", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	if st := sp.Stats(); st.Processed != 1 || len(st.HandlerErrors) != 0 || st.Timeouts != 0 {
		t.Errorf("Processed %d HandlerErrors %v Timeouts %d, want 1, none, 0", st.Processed, st.HandlerErrors, st.Timeouts)
	}
}

// ---------------------------------------------------------------------------------
// 1.I Logging with correlation ids

// seedLogBuffer is a bytes.Buffer safe to read while loggers may still write to it.
type seedLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *seedLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records parses every line as a JSON object, failing the test on a line that is not.
func (b *seedLogBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	text := b.buf.String()
	b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(text) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON (%v): %q", err, line)
			continue
		}
		out = append(out, rec)
	}
	return out
}

func seedLogger(buf *seedLogBuffer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
}

// I1, I2 and I3: at Debug level each dispatch writes a JSON record with the event's id
// and type and the organ; a child's dispatch has its own record; every line, the
// actor system's included, is JSON. Deliberate change: the dispatch line is Debug,
// not the seed's INFO (per-event detail is Debug in STYLE.md), and its message is the
// constant "dispatching"; the ids are attributes.
func TestSeedI1I2I3DispatchRecordsCarryCorrelationFields(t *testing.T) {
	q := seedStore(t)
	var buf seedLogBuffer
	var sp *spine.Spine
	var followID string
	var mu sync.Mutex
	follow := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		mu.Lock()
		followID = ev.ID()
		mu.Unlock()
		sp.Stop() // a concurrent Stop while logging goes on
		return nil, nil
	}
	sp = seedSpine(t, q, spine.Config{Logger: seedLogger(&buf, slog.LevelDebug)},
		seedOrgan("LoggingOrgan", []string{"START_EVENT"}, seedEmit(&seedCalls{}, "LoggingOrgan", "FOLLOW_UP_EVENT", nil)),
		seedOrgan("FollowOrgan", []string{"FOLLOW_UP_EVENT"}, follow))
	start := seedEvent(t, "START_EVENT", nil)
	seedPut(t, q, start)
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	recs := buf.records(t)
	var dispatches []map[string]any
	for _, r := range recs {
		if r["msg"] == "dispatching" {
			dispatches = append(dispatches, r)
		}
	}
	mu.Lock()
	fid := followID
	mu.Unlock()
	want := []map[string]any{
		{"event_id": start.ID(), "event_type": "START_EVENT", "organ": "LoggingOrgan"},
		{"event_id": fid, "event_type": "FOLLOW_UP_EVENT", "organ": "FollowOrgan"},
	}
	if len(dispatches) != len(want) {
		t.Fatalf("dispatch records = %v, want %d", dispatches, len(want))
	}
	for i, w := range want {
		d := dispatches[i]
		for k, v := range w {
			if d[k] != v {
				t.Errorf("dispatch record %d: %s = %v, want %v (record %v)", i, k, d[k], v, d)
			}
		}
		if d["level"] != "DEBUG" || d["time"] == nil {
			t.Errorf("dispatch record %d: level %v time %v, want DEBUG and a time", i, d["level"], d["time"])
		}
	}
}

// I (log volume): at Info level nothing is written per event: a run of 1000 events
// that all succeed writes as many lines as a run of 10. Every line is JSON, the actor
// system's included.
func TestSeedILogVolumeAtInfoDoesNotGrowWithEvents(t *testing.T) {
	lines := func(n int) int {
		q := seedStore(t)
		var buf seedLogBuffer
		sp := seedSpine(t, q, spine.Config{Logger: seedLogger(&buf, slog.LevelInfo)},
			seedOrgan("Quiet", []string{"JOB"}, func(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil }))
		for i := range n {
			seedPut(t, q, seedEvent(t, "JOB", map[string]any{"i": i}))
		}
		if err := seedRun(t, sp); err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
		recs := buf.records(t)
		for _, r := range recs {
			if r["msg"] == "dispatching" {
				t.Errorf("per-event record at Info level: %v", r)
				break
			}
		}
		return len(recs)
	}
	if few, many := lines(10), lines(1000); few != many {
		t.Errorf("Info-level log lines: %d for 10 events, %d for 1000; want equal", few, many)
	}
}

// I (actor system): the actor system logs through the Spine's logger, so its lines are
// JSON too and carry their component.
func TestSeedIActorSystemLogsThroughTheSpineLogger(t *testing.T) {
	q := seedStore(t)
	var buf seedLogBuffer
	sp := seedSpine(t, q, spine.Config{Logger: seedLogger(&buf, slog.LevelDebug)},
		seedOrgan("Quiet", []string{"JOB"}, func(context.Context, necro.Event) ([]necro.Event, error) { return nil, nil }))
	seedPut(t, q, seedEvent(t, "JOB", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	n := 0
	for _, r := range buf.records(t) {
		if r["component"] == "protoactor" {
			n++
		}
	}
	if n == 0 {
		t.Errorf("no record with component=protoactor at Debug level; want the actor system's lines in the Spine's JSON log")
	}
}

// ---------------------------------------------------------------------------------
// 1.K Observable behaviours no seed test pins

// K: the step budget counts every event pulled, routed or not: it caps the events of
// a run, not the depth of a chain.
func TestSeedKStepBudgetCountsUnroutedEvents(t *testing.T) {
	q := seedStore(t)
	sp := seedSpine(t, q, spine.Config{MaxSteps: 3})
	for range 5 {
		seedPut(t, q, seedEvent(t, "NOBODY_LISTENS", nil))
	}
	if err := seedRun(t, sp); !errors.Is(err, necro.ErrStepBudgetExceeded) {
		t.Fatalf("Run() = %v, want necro.ErrStepBudgetExceeded", err)
	}
	if st := sp.Stats(); st.Dispatched != 3 || st.Unrouted != 3 {
		t.Errorf("Dispatched %d Unrouted %d, want 3 3", st.Dispatched, st.Unrouted)
	}
	if n := q.Len(); n != 2 {
		t.Errorf("store holds %d, want the 2 events beyond the budget", n)
	}
}

// K: the seed polled with a fixed 1s pull timeout, so stop took up to 1s. Our Stop
// wakes a waiting Pull at once.
func TestSeedKStopWakesAWaitingPull(t *testing.T) {
	q := newSeedQueue(seedStore(t))
	sp := seedSpine(t, q, spine.Config{})
	result := make(chan error, 1)
	go func() { result <- sp.Serve(t.Context()) }()
	deadline := time.Now().Add(seedRunLimit)
	for q.pullCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Serve never pulled")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the Pull settle into waiting
	stopped := time.Now()
	sp.Stop()
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("Serve() = %v, want nil after Stop", err)
		}
		if took := time.Since(stopped); took >= 500*time.Millisecond {
			t.Errorf("Serve took %s to return after Stop, want well under the seed's 1s poll", took)
		}
	case <-time.After(seedRunLimit):
		t.Fatal("Serve did not return after Stop")
	}
}

// K: the seed stored a failed event once, with the last error only, however many
// organs failed. The unit of failure here is (event, organ), on purpose: each failing
// organ gets its own dead letter with its own error.
func TestSeedKEachFailingOrganIsDeadLetteredOnItsOwn(t *testing.T) {
	q := seedStore(t)
	var calls seedCalls
	sp := seedSpine(t, q, spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}},
		seedOrgan("First", []string{"START"}, seedFail(&calls, "First", errors.New("first broke"))),
		seedOrgan("Second", []string{"START"}, seedFail(&calls, "Second", errors.New("second broke"))))
	seedPut(t, q, seedEvent(t, "START", nil))
	if err := seedRun(t, sp); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	var got []string
	for _, dl := range seedDeadLetters(t, q) {
		got = append(got, dl.Organ+": "+dl.Error)
	}
	if want := []string{"First: first broke", "Second: second broke"}; !slices.Equal(got, want) {
		t.Errorf("dead letters %q, want %q", got, want)
	}
}

// K: enqueue-failure logs carry failure_mode "fail", "retry" or "store", and a retry's
// log carries its attempt number counting from 1.
func TestSeedKEnqueueFailureLogsCarryFailureMode(t *testing.T) {
	for _, mode := range []spine.EnqueueFailureMode{spine.EnqueueFail, spine.EnqueueRetry, spine.EnqueueStore} {
		t.Run(mode.String(), func(t *testing.T) {
			var buf seedLogBuffer
			cfg := spine.Config{EnqueueFailure: mode, EnqueueRetries: 1, EnqueueBackoff: seedTiny, Logger: seedLogger(&buf, slog.LevelInfo)}
			_, sp, _, _ := seedEnqueueRig(t, cfg, "EMITTED", "EMITTED")
			_ = seedRun(t, sp) // the error is D4's and D9's business
			var modes []any
			var retryAttempts []any
			for _, r := range buf.records(t) {
				if r["failure_mode"] != nil {
					modes = append(modes, r["failure_mode"])
				}
				if r["msg"] == "enqueue retry failed" {
					retryAttempts = append(retryAttempts, r["attempt"])
				}
			}
			if len(modes) == 0 || slices.ContainsFunc(modes, func(m any) bool { return m != mode.String() }) {
				t.Errorf("failure_mode in the logs: %v, want only %q", modes, mode.String())
			}
			if mode == spine.EnqueueRetry && !slices.Equal(retryAttempts, []any{1.0}) {
				t.Errorf("retry log attempts %v, want [1]", retryAttempts)
			}
		})
	}
}

// K: EnqueueFailureCount("") sums every type.
func TestSeedKEnqueueFailureCountOfAllTypes(t *testing.T) {
	st := spine.Stats{EnqueueFailures: map[string]int64{"A": 2, "B": 3}}
	if got := st.EnqueueFailureCount(""); got != 5 {
		t.Errorf("EnqueueFailureCount(\"\") = %d, want 5", got)
	}
	if got := st.EnqueueFailureCount("B"); got != 3 {
		t.Errorf("EnqueueFailureCount(B) = %d, want 3", got)
	}
}
