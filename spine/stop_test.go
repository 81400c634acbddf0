package spine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// The helpers of this file start with stop to keep clear of the names other test files
// of the package declare.

const (
	// stopRounds is how many immediate stops each case goes through in a row: the loss
	// these tests guard against showed in a few stops out of a hundred on the memory store.
	stopRounds = 100
	// stopEvents are enqueued before each round's run.
	stopEvents = 10
	// stopLag is how long a lagging Pull takes to return once its ctx has ended. The
	// Redis store takes up to its Block (100ms by default); this one stands in for it
	// on the memory store.
	stopLag = 20 * time.Millisecond
)

// stopLagging is a store whose Pull returns only stopLag after its ctx ended, as the
// Redis store's does: the Spine then gets its fetcher back late, after a stop.
type stopLagging struct{ backend.Backend }

func (q stopLagging) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	ds, err := q.Backend.Pull(ctx, max)
	if ctx.Err() != nil {
		time.Sleep(stopLag)
	}
	return ds, err
}

// stopBed is one round's store, with what a later run would find in it.
type stopBed struct {
	b backend.Backend
	// left returns every event a later run or another consumer gets from the store.
	left func(t *testing.T) []necro.Event
	// deadLetters returns how many dead letters the store holds.
	deadLetters func(t *testing.T) int
	// ordered says the store hands events given back out again in their order.
	ordered bool
}

func stopMemoryBed(t *testing.T, lagging bool) stopBed {
	t.Helper()
	q := lcQueue(t)
	bed := stopBed{b: q, left: func(t *testing.T) []necro.Event { return seedLeft(t, q) }, ordered: true,
		deadLetters: func(t *testing.T) int { return len(seedDeadLetters(t, q)) }}
	if lagging {
		bed.b = stopLagging{q}
	}
	return bed
}

// stopRedisBed opens a store on its own stream of srv. What is left is read by a
// second store, with another consumer name, once the first is closed: what the first
// gave back must reach the rest of the group.
func stopRedisBed(t *testing.T, srv *redistest.Server, round int) stopBed {
	t.Helper()
	cfg := necroredis.Config{URL: srv.URL(), Stream: fmt.Sprintf("stop-%d", round), Group: "g", Consumer: "first"}
	first, err := necroredis.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = first.Close() // the test failed before it read the store
		}
	})
	left := func(t *testing.T) []necro.Event {
		t.Helper()
		h := first.Health(t.Context())
		if unacked := h.Pending + h.Lag; unacked != stopEvents {
			t.Fatalf("round %d: Redis holds %d entries not acknowledged (pending %d, unread %d), want all %d",
				round, unacked, h.Pending, h.Lag, stopEvents)
		}
		closed = true
		if err := first.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		cfg.Consumer = "second"
		second, err := necroredis.Open(t.Context(), cfg)
		if err != nil {
			t.Fatalf("redis.Open: %v", err)
		}
		defer func() { _ = second.Close() }() // only read from; what it holds stays pending
		var got []necro.Event
		deadline := time.Now().Add(lcWait)
		for len(got) < stopEvents && time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			ds, err := second.Pull(ctx, stopEvents)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Pull from a second consumer: %v", err)
			}
			for _, d := range ds {
				got = append(got, d.Event)
			}
		}
		return got
	}
	deadLetters := func(t *testing.T) int {
		t.Helper()
		return int(first.Health(t.Context()).DeadLetters)
	}
	return stopBed{b: first, left: left, deadLetters: deadLetters}
}

// stopOnce serves sp and stops it at once as soon as a Handle call has started:
// through its ctx when byShutdown is false, else with a Shutdown whose ctx has ended,
// as a second signal does. It returns what Serve returned.
func stopOnce(t *testing.T, sp *spine.Spine, started <-chan struct{}, byShutdown bool) error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	result := lcGo(t, func() error { return sp.Serve(ctx) })
	lcRecv(t, "the first Handle call", started)
	if byShutdown {
		expired, cancelExpired := context.WithTimeout(t.Context(), 0)
		defer cancelExpired()
		if err := sp.Shutdown(expired); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown(expired ctx) = %v, want context.DeadlineExceeded", err)
		}
	} else {
		cancel()
	}
	return lcRecv(t, "Serve to return", result)
}

