package spine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// The helpers of this file start with lc (lifecycle) to keep clear of the names other
// test files of the package declare.

// lcWait bounds every wait: generous, so that a loaded 2-core machine running the race
// detector does not fail a test that is merely slow.
const lcWait = 30 * time.Second

// lcInstant retries and restarts at once; lcTiny waits a millisecond.
var (
	lcInstant = supervision.Backoff{Base: time.Nanosecond, Max: time.Nanosecond, Jitter: supervision.NoJitter}
	lcTiny    = supervision.Backoff{Base: time.Millisecond, Max: time.Millisecond, Jitter: supervision.NoJitter}
)

func lcQueue(t *testing.T) *memory.Backend {
	t.Helper()
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() }) // a test may have closed it already
	return q
}

func lcSpine(t *testing.T, q backend.Backend, mounts []necro.Mount, cfg spine.Config) *spine.Spine {
	t.Helper()
	sp, err := spine.New(q, mounts, cfg)
	if err != nil {
		t.Fatalf("spine.New: %v", err)
	}
	return sp
}

// lcEnqueue enqueues events of type typ numbered from..to-1 and returns them.
func lcEnqueue(t *testing.T, q backend.Backend, typ string, from, to int) []necro.Event {
	t.Helper()
	var evs []necro.Event
	for n := from; n < to; n++ {
		ev, err := necro.NewEvent(typ, map[string]any{"n": n})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := q.Enqueue(t.Context(), evs...); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return evs
}

func lcN(ev necro.Event) int {
	var p struct{ N int }
	_ = ev.DecodePayload(&p) // the tests build every payload themselves
	return p.N
}

func lcIDs(evs []necro.Event) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID()
	}
	return ids
}

// lcEventually polls cond until it holds or lcWait has passed.
func lcEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(lcWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", lcWait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lcRecv waits for a value from ch.
func lcRecv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(lcWait):
		t.Fatalf("waited %v for %s", lcWait, what)
		var zero T
		return zero
	}
}

// lcGo runs f (a Run or Serve) on its own goroutine and returns the channel its error
// arrives on. Cleanup makes sure it has returned before the test ends.
func lcGo(t *testing.T, f func() error) <-chan error {
	t.Helper()
	out := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		out <- f()
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(lcWait):
			t.Errorf("a Run or Serve still had not returned %v after the test", lcWait)
		}
	})
	return out
}

// lcServe serves sp on its own goroutine until the returned cancel is called; cleanup
// cancels it too.
func lcServe(t *testing.T, sp *spine.Spine) (cancel context.CancelFunc, result <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	result = lcGo(t, func() error { return sp.Serve(ctx) })
	t.Cleanup(cancel) // registered last, so it runs before lcGo's cleanup waits for Serve
	return cancel, result
}

// lcCall is one Handle call an organ saw.
type lcCall struct {
	organ    string
	id       string
	n        int
	attempt  int
	instance int // which instance of the organ handled it, when it says
	count    int // how many events that instance had handled, this one included
	ok       bool
	at       time.Time
}

// lcCalls records Handle calls from any goroutine.
type lcCalls struct {
	mu    sync.Mutex
	calls []lcCall
}

func (c *lcCalls) add(call lcCall) {
	call.at = time.Now()
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
}

func (c *lcCalls) snapshot() []lcCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// where returns the calls that keep holds for.
func (c *lcCalls) where(keep func(lcCall) bool) []lcCall {
	var out []lcCall
	for _, call := range c.snapshot() {
		if keep(call) {
			out = append(out, call)
		}
	}
	return out
}

func (c *lcCalls) count(keep func(lcCall) bool) int { return len(c.where(keep)) }

// lcRecorder returns an OrganFunc that records each call under organ, then defers to
// f; a nil f handles every event without children.
func lcRecorder(calls *lcCalls, organ string, f necro.OrganFunc) necro.OrganFunc {
	return func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		children, err := []necro.Event(nil), error(nil)
		ok := false
		defer func() {
			calls.add(lcCall{organ: organ, id: ev.ID(), n: lcN(ev), attempt: ev.Attempt(), ok: ok})
		}()
		if f != nil {
			children, err = f(ctx, ev)
		}
		ok = err == nil
		return children, err
	}
}

// ---- 1. panics ----

func TestPanicGoesToRetryPathAndCrashedBatchResumes(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	fragile := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		switch n := lcN(ev); {
		case n == 2 && ev.Attempt() == 1:
			panic("boom 2")
		case n == 4:
			panic(fmt.Sprintf("always %d", n))
		}
		child, err := necro.NewEvent("done", map[string]any{"n": lcN(ev)})
		return []necro.Event{child}, err
	}
	mounts := []necro.Mount{
		{Name: "fragile", Organ: necro.NewOrgan([]string{"job"}, lcRecorder(&calls, "fragile", fragile))},
		{Name: "sink", Organ: necro.NewOrgan([]string{"done"}, lcRecorder(&calls, "sink", nil))},
	}
	sp := lcSpine(t, q, mounts, spine.Config{
		Retry:   supervision.RetryPolicy{MaxAttempts: 2, Backoff: lcInstant},
		Restart: supervision.OneForOne{Backoff: lcTiny},
	})
	roots := lcEnqueue(t, q, "job", 0, 6)
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}

	st := sp.Stats()
	if st.Panics != 3 || st.Restarts != 3 || st.Quarantines != 0 || st.HandlerErrors["fragile"] != 3 {
		t.Errorf("Stats: Panics %d Restarts %d Quarantines %d HandlerErrors[fragile] %d; want 3 3 0 3",
			st.Panics, st.Restarts, st.Quarantines, st.HandlerErrors["fragile"])
	}
	// Every event but the one that always panics is handled once, the one that
	// panicked once on its second attempt; the events after a panic in its batch too.
	for _, ev := range roots {
		n := lcN(ev)
		ok := calls.where(func(c lcCall) bool { return c.organ == "fragile" && c.id == ev.ID() && c.ok })
		switch n {
		case 4:
			if len(ok) != 0 {
				t.Errorf("event 4 always panics but was handled: %+v", ok)
			}
		case 2:
			if len(ok) != 1 || ok[0].attempt != 2 {
				t.Errorf("event 2 panicked on attempt 1: successful calls %+v, want one at attempt 2", ok)
			}
		default:
			if len(ok) != 1 || ok[0].attempt != 1 {
				t.Errorf("event %d: successful calls %+v, want one at attempt 1", n, ok)
			}
		}
	}
	var sunk []int
	for _, c := range calls.where(func(c lcCall) bool { return c.organ == "sink" }) {
		sunk = append(sunk, c.n)
	}
	slices.Sort(sunk)
	if want := []int{0, 1, 2, 3, 5}; !slices.Equal(sunk, want) {
		t.Errorf("children handled by sink: %v, want %v", sunk, want)
	}

	dls := seedDeadLetters(t, q)
	if len(dls) != 1 {
		t.Fatalf("dead letters: %d, want 1 (event 4): %+v", len(dls), dls)
	}
	dl := dls[0]
	if dl.Event.ID() != roots[4].ID() || dl.Organ != "fragile" || dl.Attempts != 2 || dl.Reason != supervision.ReasonExhausted {
		t.Errorf("dead letter: event %s organ %q attempts %d reason %q; want %s \"fragile\" 2 %q",
			dl.Event.ID(), dl.Organ, dl.Attempts, dl.Reason, roots[4].ID(), supervision.ReasonExhausted)
	}
	if want := (&necro.PanicError{Value: "always 4"}).Error(); dl.Error != want {
		t.Errorf("dead letter Error = %q, want the PanicError's text %q", dl.Error, want)
	}
	if !q.Idle() {
		t.Errorf("backend not idle after Run: %d ready", q.Len())
	}
}

// ---- 2. fresh instances ----

// lcCounter is a stateful organ: it counts the events it handled, and panics on the
// first attempt at an event numbered panicOn.
type lcCounter struct {
	instance int
	n        int
	panicOn  int
	calls    *lcCalls
}

func (c *lcCounter) ListensTo() []string { return []string{"job"} }

func (c *lcCounter) Handle(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	c.n++
	c.calls.add(lcCall{organ: "counter", id: ev.ID(), n: lcN(ev), attempt: ev.Attempt(), instance: c.instance, count: c.n})
	if lcN(ev) == c.panicOn && ev.Attempt() == 1 {
		panic("boom")
	}
	return nil, nil
}

func TestRestartBuildsFreshOrganFromFactory(t *testing.T) {
	cfg := spine.Config{
		Retry:   supervision.RetryPolicy{MaxAttempts: 3, Backoff: lcInstant},
		Restart: supervision.OneForOne{Backoff: lcTiny},
	}
	t.Run("factory", func(t *testing.T) {
		q := lcQueue(t)
		var calls lcCalls
		var made atomic.Int32
		mount := necro.Mount{Name: "counter", Factory: func() necro.Organ {
			return &lcCounter{instance: int(made.Add(1)), panicOn: 2, calls: &calls}
		}}
		sp := lcSpine(t, q, []necro.Mount{mount}, cfg)
		before := made.Load() // New may build one to learn what it listens to
		lcEnqueue(t, q, "job", 0, 5)
		if err := sp.Run(t.Context()); err != nil {
			t.Fatalf("Run() = %v", err)
		}
		if got := made.Load() - before; got != 2 {
			t.Errorf("factory called %d times by Run, want 2: one start and one restart", got)
		}
		if st := sp.Stats(); st.Restarts != 1 || st.Panics != 1 {
			t.Errorf("Stats: Restarts %d Panics %d, want 1 1", st.Restarts, st.Panics)
		}
		got := calls.snapshot()
		if len(got) != 6 {
			t.Fatalf("calls: %+v, want 6 (5 events, one of them twice)", got)
		}
		// The instance that panicked handled 3 events; a fresh one counts from 1.
		crash := slices.IndexFunc(got, func(c lcCall) bool { return c.n == 2 && c.attempt == 1 })
		for i, c := range got {
			wantCount := i + 1
			if i > crash {
				wantCount = i - crash
			}
			if c.count != wantCount || (i > crash) != (c.instance != got[0].instance) {
				t.Errorf("call %d (event %d attempt %d): instance %d count %d; want count %d and a new instance only after the panic at call %d\nall calls: %+v",
					i, c.n, c.attempt, c.instance, c.count, wantCount, crash, got)
			}
		}
	})
	t.Run("organ value is reused", func(t *testing.T) {
		q := lcQueue(t)
		var calls lcCalls
		shared := &lcCounter{instance: 1, panicOn: 2, calls: &calls}
		sp := lcSpine(t, q, []necro.Mount{{Name: "counter", Organ: shared}}, cfg)
		lcEnqueue(t, q, "job", 0, 5)
		if err := sp.Run(t.Context()); err != nil {
			t.Fatalf("Run() = %v", err)
		}
		got := calls.snapshot()
		if len(got) != 6 {
			t.Fatalf("calls: %+v, want 6", got)
		}
		for i, c := range got {
			if c.count != i+1 {
				t.Errorf("call %d: count %d, want %d: an Organ mount keeps its value across restarts; calls %+v", i, c.count, i+1, got)
			}
		}
		if sp.Stats().Restarts != 1 {
			t.Errorf("Restarts = %d, want 1", sp.Stats().Restarts)
		}
	})
}

// ---- 3. restart intensity and quarantine ----