// stopCheck checks that a run stopped at once before any Handle call finished left no
// trace but the events, all given back.
func stopCheck(t *testing.T, round string, sp *spine.Spine, bed stopBed, roots []necro.Event) {
	t.Helper()
	left := bed.left(t)
	if got, want := stopNs(left, bed.ordered), stopNs(roots, bed.ordered); !slices.Equal(got, want) ||
		!slices.Equal(stopIDs(left, bed.ordered), stopIDs(roots, bed.ordered)) {
		t.Fatalf("%s: a later run gets events %v; want all %d given back: %v", round, got, len(roots), want)
	}
	if n := bed.deadLetters(t); n != 0 {
		t.Fatalf("%s: the store holds %d dead letters, want none: no event failed", round, n)
	}
	st := sp.Stats()
	failed := int64(0)
	for _, n := range st.HandlerErrors {
		failed += n
	}
	if st.Processed != 0 || failed != 0 || st.DeadLettered != 0 || st.Retried != 0 {
		t.Fatalf("%s: Stats: Processed %d, HandlerErrors %v, DeadLettered %d, Retried %d; want all 0: "+
			"no Handle call had finished when the run was stopped, and a call the stop canceled did not fail",
			round, st.Processed, st.HandlerErrors, st.DeadLettered, st.Retried)
	}
}

// stopNs returns the events' numbers, sorted unless ordered.
func stopNs(evs []necro.Event, ordered bool) []int {
	ns := make([]int, len(evs))
	for i, ev := range evs {
		ns[i] = lcN(ev)
	}
	if !ordered {
		slices.Sort(ns)
	}
	return ns
}

// stopIDs returns the events' ids, sorted unless ordered.
func stopIDs(evs []necro.Event, ordered bool) []string {
	ids := lcIDs(evs)
	if !ordered {
		slices.Sort(ids)
	}
	return ids
}

// An immediate stop gives every delivery not yet committed back to the store, and a
// Handle call that returns ctx.Err() because the stop canceled it is not a failure:
// nothing is acked, logged as given up or dead-lettered for it.
func TestImmediateStopGivesBackEveryUncommittedDelivery(t *testing.T) {
	stores := []struct {
		name string
		bed  func(t *testing.T) func(t *testing.T, round int) stopBed
	}{
		{"memory", func(*testing.T) func(*testing.T, int) stopBed {
			return func(t *testing.T, _ int) stopBed { return stopMemoryBed(t, false) }
		}},
		{"memory with a lagging Pull", func(*testing.T) func(*testing.T, int) stopBed {
			return func(t *testing.T, _ int) stopBed { return stopMemoryBed(t, true) }
		}},
		{"redis", func(t *testing.T) func(*testing.T, int) stopBed {
			srv := redistest.Start(t, redistest.Config{})
			return func(t *testing.T, round int) stopBed { return stopRedisBed(t, srv, round) }
		}},
	}
	for _, store := range stores {
		t.Run(store.name, func(t *testing.T) {
			newBed := store.bed(t)
			for round := range stopRounds {
				// Each round has its own mode and way of stopping, in turn.
				mode := []spine.HandlerFailureMode{spine.HandlerLog, spine.HandlerDeadLetter}[round%2]
				byShutdown := round/2%2 == 1
				bed := newBed(t, round)
				await := lcAwaitCtx(t)
				started := make(chan struct{}, 1)
				organ := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
					select {
					case started <- struct{}{}:
					default:
					}
					return nil, await(ctx)
				}
				sp := lcSpine(t, bed.b, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}},
					spine.Config{HandlerFailure: mode, Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}})
				roots := lcEnqueue(t, bed.b, "job", 0, stopEvents)
				if err := stopOnce(t, sp, started, byShutdown); err != nil {
					t.Fatalf("round %d (%s): Serve() = %v, want nil after a stop", round, mode, err)
				}
				stopCheck(t, fmt.Sprintf("round %d (%s, stopped by %s)", round, mode, stopHow(byShutdown)), sp, bed, roots)
			}
		})
	}
}

func stopHow(byShutdown bool) string {
	if byShutdown {
		return "a Shutdown whose ctx ended"
	}
	return "canceling Serve's ctx"
}

// A fatal enqueue error (EnqueueFail) stops the run at once: the handlers still running
// see their ctx canceled, and what they return because of it is not a failure either.
func TestFatalEnqueueErrorGivesBackWorkInFlight(t *testing.T) {
	for round := range stopRounds {
		stopEnqueueFail(t, round, []spine.HandlerFailureMode{spine.HandlerLog, spine.HandlerDeadLetter}[round%2])
	}
}