func TestRestartIntensityQuarantinesOrganWithoutLosingEvents(t *testing.T) {
	const quarantine = 300 * time.Millisecond
	q := lcQueue(t)
	var calls lcCalls
	bad := func(context.Context, necro.Event) ([]necro.Event, error) { panic("always") }
	mounts := []necro.Mount{
		{Name: "bad", Organ: necro.NewOrgan([]string{"bad"}, lcRecorder(&calls, "bad", bad))},
		{Name: "good", Organ: necro.NewOrgan([]string{"good"}, lcRecorder(&calls, "good", nil))},
	}
	sp := lcSpine(t, q, mounts, spine.Config{
		Retry: supervision.RetryPolicy{MaxAttempts: 3, Backoff: lcInstant},
		Restart: supervision.OneForOne{MaxRestarts: 2, Window: time.Minute, Backoff: lcTiny,
			Quarantine: quarantine, MaxQuarantine: quarantine},
	})
	// 3 bad events × 3 attempts = 9 crashes: the 3rd, 6th and 9th quarantine the organ.
	badRoots := lcEnqueue(t, q, "bad", 0, 3)
	goodRoots := lcEnqueue(t, q, "good", 100, 102)
	cancel, result := lcServe(t, sp)

	lcEventually(t, "the first quarantine", func() bool { return sp.Stats().Quarantines >= 1 })
	// While "bad" sits out its quarantine, "good" keeps serving events enqueued now.
	goodRoots = append(goodRoots, lcEnqueue(t, q, "good", 102, 104)...)
	lcEventually(t, "good to handle the events enqueued during the quarantine", func() bool {
		return calls.count(func(c lcCall) bool { return c.organ == "good" && c.n >= 102 }) == 2
	})
	badCalls := calls.where(func(c lcCall) bool { return c.organ == "bad" })
	goodAt := calls.where(func(c lcCall) bool { return c.organ == "good" && c.n >= 102 })[1].at
	if len(badCalls) > 3 && badCalls[3].at.Before(goodAt) {
		t.Errorf("good handled its events at %v, after bad's first call past the quarantine at %v; want good served during the quarantine",
			goodAt.Format(time.StampMicro), badCalls[3].at.Format(time.StampMicro))
	}

	lcEventually(t, "every bad event dead-lettered and 3 quarantines", func() bool {
		st := sp.Stats()
		return st.DeadLettered == 3 && st.Quarantines == 3 && st.Panics == 9
	})
	cancel()
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Fatalf("Serve() = %v, want nil after cancel", err)
	}

	st := sp.Stats()
	if st.Restarts != 9 || st.Quarantines != 3 {
		t.Errorf("Stats: Restarts %d Quarantines %d, want 9 3", st.Restarts, st.Quarantines)
	}
	// The organ sat out each quarantine: the call after every third crash came at
	// least a quarantine later.
	badCalls = calls.where(func(c lcCall) bool { return c.organ == "bad" })
	if len(badCalls) != 9 {
		t.Fatalf("bad was called %d times, want 9 (3 events × 3 attempts)", len(badCalls))
	}
	for _, i := range []int{2, 5} {
		if gap := badCalls[i+1].at.Sub(badCalls[i].at); gap < quarantine {
			t.Errorf("bad's call %d came %v after the quarantining crash %d, want at least %v", i+2, gap, i+1, quarantine)
		}
	}
	// Every root event met exactly one fate: handled or dead-lettered.
	fates := map[string]int{}
	for _, c := range calls.where(func(c lcCall) bool { return c.ok }) {
		fates[c.id]++
	}
	for _, dl := range seedDeadLetters(t, q) {
		fates[dl.Event.ID()]++
		if dl.Organ != "bad" || dl.Attempts != 3 {
			t.Errorf("dead letter of %s: organ %q attempts %d, want \"bad\" 3", dl.Event.ID(), dl.Organ, dl.Attempts)
		}
	}
	all := append(slices.Clone(badRoots), goodRoots...)
	for _, ev := range all {
		if fates[ev.ID()] != 1 {
			t.Errorf("%s event %d: %d fates, want exactly 1 (handled or dead-lettered)", ev.Type(), lcN(ev), fates[ev.ID()])
		}
	}
	if len(fates) != len(all) {
		t.Errorf("%d events met a fate, want %d", len(fates), len(all))
	}
	if !q.Idle() {
		t.Errorf("backend not idle: %d ready", q.Len())
	}
}

// ---- 4. timeouts and abandoned handlers ----

func TestHandlerDeadlineComesThroughCtx(t *testing.T) {
	const timeout = 50 * time.Millisecond
	q := lcQueue(t)
	type observed struct {
		start, deadline time.Time
		ok              bool
		err             error
	}
	seen := make(chan observed, 1)
	honest := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
		o := observed{start: time.Now()}
		o.deadline, o.ok = ctx.Deadline()
		select {
		case <-ctx.Done():
		case <-time.After(lcWait):
		}
		o.err = ctx.Err()
		seen <- o
		return nil, ctx.Err()
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "honest", Organ: necro.NewOrgan([]string{"job"}, honest)}},
		spine.Config{HandlerTimeout: timeout, AbandonAfter: timeout, Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}})
	before := time.Now()
	lcEnqueue(t, q, "job", 0, 1)
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	o := lcRecv(t, "the handler's observation", seen)
	if !o.ok || o.deadline.Before(before.Add(timeout)) || o.deadline.After(o.start.Add(timeout)) {
		t.Errorf("ctx.Deadline() = %v, %v; want a deadline within [enqueue+%v, call start+%v] = [%v, %v]",
			o.deadline, o.ok, timeout, timeout, before.Add(timeout), o.start.Add(timeout))
	}
	if !errors.Is(o.err, context.DeadlineExceeded) {
		t.Errorf("ctx.Err() at the deadline = %v, want context.DeadlineExceeded", o.err)
	}
	st := sp.Stats()
	if st.Timeouts != 1 || st.Abandoned != 0 {
		t.Errorf("Stats: Timeouts %d Abandoned %d, want 1 0 (the handler honoured its ctx)", st.Timeouts, st.Abandoned)
	}
	dls := seedDeadLetters(t, q)
	if len(dls) != 1 || !strings.Contains(dls[0].Error, necro.ErrHandlerTimeout.Error()) {
		t.Errorf("dead letters %+v, want one whose Error says %q", dls, necro.ErrHandlerTimeout)
	}
}

// lcDeaf is a stateless organ that ignores its ctx: the first attempt at every event
// numbered in block waits for release.
type lcDeaf struct {
	block    map[int]bool
	release  chan struct{}
	once     sync.Once
	calls    *lcCalls
	blocked  atomic.Int32 // calls waiting for release now
	returned atomic.Int32 // blocked calls that returned
}

func newLCDeaf(calls *lcCalls, block ...int) *lcDeaf {
	d := &lcDeaf{block: map[int]bool{}, release: make(chan struct{}), calls: calls}
	for _, n := range block {
		d.block[n] = true
	}
	return d
}

func (d *lcDeaf) ListensTo() []string { return []string{"job"} }

func (d *lcDeaf) Handle(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	call := lcCall{organ: "deaf", id: ev.ID(), n: lcN(ev), attempt: ev.Attempt(), ok: true,
		count: int(d.blocked.Load())} // count: blocked calls running while this one started
	if d.block[lcN(ev)] && ev.Attempt() == 1 {
		call.ok = false
		d.calls.add(call)
		d.blocked.Add(1)
		<-d.release // deliberately deaf to ctx
		d.blocked.Add(-1)
		d.returned.Add(1)
		return nil, nil
	}
	d.calls.add(call)
	return nil, nil
}

func (d *lcDeaf) unblock() { d.once.Do(func() { close(d.release) }) }

func TestHandlerIgnoringCtxIsAbandonedAndOrganGoesOn(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	deaf := newLCDeaf(&calls, 0)
	sp := lcSpine(t, q, []necro.Mount{{Name: "deaf", Organ: deaf}}, spine.Config{
		HandlerTimeout: 50 * time.Millisecond, AbandonAfter: 50 * time.Millisecond,
		Retry: supervision.RetryPolicy{MaxAttempts: 3, Backoff: lcInstant},
	})
	roots := lcEnqueue(t, q, "job", 0, 3)
	cancel, result := lcServe(t, sp)
	t.Cleanup(deaf.unblock) // registered after lcServe, so it runs before the wait for Serve

	// Events 1 and 2, and the retry of event 0, are handled by a fresh actor while
	// the first call still blocks.
	lcEventually(t, "every event handled", func() bool {
		return calls.count(func(c lcCall) bool { return c.ok }) == 3
	})
	if deaf.blocked.Load() != 1 || deaf.returned.Load() != 0 {
		t.Fatalf("the abandoned call should still block: blocked %d returned %d", deaf.blocked.Load(), deaf.returned.Load())
	}
	for _, c := range calls.where(func(c lcCall) bool { return c.ok }) {
		if c.count != 1 {
			t.Errorf("event %d attempt %d was handled with %d calls blocked, want 1: the organ must go on beside the stuck call", c.n, c.attempt, c.count)
		}
	}
	if ok := calls.where(func(c lcCall) bool { return c.ok && c.id == roots[0].ID() }); len(ok) != 1 || ok[0].attempt != 2 {
		t.Errorf("event 0 after its abandoned attempt: %+v, want handled once at attempt 2", ok)
	}
	st := sp.Stats()
	if st.Abandoned != 1 || st.Timeouts != 1 || st.Quarantines != 0 {
		t.Errorf("Stats: Abandoned %d Timeouts %d Quarantines %d, want 1 1 0", st.Abandoned, st.Timeouts, st.Quarantines)
	}

	deaf.unblock()
	lcEventually(t, "the abandoned call to return", func() bool { return deaf.returned.Load() == 1 })
	lcEventually(t, "every delivery settled", q.Idle)
	cancel()
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if st := sp.Stats(); st.Processed != 4 {
		t.Errorf("Processed = %d, want 4 (3 events and one retry); the abandoned call's late result must be dropped", st.Processed)
	}
}

func TestTooManyAbandonedHandlersQuarantineOrgan(t *testing.T) {
	const quarantine = 300 * time.Millisecond
	q := lcQueue(t)
	var calls lcCalls
	deaf := newLCDeaf(&calls, 0, 1)
	sp := lcSpine(t, q, []necro.Mount{{Name: "deaf", Organ: deaf}}, spine.Config{
		HandlerTimeout: 50 * time.Millisecond, AbandonAfter: 50 * time.Millisecond, MaxAbandoned: 1,
		Retry:   supervision.RetryPolicy{MaxAttempts: 3, Backoff: lcInstant},
		Restart: supervision.OneForOne{Quarantine: quarantine},
	})
	roots := lcEnqueue(t, q, "job", 0, 2)
	cancel, result := lcServe(t, sp)
	t.Cleanup(deaf.unblock)

	lcEventually(t, "the organ to be quarantined", func() bool { return sp.Stats().Quarantines >= 1 })
	lcEventually(t, "both events handled at attempt 2 after the quarantine", func() bool {
		return calls.count(func(c lcCall) bool { return c.ok }) == 2
	})
	st := sp.Stats()
	if st.Abandoned != 2 || st.Quarantines != 1 {
		t.Errorf("Stats: Abandoned %d Quarantines %d, want 2 1", st.Abandoned, st.Quarantines)
	}
	stuck := calls.where(func(c lcCall) bool { return !c.ok })
	if len(stuck) != 2 {
		t.Fatalf("stuck calls: %+v, want 2", stuck)
	}
	for _, c := range calls.where(func(c lcCall) bool { return c.ok }) {
		if c.attempt != 2 {
			t.Errorf("event %d handled at attempt %d, want 2", c.n, c.attempt)
		}
		// The second stuck call is abandoned a timeout plus AbandonAfter after it
		// began; the quarantine starts then.
		if gap := c.at.Sub(stuck[1].at); gap < quarantine {
			t.Errorf("event %d handled %v after the second stuck call began, want more than the %v quarantine", c.n, gap, quarantine)
		}
	}
	deaf.unblock()
	lcEventually(t, "the abandoned calls to return", func() bool { return deaf.returned.Load() == 2 })
	cancel()
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	for _, ev := range roots {
		if n := calls.count(func(c lcCall) bool { return c.ok && c.id == ev.ID() }); n != 1 {
			t.Errorf("event %d handled %d times, want 1", lcN(ev), n)
		}
	}
}