// stopEnqueueFail runs one round of TestFatalEnqueueErrorGivesBackWorkInFlight: the
// first event's children are refused, while the second event's handler runs.
func stopEnqueueFail(t *testing.T, round int, mode spine.HandlerFailureMode) {
	t.Helper()
	mem := lcQueue(t)
	sq := newSeedQueue(mem)
	await := lcAwaitCtx(t)
	secondStarted := make(chan struct{})
	sq.failSettle = func(st backend.Settlement) error {
		if len(st.Children) == 0 {
			return nil
		}
		select {
		case <-secondStarted: // refuse only now, so that the stop cancels that call
		case <-time.After(lcWait):
			t.Errorf("round %d: the second Handle call never started", round)
		}
		return backend.ErrQueueFull
	}
	organ := func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		switch lcN(ev) {
		case 0:
			child, err := necro.NewEvent("next", nil)
			return []necro.Event{child}, err
		case 1:
			close(secondStarted)
		}
		return nil, await(ctx)
	}
	sp := lcSpine(t, stopLagging{sq}, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}},
		spine.Config{HandlerFailure: mode, EnqueueFailure: spine.EnqueueFail,
			Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}})
	roots := lcEnqueue(t, mem, "job", 0, stopEvents)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	result := lcGo(t, func() error { return sp.Serve(ctx) })
	var ee *spine.EnqueueError
	if err := lcRecv(t, "Serve to return", result); !errors.As(err, &ee) || !errors.Is(err, backend.ErrQueueFull) {
		t.Fatalf("round %d (%s): Serve() = %v, want an *EnqueueError wrapping backend.ErrQueueFull", round, mode, err)
	}
	bed := stopBed{b: mem, ordered: true, left: func(t *testing.T) []necro.Event { return seedLeft(t, mem) },
		deadLetters: func(t *testing.T) int { return len(seedDeadLetters(t, mem)) }}
	stopCheck(t, fmt.Sprintf("round %d (%s)", round, mode), sp, bed, roots)
}

// An immediate stop shows in telemetry as work given back, not as failures: the process
// spans of the calls it canceled end as released, without an error, and no failure,
// dead letter or given-up event is counted or logged.
func TestImmediateStopLeavesNoFailureInTelemetry(t *testing.T) {
	for round := range stopRounds {
		o := newObserved(t)
		bed := stopMemoryBed(t, true)
		await := lcAwaitCtx(t)
		started := make(chan struct{}, 1)
		organ := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			return nil, await(ctx)
		}
		sp := lcSpine(t, bed.b, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}},
			spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}, Telemetry: o.rec, Logger: o.log})
		roots := lcEnqueue(t, bed.b, "job", 0, stopEvents)
		if err := stopOnce(t, sp, started, round%2 == 1); err != nil {
			t.Fatalf("round %d: Serve() = %v, want nil after a stop", round, err)
		}
		ended := 0
		for _, s := range o.spans.Ended() {
			if _, ok := attr(s, "necro.organ"); !ok {
				continue
			}
			ended++
			outcome, _ := attr(s, "necro.outcome")
			if outcome.AsString() != "release" || s.Status().Code == codes.Error {
				t.Errorf("round %d: the process span of a call the stop canceled ends with outcome %q and status %v %q; want release, no error",
					round, outcome.AsString(), s.Status().Code, s.Status().Description)
			}
		}
		if ended == 0 {
			t.Errorf("round %d: no process span ended; want the canceled call's, as released", round)
		}
		var rm metricdata.ResourceMetrics
		if err := o.reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				d, ok := m.Data.(metricdata.Sum[int64])
				if !ok || (m.Name != "necro.handler.failures" && m.Name != "necro.events.dead_lettered" && m.Name != "necro.events.processed") {
					continue
				}
				for _, p := range d.DataPoints {
					if p.Value != 0 {
						t.Errorf("round %d: metric %s = %d %v, want 0", round, m.Name, p.Value, p.Attributes)
					}
				}
			}
		}
		for _, l := range o.lines(t) {
			if l["level"] == "ERROR" || l["level"] == "WARN" {
				t.Errorf("round %d: log line %v; want no warning or error for a stop", round, l)
			}
		}
		if t.Failed() {
			return
		}
		stopCheck(t, fmt.Sprintf("round %d", round), sp, bed, roots)
	}
}

var errStopTestCause = errors.New("the caller's own reason")