func TestServeReturnsPromptlyWhileAbandonedCallBlocks(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	deaf := newLCDeaf(&calls, 0)
	sp := lcSpine(t, q, []necro.Mount{{Name: "deaf", Organ: deaf}}, spine.Config{
		HandlerTimeout: 50 * time.Millisecond, AbandonAfter: 50 * time.Millisecond,
		Retry: supervision.RetryPolicy{MaxAttempts: 3, Backoff: lcInstant},
	})
	lcEnqueue(t, q, "job", 0, 1)
	cancel, result := lcServe(t, sp)
	t.Cleanup(deaf.unblock)
	lcEventually(t, "the retry of the abandoned event", func() bool {
		return calls.count(func(c lcCall) bool { return c.ok }) == 1
	})
	// Run's doc: it returns after every goroutine it started has exited, "except
	// Handle calls abandoned for ignoring their ctx".
	const limit = 3 * time.Second
	start := time.Now()
	cancel()
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if took := time.Since(start); took > limit {
		t.Errorf("Serve took %v to return after cancel while an abandoned call still blocked, want under %v", took, limit)
	}
}

// ---- 5. lifecycle ----

func TestStopFromInsideHandle(t *testing.T) {
	q := lcQueue(t)
	var sp *spine.Spine
	var mu sync.Mutex
	var handled []necro.Event
	loop := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		mu.Lock()
		handled = append(handled, ev)
		n := len(handled)
		mu.Unlock()
		if n == 3 {
			sp.Stop()
		}
		child, err := necro.NewEvent("loop", map[string]any{"n": lcN(ev) + 1})
		return []necro.Event{child}, err
	}
	sp = lcSpine(t, q, []necro.Mount{{Name: "loop", Organ: necro.NewOrgan([]string{"loop"}, loop)}}, spine.Config{})
	lcEnqueue(t, q, "loop", 0, 1)
	result := lcGo(t, func() error { return sp.Run(t.Context()) })
	if err := lcRecv(t, "Run to return after Stop inside Handle (a deadlock?)", result); err != nil {
		t.Fatalf("Run() = %v, want nil after Stop", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 3 {
		t.Fatalf("handled %d events, want 3: Stop stops pulling", len(handled))
	}
	left := seedLeft(t, q)
	if len(left) != 1 || left[0].Meta().CausationID != handled[2].ID() || lcN(left[0]) != 3 {
		t.Errorf("left in the backend: %v, want only the child of the event that called Stop", left)
	}
	if st := sp.Stats(); st.Processed != 3 || st.Emitted != 3 {
		t.Errorf("Stats: Processed %d Emitted %d, want 3 3", st.Processed, st.Emitted)
	}
}

// lcAwaitCtx returns a wait for a handler that honours its ctx: it blocks until ctx
// is done and returns ctx.Err(). So that a ctx never canceled leaks no goroutine past
// the test, the wait also ends at cleanup, with errLCNeverCanceled.
func lcAwaitCtx(t *testing.T) func(ctx context.Context) error {
	end := make(chan struct{})
	t.Cleanup(func() { close(end) })
	return func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			return errLCNeverCanceled
		}
	}
}

var errLCNeverCanceled = errors.New("the handler's ctx was never canceled")

func TestCancelStopsServeAndGivesInFlightEventsBack(t *testing.T) {
	q := lcQueue(t)
	await := lcAwaitCtx(t)
	blocked := make(chan struct{})
	handlerErr := make(chan error, 1)
	organ := func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		if lcN(ev) == 3 {
			close(blocked)
			err := await(ctx)
			handlerErr <- err
			return nil, err
		}
		return nil, nil
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}}, spine.Config{})
	const total = 10
	roots := lcEnqueue(t, q, "job", 0, total)
	cancel, result := lcServe(t, sp)
	lcRecv(t, "event 3 to block", blocked)

	const limit = 3 * time.Second
	start := time.Now()
	cancel()
	if err := lcRecv(t, "Serve to return after cancel", result); err != nil {
		t.Errorf("Serve() = %v, want nil after cancel", err)
	}
	if took := time.Since(start); took > limit {
		t.Errorf("Serve took %v to return after cancel, want under %v: its only running handler honours ctx", took, limit)
	}
	select {
	case err := <-handlerErr:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the running handler's ctx.Err() = %v, want context.Canceled", err)
		}
	default:
		t.Errorf("the running handler had not returned when Serve returned; Run's doc: it returns only after every goroutine it started has exited, abandoned calls aside")
	}
	acked := int(sp.Stats().Processed)
	left := seedLeft(t, q)
	if acked+len(left) != total || !slices.Equal(lcIDs(left), lcIDs(roots[acked:])) {
		t.Errorf("after cancel: %d acked and %d left in the backend; want the %d not acked left, in order", acked, len(left), total-acked)
	}
}

func TestServeWaitsForRunningHandlerAndStartsNoMore(t *testing.T) {
	q := lcQueue(t)
	await := lcAwaitCtx(t)
	const unwind = 100 * time.Millisecond
	var started, returned atomic.Int32
	var mu sync.Mutex
	var startedAt []time.Time
	first := make(chan struct{}, 1)
	organ := func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		started.Add(1)
		mu.Lock()
		startedAt = append(startedAt, time.Now())
		mu.Unlock()
		select {
		case first <- struct{}{}:
		default:
		}
		err := await(ctx)
		if !errors.Is(err, errLCNeverCanceled) {
			time.Sleep(unwind) // honours ctx, and takes a moment to unwind, as a rollback would
		}
		returned.Add(1)
		return nil, err
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}}, spine.Config{})
	lcEnqueue(t, q, "job", 0, 3)
	cancel, result := lcServe(t, sp)
	lcRecv(t, "the first call to start", first)
	cancel()
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	servedUntil := time.Now()
	if s, r := started.Load(), returned.Load(); s != r {
		t.Errorf("when Serve returned, %d Handle calls had started and %d returned; want all returned: "+
			"Run's doc promises every goroutine it started has exited, abandoned calls aside (none here)", s, r)
	}
	// Give a stray actor time to start the next item of its batch: none may.
	lcEventually(t, "the first call to return", func() bool { return returned.Load() >= 1 })
	time.Sleep(3 * unwind)
	mu.Lock()
	defer mu.Unlock()
	for i, at := range startedAt {
		if at.After(servedUntil) {
			t.Errorf("Handle call %d started %v after Serve returned; want no call once Serve has returned", i+1, at.Sub(servedUntil))
		}
	}
	if len(startedAt) != 1 {
		t.Errorf("%d Handle calls started, want 1: the others were given back", len(startedAt))
	}
	if q.Len() != 3 {
		t.Errorf("backend holds %d ready events, want all 3 given back", q.Len())
	}
}