// One rule for what Run, Serve and Shutdown return when their ctx ends: a call reports
// context.Cause(ctx) when the end of its ctx kept it from doing its job, and nil
// otherwise. Canceling the ctx of Run or Serve (context.Canceled, or a cause that is
// context.Canceled, as signal.NotifyContext gives) is how a caller stops them: nil.
// A deadline or another cause cuts the run short: they return it. Shutdown's job is to
// drain: when its ctx ends first, it returns the cause, while the run it stopped
// returns nil. Either way the events in flight go back to the store.
func TestCtxEndIsReportedByOneRule(t *testing.T) {
	tests := []struct {
		name     string
		serve    bool
		ctx      func(parent context.Context) (context.Context, func())
		shutdown func(parent context.Context) (context.Context, func()) // nil: no Shutdown
		want     error                                                  // from Run or Serve
		wantShut error                                                  // from Shutdown
	}{
		{name: "Run, ctx canceled", ctx: stopCanceled(context.Canceled)},
		{name: "Serve, ctx canceled", serve: true, ctx: stopCanceled(context.Canceled)},
		{name: "Run, ctx canceled by a signal", ctx: stopCanceled(stopSignal("interrupt signal received"))},
		{name: "Run, ctx canceled with a cause", ctx: stopCanceled(errStopTestCause), want: errStopTestCause},
		{name: "Serve, ctx canceled with a cause", serve: true, ctx: stopCanceled(errStopTestCause), want: errStopTestCause},
		{name: "Run, deadline passed", ctx: stopDeadline(nil), want: context.DeadlineExceeded},
		{name: "Serve, deadline passed", serve: true, ctx: stopDeadline(nil), want: context.DeadlineExceeded},
		{name: "Run, deadline passed with a cause", ctx: stopDeadline(errStopTestCause), want: errStopTestCause},
		{name: "Shutdown, ctx canceled", serve: true, ctx: stopNever, shutdown: stopCanceled(context.Canceled),
			wantShut: context.Canceled},
		{name: "Shutdown, ctx canceled with a cause", serve: true, ctx: stopNever, shutdown: stopCanceled(errStopTestCause),
			wantShut: errStopTestCause},
		{name: "Shutdown, deadline passed", serve: true, ctx: stopNever, shutdown: stopDeadline(nil),
			wantShut: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := lcQueue(t)
			await := lcAwaitCtx(t)
			started := make(chan struct{}, 1)
			organ := func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
				select {
				case started <- struct{}{}:
				default:
				}
				return nil, await(ctx)
			}
			sp := lcSpine(t, q, []necro.Mount{{Name: "o", Organ: necro.NewOrgan([]string{"job"}, organ)}}, spine.Config{})
			roots := lcEnqueue(t, q, "job", 0, 3)
			ctx, end := tt.ctx(t.Context())
			defer end()
			run := sp.Run
			if tt.serve {
				run = sp.Serve
			}
			result := lcGo(t, func() error { return run(ctx) })
			lcRecv(t, "the first Handle call", started)
			if tt.shutdown != nil {
				sctx, endShutdown := tt.shutdown(t.Context())
				shut := lcGo(t, func() error { return sp.Shutdown(sctx) })
				endShutdown()
				if err := lcRecv(t, "Shutdown to return", shut); !errors.Is(err, tt.wantShut) || err == nil {
					t.Errorf("Shutdown() = %v, want %v", err, tt.wantShut)
				}
			} else {
				end()
			}
			if err := lcRecv(t, "the run to return", result); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("the run returned %v, want %v", err, tt.want)
			}
			stopCheck(t, tt.name, sp, stopBed{b: q, ordered: true, left: func(t *testing.T) []necro.Event { return seedLeft(t, q) },
				deadLetters: func(t *testing.T) int { return len(seedDeadLetters(t, q)) }}, roots)
		})
	}
}

// stopSignal is the cause signal.NotifyContext gives: it is context.Canceled.
type stopSignal string

func (s stopSignal) Error() string        { return string(s) }
func (s stopSignal) Is(target error) bool { return target == context.Canceled }

// stopCanceled returns a ctx that the returned func cancels with cause.
func stopCanceled(cause error) func(context.Context) (context.Context, func()) {
	return func(parent context.Context) (context.Context, func()) {
		ctx, cancel := context.WithCancelCause(parent)
		return ctx, func() { cancel(cause) }
	}
}

// stopDeadline returns a ctx whose deadline the returned func makes pass, by waiting
// for it: a ctx's deadline cannot be moved, so it is short, and the func waits until
// it has passed. cause, when set, is the deadline's cause.
func stopDeadline(cause error) func(context.Context) (context.Context, func()) {
	return func(parent context.Context) (context.Context, func()) {
		const soon = 50 * time.Millisecond
		ctx, cancel := context.WithTimeoutCause(parent, soon, cause)
		return ctx, func() {
			<-ctx.Done()
			cancel()
		}
	}
}

// stopNever returns a ctx that ends only with the test: the run is stopped another way.
func stopNever(parent context.Context) (context.Context, func()) { return parent, func() {} }