func TestSlowHandlerDoesNotHoldBackEarlierCommits(t *testing.T) {
	q := lcQueue(t)
	await := lcAwaitCtx(t)
	blocked, release := make(chan struct{}), make(chan struct{})
	organ := func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		if lcN(ev) == 3 {
			close(blocked)
			select {
			case <-release:
			case <-ctx.Done():
				return nil, await(ctx)
			}
		}
		return nil, nil
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}},
		spine.Config{HandlerTimeout: time.Minute})
	lcEnqueue(t, q, "job", 0, 10)
	cancel, result := lcServe(t, sp)
	lcRecv(t, "event 3 to block", blocked)

	// Events 0..2 were handled before the slow one; their commit must not wait for it
	// (actors' flushEvery: "so that one slow handler does not hold back the commits of
	// many events").
	const limit = 5 * time.Second
	deadline := time.Now().Add(limit)
	for sp.Stats().Processed < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := sp.Stats().Processed; got != 3 {
		t.Errorf("%v after event 3 began blocking, Processed = %d; want 3: events 0..2, handled before it, wait for their commit behind it", limit, got)
	}
	close(release)
	lcEventually(t, "every event settled", func() bool { return sp.Stats().Processed == 10 })
	cancel()
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v", err)
	}
}

// lcWatched is the memory backend with a signal when a Pull gives up because its ctx
// is done: the fetcher has seen the stop.
type lcWatched struct {
	*memory.Backend
	pullStopped chan struct{} // closed at the first such Pull
	once        sync.Once
}

func (q *lcWatched) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	ds, err := q.Backend.Pull(ctx, max)
	if len(ds) == 0 && errors.Is(err, context.Canceled) {
		q.once.Do(func() { close(q.pullStopped) })
	}
	return ds, err
}

func TestShutdownDrainsInFlightWork(t *testing.T) {
	q := &lcWatched{Backend: lcQueue(t), pullStopped: make(chan struct{})}
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	slow := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		close(started)
		<-release
		finished.Store(true)
		child, err := necro.NewEvent("next", map[string]any{"n": lcN(ev)})
		return []necro.Event{child}, err
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "slow", Organ: necro.NewOrgan([]string{"job"}, slow)}}, spine.Config{})
	root := lcEnqueue(t, q, "job", 0, 1)[0]
	_, result := lcServe(t, sp)
	lcRecv(t, "the slow handler to start", started)

	type outcome struct {
		err       error
		finished  bool
		processed int64
	}
	shut := make(chan outcome, 1)
	go func() {
		err := sp.Shutdown(t.Context())
		shut <- outcome{err, finished.Load(), sp.Stats().Processed}
	}()
	// The fetcher sees the stop in a waiting Pull, or before its next one (then no Pull
	// reports it): give it that long, then check Shutdown is still waiting.
	select {
	case <-q.pullStopped:
	case <-time.After(500 * time.Millisecond):
	}
	select {
	case o := <-shut:
		t.Fatalf("Shutdown returned %+v while the slow handler was still running", o)
	default:
	}
	close(release)
	o := lcRecv(t, "Shutdown to return", shut)
	if o.err != nil || !o.finished || o.processed != 1 {
		t.Errorf("Shutdown: err %v, handler finished %v, processed %d at return; want nil, true, 1", o.err, o.finished, o.processed)
	}
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v, want nil after Shutdown", err)
	}
	left := seedLeft(t, q.Backend)
	if len(left) != 1 || left[0].Type() != "next" || left[0].Meta().CausationID != root.ID() {
		t.Errorf("backend after Shutdown holds %v, want just the slow event's child", left)
	}
}

func TestShutdownWithExpiredCtxReleasesInFlightEvents(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	var firstRun atomic.Bool
	firstRun.Store(true)
	await := lcAwaitCtx(t)
	blocked := make(chan struct{}, 1)
	organ := func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		if firstRun.Load() {
			select {
			case blocked <- struct{}{}:
			default:
			}
			return nil, await(ctx)
		}
		return nil, nil
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, lcRecorder(&calls, "o", organ))}}, spine.Config{})
	roots := lcEnqueue(t, q, "job", 0, 3)
	_, result := lcServe(t, sp)
	lcRecv(t, "the handler to block", blocked)

	expired, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	const limit = 3 * time.Second
	start := time.Now()
	shut := lcGo(t, func() error { return sp.Shutdown(expired) })
	if err := lcRecv(t, "Shutdown to return", shut); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown(expired ctx) = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > limit {
		t.Errorf("Shutdown(expired ctx) took %v, want under %v (\"stops at once\"); the running handler honours ctx", took, limit)
	}
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v after Shutdown with an expired ctx; want nil (Serve's doc: nil after a stop)", err)
	}
	if st := sp.Stats(); st.Processed != 0 {
		t.Errorf("Processed = %d, want 0: nothing finished", st.Processed)
	}
	if q.Len() != len(roots) {
		t.Errorf("backend holds %d ready events, want all %d released", q.Len(), len(roots))
	}

	// A new run pulls them again.
	firstRun.Store(false)
	before := len(calls.snapshot())
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("second Run() = %v", err)
	}
	var again, seen []string
	for _, c := range calls.snapshot()[before:] {
		if c.ok {
			again = append(again, c.id)
		}
		seen = append(seen, fmt.Sprintf("event %d attempt %d ok %v", c.n, c.attempt, c.ok))
	}
	if !slices.Equal(again, lcIDs(roots)) {
		t.Errorf("second run: calls %q; want events 0, 1, 2 handled once each, in order", seen)
	}
	if !q.Idle() {
		t.Errorf("backend not idle after the second run: %d ready", q.Len())
	}
}

func TestShutdownWithExpiredCtxReturnsPromptlyDespiteDeafHandler(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	deaf := newLCDeaf(&calls, 0)
	sp := lcSpine(t, q, []necro.Mount{{Name: "deaf", Organ: deaf}}, spine.Config{}) // 30s timeout: never abandoned here
	lcEnqueue(t, q, "job", 0, 1)
	_, result := lcServe(t, sp)
	t.Cleanup(deaf.unblock)
	lcEventually(t, "the deaf call to block", func() bool { return deaf.blocked.Load() == 1 })

	// Shutdown's doc: "When ctx ends first, Shutdown stops at once".
	const limit = 3 * time.Second
	expired, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	start := time.Now()
	if err := sp.Shutdown(expired); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown(expired ctx) = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > limit {
		t.Errorf("Shutdown(expired ctx) took %v while a handler ignored its ctx, want under %v", took, limit)
	}
	lcRecv(t, "Serve to return", result)
	if q.Len() != 1 {
		t.Errorf("backend holds %d ready events after the forced stop, want the 1 in flight released", q.Len())
	}
}

func TestServeWaitsOnEmptyBackend(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, lcRecorder(&calls, "o", nil))}},
		spine.Config{IdleTimeout: 20 * time.Millisecond}) // a bounded Run would give up long before the event comes
	cancel, result := lcServe(t, sp)
	select {
	case err := <-result:
		t.Fatalf("Serve on an empty backend returned %v, want it to wait", err)
	case <-time.After(200 * time.Millisecond): // ten idle timeouts
	}
	ev := lcEnqueue(t, q, "job", 0, 1)[0]
	lcEventually(t, "the late event to be handled", func() bool {
		return calls.count(func(c lcCall) bool { return c.id == ev.ID() }) == 1
	})
	select {
	case err := <-result:
		t.Fatalf("Serve returned %v after handling an event, want it to keep waiting", err)
	default:
	}
	cancel()
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v, want nil after cancel", err)
	}
}

func TestSecondConcurrentRunIsRefused(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, lcRecorder(&calls, "o", nil))}}, spine.Config{})
	lcEnqueue(t, q, "job", 0, 1)
	_, result := lcServe(t, sp)
	lcEventually(t, "Serve to handle an event", func() bool { return len(calls.snapshot()) == 1 })
	if err := sp.Run(t.Context()); !errors.Is(err, spine.ErrRunning) {
		t.Errorf("Run during Serve = %v, want spine.ErrRunning", err)
	}
	if err := sp.Serve(t.Context()); !errors.Is(err, spine.ErrRunning) {
		t.Errorf("Serve during Serve = %v, want spine.ErrRunning", err)
	}
	if err := sp.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	if err := lcRecv(t, "Serve to return", result); err != nil {
		t.Errorf("Serve() = %v, want nil after Shutdown", err)
	}
	if len(calls.snapshot()) != 1 {
		t.Errorf("the refused runs handled events: %+v", calls.snapshot())
	}
}

func TestRunAgainAfterReturn(t *testing.T) {
	q := lcQueue(t)
	var calls lcCalls
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, lcRecorder(&calls, "o", nil))}}, spine.Config{})
	var all []necro.Event
	for round := range 3 {
		all = append(all, lcEnqueue(t, q, "job", 2*round, 2*round+2)...)
		if err := sp.Run(t.Context()); err != nil {
			t.Fatalf("Run #%d = %v", round+1, err)
		}
		if st := sp.Stats(); st.Processed != 2 {
			t.Errorf("Run #%d: Processed %d, want 2 (Stats count the last run)", round+1, st.Processed)
		}
	}
	var got []string
	for _, c := range calls.snapshot() {
		got = append(got, c.id)
	}
	if !slices.Equal(got, lcIDs(all)) {
		t.Errorf("handled %d events over three runs, want all %d in order", len(got), len(all))
	}
}

// lcSlowEmptyPull is the memory backend, except that a Pull which finds nothing ready
// with its ctx already done returns only after the next settle: slow, as a remote store
// may be, and the interleaving a lost wake-up needs.
type lcSlowEmptyPull struct {
	*memory.Backend
	settles atomic.Int64
	delayed atomic.Int64 // Pulls held back until a settle
}

func (q *lcSlowEmptyPull) Settle(ctx context.Context, batch ...backend.Settlement) error {
	err := q.Backend.Settle(ctx, batch...)
	q.settles.Add(1)
	return err
}

func (q *lcSlowEmptyPull) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	before := q.settles.Load()
	ds, err := q.Backend.Pull(ctx, max)
	if len(ds) == 0 && ctx.Err() != nil && !q.Idle() {
		q.delayed.Add(1)
		for deadline := time.Now().Add(2 * time.Second); q.settles.Load() == before && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	return ds, err
}

func TestRunSeesSettleThatHappensDuringEmptyPull(t *testing.T) {
	q := &lcSlowEmptyPull{Backend: lcQueue(t)}
	var calls lcCalls
	relay := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		if lcN(ev) >= 3 {
			return nil, nil
		}
		child, err := necro.NewEvent("job", map[string]any{"n": lcN(ev) + 1})
		return []necro.Event{child}, err
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "relay", Organ: necro.NewOrgan([]string{"job"}, lcRecorder(&calls, "relay", relay))}}, spine.Config{})
	lcEnqueue(t, q, "job", 0, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	result := lcGo(t, func() error { return sp.Run(ctx) })
	const limit = 10 * time.Second
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("Run() = %v", err)
		}
	case <-time.After(limit):
		cancel()
		<-result
		t.Fatalf("Run still running %v after its chain of 4 events began: %d handled, %d pulls held back; "+
			"a settle during an empty Pull was missed", limit, len(calls.snapshot()), q.delayed.Load())
	}
	if got := len(calls.snapshot()); got != 4 {
		t.Errorf("handled %d events, want the chain of 4", got)
	}
	if q.delayed.Load() == 0 {
		t.Errorf("no Pull was held back: the test did not set up the interleaving it means to")
	}
}

// ---- 6. bounded retry memory ----

func TestRetryTrackerStaysWithinMemoryUnderFailureFlood(t *testing.T) {
	const size, events = 100, 5_000
	tr := supervision.NewRetryTracker(size, time.Hour)
	id := func(i int) string { return fmt.Sprintf("ev-%05d", i) }
	for i := range events {
		// Each event fails three times, interleaved with the next ones; then the even
		// ones are forgotten (handled at last) and the odd ones left for the LRU to drop.
		for _, j := range []int{i, i - 10, i - 20} {
			if j < 0 {
				continue
			}
			if got, want := tr.Fail(id(j), "o"), (i-j)/10+1; got != want {
				t.Fatalf("Fail(%s) = %d, want %d", id(j), got, want)
			}
		}
		if i >= 20 && i%2 == 0 {
			tr.Forget(id(i-20), "o")
		}
		if n := tr.Len(); n > size {
			t.Fatalf("after event %d the tracker holds %d pairs, want at most %d", i, n, size)
		}
	}
	if got := tr.Count(id(events-1), "o"); got != 1 {
		t.Errorf("Count of the latest event = %d, want 1", got)
	}
	if got := tr.Count(id(0), "o"); got != 0 {
		t.Errorf("Count of event 0 = %d, want 0: it was forgotten", got)
	}
	if got := tr.Count(id(1), "o"); got != 0 {
		t.Errorf("Count of event 1 = %d, want 0: the least recently failed pairs are dropped", got)
	}
}

func TestFailingFloodIsDeadLetteredOnceWithBoundedRetryMemory(t *testing.T) {
	const total = 5_000
	q, err := memory.New(memory.Config{DeadLetterCapacity: memory.Unbounded})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	var handles atomic.Int64
	organ := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		handles.Add(1)
		if lcN(ev)%2 == 0 {
			return nil, necro.Permanent(errors.New("malformed"))
		}
		return nil, errors.New("flaky")
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}}, spine.Config{
		RetryMemory: 100,
		MaxSteps:    spine.Unlimited,
		Retry:       supervision.RetryPolicy{MaxAttempts: 2, Backoff: lcInstant},
	})
	roots := lcEnqueue(t, q, "job", 0, total)
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	want := map[string]necro.Event{}
	for _, ev := range roots {
		want[ev.ID()] = ev
	}
	dls := seedDeadLetters(t, q)
	seen := map[string]int{}
	for _, dl := range dls {
		seen[dl.Event.ID()]++
		ev, ok := want[dl.Event.ID()]
		if !ok {
			t.Errorf("dead letter for an unknown event %s", dl.Event.ID())
			continue
		}
		wantAttempts, wantReason := 2, supervision.ReasonExhausted
		if lcN(ev)%2 == 0 {
			wantAttempts, wantReason = 1, supervision.ReasonPermanent
		}
		if dl.Attempts != wantAttempts || dl.Reason != wantReason {
			t.Errorf("event %d: dead letter attempts %d reason %q, want %d %q", lcN(ev), dl.Attempts, dl.Reason, wantAttempts, wantReason)
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d dead-lettered %d times, want once", lcN(want[id]), n)
		}
	}
	if len(seen) != total {
		t.Errorf("%d events dead-lettered, want all %d", len(seen), total)
	}
	st := sp.Stats()
	if st.DeadLettered != total || st.Retried != total/2 || handles.Load() != total*3/2 {
		t.Errorf("Stats: DeadLettered %d Retried %d, Handle calls %d; want %d %d %d",
			st.DeadLettered, st.Retried, handles.Load(), total, total/2, total*3/2)
	}
	if !q.Idle() {
		t.Errorf("backend not idle: %d ready", q.Len())
	}
}

// ---- 7. protoactor's logs ----

// lcLockedBuffer is a bytes.Buffer safe for concurrent writers.
type lcLockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lcLockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lcLockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf.Bytes())
}

// lcRunPanicking runs a Spine whose organ panics once, logging JSON to w.
func lcRunPanicking(t *testing.T, w *lcLockedBuffer) {
	t.Helper()
	q := lcQueue(t)
	organ := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		if ev.Attempt() == 1 {
			panic("boom")
		}
		return nil, nil
	}
	sp := lcSpine(t, q, []necro.Mount{{Name: "fragile", Organ: necro.NewOrgan([]string{"job"}, organ)}}, spine.Config{
		Logger:  slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), // protoactor logs its lifecycle at Debug
		Retry:   supervision.RetryPolicy{Backoff: lcInstant},
		Restart: supervision.OneForOne{Backoff: lcTiny},
	})
	lcEnqueue(t, q, "job", 0, 1)
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if sp.Stats().Panics != 1 {
		t.Fatalf("Panics = %d, want 1", sp.Stats().Panics)
	}
}

// lcCheckJSONLog fails unless every line of log is a JSON object and protoactor's
// lines are among them.
func lcCheckJSONLog(t *testing.T, log []byte) {
	t.Helper()
	protoactor := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(log))
	lines := 0
	for sc.Scan() {
		lines++
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("log line is not JSON: %q: %v", sc.Text(), err)
			continue
		}
		msg := fmt.Sprint(line["msg"])
		if line["component"] == "protoactor" || strings.HasPrefix(msg, "[ACTOR]") || msg == "actor system started" {
			protoactor[msg] = true
		}
	}
	if !protoactor["actor system started"] || !protoactor["[ACTOR] Recovering"] {
		t.Errorf("%d log lines, protoactor's: %v; want \"actor system started\" and \"[ACTOR] Recovering\" among them\n%s",
			lines, protoactor, log)
	}
}

func TestProtoactorLogsGoThroughConfiguredLogger(t *testing.T) {
	var buf lcLockedBuffer
	lcRunPanicking(t, &buf)
	lcCheckJSONLog(t, buf.Bytes())
}

// TestProtoactorWritesNothingToStderr runs lcRunPanicking in a child process, where
// its stderr can be captured whole: protoactor's default logger writes coloured text
// there when a logger factory is missing.
func TestProtoactorWritesNothingToStderr(t *testing.T) {
	const env = "NECRO_LIFECYCLE_LOG_FILE"
	if path := os.Getenv(env); path != "" {
		var buf lcLockedBuffer
		lcRunPanicking(t, &buf)
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	path := t.TempDir() + "/log.json"
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestProtoactorWritesNothingToStderr$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env+"="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child process: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.Bytes(), stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Errorf("the child wrote to stderr:\n%s", stderr.Bytes())
	}
	log, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the child wrote no log: %v\nstdout:\n%s", err, stdout.Bytes())
	}
	lcCheckJSONLog(t, log)
}
