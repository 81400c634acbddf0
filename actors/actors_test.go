package actors_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/actors"
)

// waitLong bounds every wait for a message: generous, so that a loaded 2-core machine
// running the race detector does not fail a test that is merely slow.
const waitLong = 20 * time.Second

// harness drives a Host from a test. It is the host's Coordinator: it queues every
// organ message for the test and runs the calls the test posts, so that Control
// methods are called on the coordinator's goroutine as they must be.
type harness struct {
	t       *testing.T
	host    *actors.Host[call]
	msgs    chan any
	pending []any // messages read while waiting for another one, oldest first
}

// call is posted with Host.Send and runs f on the coordinator's goroutine.
type call struct {
	f    func(ctl *actors.Control[call])
	done chan struct{}
}

// The organ messages as the harness queues them.
type (
	ready struct {
		organ       int
		incarnation int64
	}
	crashed struct {
		organ int
		err   *necro.PanicError
	}
)

func (h *harness) Receive(ctl *actors.Control[call], c call) {
	c.f(ctl)
	close(c.done)
}

func (h *harness) Ready(_ *actors.Control[call], organ int, incarnation int64) {
	h.queue(ready{organ, incarnation})
}
func (h *harness) Done(_ *actors.Control[call], d actors.Done) { h.queue(d) }
func (h *harness) Crashed(_ *actors.Control[call], organ int, err *necro.PanicError) {
	h.queue(crashed{organ, err})
}
func (h *harness) Stuck(_ *actors.Control[call], st actors.Stuck) { h.queue(st) }

// queue runs on the coordinator's goroutine, which must never block; the tests here send
// far fewer messages than the buffer holds, and a full buffer fails the test instead of
// hanging it.
func (h *harness) queue(msg any) {
	select {
	case h.msgs <- msg:
	default:
		h.t.Errorf("message buffer full; dropped %T", msg)
	}
}

func startHost(t *testing.T, ctx context.Context, mounts []necro.Mount, cfg actors.Config) *harness {
	t.Helper()
	h := &harness{t: t, msgs: make(chan any, 1024)}
	h.host = actors.Start(ctx, mounts, cfg, h)
	t.Cleanup(h.host.Close)
	return h
}

// do runs f on the coordinator's goroutine and waits until it has run.
func (h *harness) do(f func(ctl *actors.Control[call])) {
	h.t.Helper()
	c := call{f: f, done: make(chan struct{})}
	h.host.Send(c)
	select {
	case <-c.done:
	case <-time.After(waitLong):
		h.t.Fatalf("a call posted to the coordinator did not run within %v", waitLong)
	}
}

// await returns the first message, pending or new, that match accepts.
func (h *harness) await(what string, match func(any) bool) any {
	h.t.Helper()
	for i, m := range h.pending {
		if match(m) {
			h.pending = slices.Delete(h.pending, i, i+1)
			return m
		}
	}
	timer := time.NewTimer(waitLong)
	defer timer.Stop()
	for {
		select {
		case m := <-h.msgs:
			if match(m) {
				return m
			}
			h.pending = append(h.pending, m)
		case <-timer.C:
			h.t.Fatalf("no %s within %v; messages seen meanwhile: %s", what, waitLong, describe(h.pending))
			return nil
		}
	}
}

// drain returns the pending messages and every message queued so far.
func (h *harness) drain() []any {
	for {
		select {
		case m := <-h.msgs:
			h.pending = append(h.pending, m)
		default:
			return h.pending
		}
	}
}

// abandoned returns Control.Abandoned(organ), asked on the coordinator's goroutine.
func (h *harness) abandoned(organ int) int {
	h.t.Helper()
	var n int
	h.do(func(ctl *actors.Control[call]) { n = ctl.Abandoned(organ) })
	return n
}

func (h *harness) ready(organ int) {
	h.t.Helper()
	h.await(fmt.Sprintf("Ready{%d}", organ), func(m any) bool { r, ok := m.(ready); return ok && r.organ == organ })
}

func (h *harness) crashed(organ int) crashed {
	h.t.Helper()
	return h.await(fmt.Sprintf("Crashed{%d}", organ), func(m any) bool {
		c, ok := m.(crashed)
		return ok && c.organ == organ
	}).(crashed)
}

func (h *harness) stuck(organ int) actors.Stuck {
	h.t.Helper()
	return h.await(fmt.Sprintf("Stuck{%d}", organ), func(m any) bool {
		s, ok := m.(actors.Stuck)
		return ok && s.Organ == organ
	}).(actors.Stuck)
}

// batch collects the Dones of one dispatch to organ, partial ones included, up to the
// Final one, and returns their results in order and the final Done's Rest.
func (h *harness) batch(organ int) (results []actors.Result, rest []actors.Item) {
	h.t.Helper()
	for {
		d := h.await(fmt.Sprintf("Done{%d}", organ), func(m any) bool {
			d, ok := m.(actors.Done)
			return ok && d.Organ == organ
		}).(actors.Done)
		results = append(results, d.Results...)
		if d.Final {
			return results, d.Rest
		}
		if len(d.Rest) > 0 {
			h.t.Errorf("a Done that is not Final carries Rest %v", seqsOf(d.Rest))
		}
	}
}

func describe(ms []any) string {
	var b strings.Builder
	for _, m := range ms {
		switch m := m.(type) {
		case actors.Done:
			fmt.Fprintf(&b, "Done{organ %d, results %v, rest %v, final %v} ", m.Organ, resultSeqs(m.Results), seqsOf(m.Rest), m.Final)
		default:
			fmt.Fprintf(&b, "%T%+v ", m, m)
		}
	}
	return b.String()
}

func resultSeqs(rs []actors.Result) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

func seqsOf(items []actors.Item) []uint64 {
	out := make([]uint64, len(items))
	for i, it := range items {
		out[i] = it.Seq
	}
	return out
}

// items returns events of type "t" numbered from..to-1, with payload {"n": seq}.
func items(t *testing.T, from, to int) []actors.Item {
	t.Helper()
	var out []actors.Item
	for i := from; i < to; i++ {
		ev, err := necro.NewEvent("t", map[string]any{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, actors.Item{Seq: uint64(i), Event: ev})
	}
	return out
}

func numberOf(ev necro.Event) int {
	var p struct{ N int }
	_ = ev.DecodePayload(&p) // the tests build every payload themselves
	return p.N
}

// panicValue is what the organs here panic with, so that a test can tell its own
// panic from any other.
type panicValue struct{ n int }

func TestPanicBecomesPanicErrorAndRestOfBatchRunsAfterRestart(t *testing.T) {
	handled := make(chan int, 16) // more than the items dispatched
	organ := necro.NewOrgan([]string{"t"}, func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		n := numberOf(ev)
		handled <- n
		if n == 2 {
			panic(panicValue{n})
		}
		return nil, nil
	})
	h := startHost(t, t.Context(), []necro.Mount{{Name: "fragile", Organ: organ}}, actors.Config{})
	h.ready(0)

	batch := items(t, 0, 5)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })

	cr := h.crashed(0)
	if cr.err == nil || cr.err.Value != (panicValue{2}) {
		t.Fatalf("Crashed's err = %#v, want a *necro.PanicError with value %v", cr.err, panicValue{2})
	}
	results, rest := h.batch(0)
	if got, want := resultSeqs(results), []uint64{0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("results of the crashed batch: seqs %v, want %v", got, want)
	}
	for _, r := range results[:2] {
		if r.Err != nil {
			t.Errorf("item %d handled before the panic: err %v, want nil", r.Seq, r.Err)
		}
	}
	var pe *necro.PanicError
	if !errors.As(results[2].Err, &pe) {
		t.Fatalf("result of the panicking item: err %v (%T), want a *necro.PanicError", results[2].Err, results[2].Err)
	}
	if pe.Value != (panicValue{2}) {
		t.Errorf("PanicError.Value = %#v, want %#v", pe.Value, panicValue{2})
	}
	if len(pe.Stack) == 0 || !bytes.Contains(pe.Stack, []byte("actors_test.")) {
		t.Errorf("PanicError.Stack does not show the panicking handler:\n%s", pe.Stack)
	}
	if !strings.Contains(pe.Error(), "panicked") {
		t.Errorf("PanicError.Error() = %q, want it to say the organ panicked", pe.Error())
	}
	if got, want := seqsOf(rest), []uint64{3, 4}; !slices.Equal(got, want) {
		t.Fatalf("Rest of the crashed batch: seqs %v, want %v", got, want)
	}
	if got := drainInts(handled); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("handled before the restart: %v, want [0 1 2]: items after a panic must wait", got)
	}

	h.do(func(ctl *actors.Control[call]) { ctl.Restart(0, 0) })
	h.ready(0)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, rest) })
	results, rest = h.batch(0)
	if got, want := resultSeqs(results), []uint64{3, 4}; !slices.Equal(got, want) || len(rest) != 0 {
		t.Fatalf("after the restart: results %v rest %v, want results %v and no rest", got, seqsOf(rest), want)
	}
	for _, r := range results {
		if r.Err != nil {
			t.Errorf("item %d after the restart: err %v, want nil", r.Seq, r.Err)
		}
	}
	if got := drainInts(handled); !slices.Equal(got, []int{3, 4}) {
		t.Errorf("handled after the restart: %v, want [3 4]", got)
	}
}

func drainInts(ch chan int) []int {
	var out []int
	for {
		select {
		case n := <-ch:
			out = append(out, n)
		default:
			return out
		}
	}
}

// counter is a stateful organ: it counts the events it handled and panics on the
// event numbered panicOn.
type counter struct {
	id      int
	n       int
	panicOn int
	seen    chan<- [2]int // (instance id, count so far)
}

func (c *counter) ListensTo() []string { return []string{"t"} }

func (c *counter) Handle(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	c.n++
	c.seen <- [2]int{c.id, c.n}
	if numberOf(ev) == c.panicOn {
		panic(panicValue{c.panicOn})
	}
	return nil, nil
}

func TestRestartUsesFreshInstanceFromFactoryButSameOrganValue(t *testing.T) {
	fromFactory := make(chan [2]int, 16) // more than the events handled
	shared := make(chan [2]int, 16)
	var factoryCalls atomic.Int32
	mounts := []necro.Mount{
		{Name: "stateful", Factory: func() necro.Organ {
			id := int(factoryCalls.Add(1))
			return &counter{id: id, panicOn: 2, seen: fromFactory}
		}},
		{Name: "stateless", Organ: &counter{id: 100, panicOn: 2, seen: shared}},
	}
	h := startHost(t, t.Context(), mounts, actors.Config{})
	h.ready(0)
	h.ready(1)
	if got := factoryCalls.Load(); got != 1 {
		t.Fatalf("factory calls after start: %d, want 1", got)
	}

	first := items(t, 0, 3) // the third one panics
	h.do(func(ctl *actors.Control[call]) {
		ctl.Dispatch(0, first)
		ctl.Dispatch(1, first)
	})
	for organ := range 2 {
		h.crashed(organ)
		if results, _ := h.batch(organ); len(results) != 3 {
			t.Fatalf("organ %d: %d results before the crash, want 3", organ, len(results))
		}
	}
	const delay = 150 * time.Millisecond
	var restartedAt time.Time
	h.do(func(ctl *actors.Control[call]) {
		ctl.Restart(0, 0)
		restartedAt = time.Now()
		ctl.Restart(1, delay)
	})
	h.ready(0)
	h.ready(1)
	if waited := time.Since(restartedAt); waited < delay {
		t.Errorf("Restart(1, %v) announced Ready after %v, want at least the delay", delay, waited)
	}
	if got := factoryCalls.Load(); got != 2 {
		t.Fatalf("factory calls after one restart: %d, want 2 (one per start or restart)", got)
	}

	second := items(t, 3, 5)
	h.do(func(ctl *actors.Control[call]) {
		ctl.Dispatch(0, second)
		ctl.Dispatch(1, second)
	})
	h.batch(0)
	h.batch(1)
	if got, want := drainPairs(fromFactory), [][2]int{{1, 1}, {1, 2}, {1, 3}, {2, 1}, {2, 2}}; !slices.Equal(got, want) {
		t.Errorf("factory-mounted organ saw (instance, count) %v, want %v: a restart must start from a fresh instance", got, want)
	}
	if got, want := drainPairs(shared), [][2]int{{100, 1}, {100, 2}, {100, 3}, {100, 4}, {100, 5}}; !slices.Equal(got, want) {
		t.Errorf("Organ-mounted organ saw (instance, count) %v, want %v: the same value is reused", got, want)
	}
	if got := factoryCalls.Load(); got != 2 {
		t.Errorf("factory calls at the end: %d, want 2", got)
	}
}

func drainPairs(ch chan [2]int) [][2]int {
	var out [][2]int
	for {
		select {
		case p := <-ch:
			out = append(out, p)
		default:
			return out
		}
	}
}

type ctxKey struct{}

func TestHandleCtxCarriesDeadlineAndValues(t *testing.T) {
	const timeout = 400 * time.Millisecond
	type observed struct {
		start    time.Time
		deadline time.Time
		ok       bool
		err      error // ctx.Err() once Handle is done waiting
		value    any
	}
	seen := make(chan observed, 4)
	organ := necro.NewOrgan([]string{"t"}, func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
		o := observed{start: time.Now(), value: ctx.Value(ctxKey{})}
		o.deadline, o.ok = ctx.Deadline()
		if numberOf(ev) == 1 { // honours ctx: waits for its deadline
			select {
			case <-ctx.Done():
			case <-time.After(waitLong):
			}
		}
		o.err = ctx.Err()
		seen <- o
		return nil, ctx.Err()
	})
	base := context.WithValue(t.Context(), ctxKey{}, "from the host's ctx")
	h := startHost(t, base, []necro.Mount{{Name: "o", Organ: organ}}, actors.Config{HandlerTimeout: timeout})
	h.ready(0)

	before := time.Now()
	batch := items(t, 0, 2)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	results, _ := h.batch(0)

	quick := <-seen
	if !quick.ok {
		t.Fatal("ctx.Deadline() reported no deadline")
	}
	// The deadline is the start of the call plus the timeout, and the call starts
	// between the dispatch and the handler's first line.
	if quick.deadline.Before(before.Add(timeout)) || quick.deadline.After(quick.start.Add(timeout)) {
		t.Errorf("ctx.Deadline() = %v; want within [dispatch+%v, call start+%v] = [%v, %v]",
			quick.deadline, timeout, timeout, before.Add(timeout), quick.start.Add(timeout))
	}
	if quick.err != nil {
		t.Errorf("ctx.Err() of a call well within its deadline = %v, want nil", quick.err)
	}
	if quick.value != "from the host's ctx" {
		t.Errorf("ctx.Value(key) = %v, want the value of the ctx given to Start", quick.value)
	}
	if results[0].Err != nil {
		t.Errorf("result of the quick call: %v, want nil", results[0].Err)
	}

	slow := <-seen
	if !errors.Is(slow.err, context.DeadlineExceeded) {
		t.Errorf("ctx.Err() after ctx.Done() at the deadline = %v, want context.DeadlineExceeded", slow.err)
	}
	if !errors.Is(results[1].Err, necro.ErrHandlerTimeout) {
		t.Errorf("result of a call that reached its deadline: %v, want an error matching necro.ErrHandlerTimeout", results[1].Err)
	}
	if results[1].Duration < timeout {
		t.Errorf("timed-out call's Duration = %v, want at least the timeout %v", results[1].Duration, timeout)
	}
}

func TestCancelledHostCtxCancelsRunningHandle(t *testing.T) {
	started := make(chan struct{})
	errs := make(chan error, 1)
	organ := necro.NewOrgan([]string{"t"}, func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
		close(started)
		select {
		case <-ctx.Done():
		case <-time.After(waitLong):
		}
		errs <- ctx.Err()
		return nil, ctx.Err()
	})
	base, cancel := context.WithCancel(t.Context())
	defer cancel()
	h := startHost(t, base, []necro.Mount{{Name: "o", Organ: organ}}, actors.Config{})
	h.ready(0)
	batch := items(t, 0, 1)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	<-started
	cancel()
	results, _ := h.batch(0)
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("ctx.Err() after the host's ctx was canceled = %v, want context.Canceled", err)
	}
	if len(results) != 1 || !errors.Is(results[0].Err, context.Canceled) || errors.Is(results[0].Err, necro.ErrHandlerTimeout) {
		t.Errorf("result = %+v, want the handler's context.Canceled, not a timeout", results)
	}
}

// blocker is an organ that ignores its ctx: each event numbered in block waits for
// release. It is stateless, so one value serves every actor of its mount.
type blocker struct {
	block    map[int]bool
	release  chan struct{}
	started  chan int // the number of each event it starts to handle
	running  atomic.Int32
	finished atomic.Int32 // blocked calls that returned
}

func newBlocker(block ...int) *blocker {
	b := &blocker{block: map[int]bool{}, release: make(chan struct{}), started: make(chan int, 64)}
	for _, n := range block {
		b.block[n] = true
	}
	return b
}

func (b *blocker) ListensTo() []string { return []string{"t"} }

func (b *blocker) Handle(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	n := numberOf(ev)
	b.started <- n
	if b.block[n] {
		b.running.Add(1)
		<-b.release // deliberately deaf to ctx
		b.running.Add(-1)
		b.finished.Add(1)
	}
	return nil, nil
}

func (b *blocker) unblock() {
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

func TestStuckHandlerIsAbandonedAndOrganGoesOn(t *testing.T) {
	b := newBlocker(1)
	cfg := actors.Config{HandlerTimeout: 50 * time.Millisecond, AbandonAfter: 50 * time.Millisecond}
	h := startHost(t, t.Context(), []necro.Mount{{Name: "deaf", Organ: b}}, cfg)
	t.Cleanup(b.unblock) // registered after Close, so it runs before it
	h.ready(0)

	batch := items(t, 0, 3)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	st := h.stuck(0)
	if st.Seq != 1 {
		t.Fatalf("Stuck.Seq = %d, want 1 (the blocked item)", st.Seq)
	}
	var (
		results   []actors.Result
		rest      []actors.Item
		ok        bool
		abandoned int
	)
	h.do(func(ctl *actors.Control[call]) {
		results, rest, ok = ctl.Abandon(st)
		abandoned = ctl.Abandoned(0)
	})
	if !ok {
		t.Fatal("Abandon of a call still blocked: ok = false, want true")
	}
	// Results already sent in a partial Done (by the actor, or by the watchdog while
	// the call ran long) come first; they are consumed here.
	var sent []actors.Result
	h.pending = slices.DeleteFunc(h.pending, func(m any) bool {
		d, isDone := m.(actors.Done)
		if isDone && d.Organ == 0 {
			sent = append(sent, d.Results...)
		}
		return isDone && d.Organ == 0
	})
	results = append(sent, results...)
	if got := resultSeqs(results); !slices.Equal(got, []uint64{0, 1}) {
		t.Fatalf("results of the abandoned batch: seqs %v, want [0 1]; pending messages %s", got, describe(h.pending))
	}
	if results[0].Err != nil {
		t.Errorf("item 0 was handled before the stuck one: err %v, want nil", results[0].Err)
	}
	if !errors.Is(results[1].Err, necro.ErrHandlerTimeout) {
		t.Errorf("abandoned item's result: %v, want an error matching necro.ErrHandlerTimeout", results[1].Err)
	}
	if got := seqsOf(rest); !slices.Equal(got, []uint64{2}) {
		t.Errorf("Rest after the abandon: seqs %v, want [2]", got)
	}
	if abandoned != 1 {
		t.Errorf("Abandoned(0) right after the abandon = %d, want 1", abandoned)
	}

	// The organ goes on with a fresh actor while the first call is still blocked.
	h.ready(0)
	more := append(slices.Clone(rest), items(t, 3, 5)...)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, more) })
	results, rest = h.batch(0)
	if got := resultSeqs(results); !slices.Equal(got, []uint64{2, 3, 4}) || len(rest) != 0 {
		t.Fatalf("after the abandon: results %v rest %v, want [2 3 4] and no rest", got, seqsOf(rest))
	}
	for _, r := range results {
		if r.Err != nil {
			t.Errorf("item %d on the fresh actor: err %v", r.Seq, r.Err)
		}
	}
	if b.running.Load() != 1 || b.finished.Load() != 0 {
		t.Fatalf("the abandoned call should still be blocked: running %d finished %d", b.running.Load(), b.finished.Load())
	}
	if got := h.abandoned(0); got != 1 {
		t.Errorf("Abandoned(0) while the call still runs = %d, want 1", got)
	}

	b.unblock()
	eventually(t, "Abandoned(0) to drop to 0 once the call returned", func() bool { return h.abandoned(0) == 0 })
	// Nothing more comes from the abandoned call: its result was given by Abandon.
	h.do(func(*actors.Control[call]) {})
	for _, m := range h.drain() {
		if d, isDone := m.(actors.Done); isDone && slices.Contains(resultSeqs(d.Results), 1) {
			t.Errorf("the abandoned call's own result arrived after all: %s", describe([]any{d}))
		}
	}
}

func TestAbandonAfterCallFinishedChangesNothing(t *testing.T) {
	b := newBlocker(0)
	cfg := actors.Config{HandlerTimeout: 50 * time.Millisecond, AbandonAfter: 50 * time.Millisecond}
	h := startHost(t, t.Context(), []necro.Mount{{Name: "deaf", Organ: b}}, cfg)
	t.Cleanup(b.unblock)
	h.ready(0)
	batch := items(t, 0, 2)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	st := h.stuck(0)
	b.unblock() // the call finishes before the coordinator acts on Stuck
	results, rest := h.batch(0)
	if got := resultSeqs(results); !slices.Equal(got, []uint64{0, 1}) || len(rest) != 0 {
		t.Fatalf("batch: results %v rest %v, want [0 1] and no rest", got, seqsOf(rest))
	}
	if !errors.Is(results[0].Err, necro.ErrHandlerTimeout) {
		t.Errorf("a call that returned past its deadline: err %v, want necro.ErrHandlerTimeout", results[0].Err)
	}
	var ok bool
	var abandoned int
	h.do(func(ctl *actors.Control[call]) {
		_, _, ok = ctl.Abandon(st)
		abandoned = ctl.Abandoned(0)
	})
	if ok || abandoned != 0 {
		t.Errorf("Abandon of a finished call: ok %v, Abandoned %d; want false, 0", ok, abandoned)
	}
	// The actor was not replaced: it takes more work.
	next := items(t, 2, 3)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, next) })
	if results, _ := h.batch(0); len(results) != 1 || results[0].Err != nil {
		t.Errorf("work after a no-op Abandon: %+v, want one result without error", results)
	}
}

func TestCloseDoesNotWaitForAbandonedCall(t *testing.T) {
	b := newBlocker(0)
	cfg := actors.Config{HandlerTimeout: 50 * time.Millisecond, AbandonAfter: 50 * time.Millisecond}
	h := startHost(t, t.Context(), []necro.Mount{{Name: "deaf", Organ: b}}, cfg)
	t.Cleanup(b.unblock)
	h.ready(0)
	batch := items(t, 0, 1)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	st := h.stuck(0)
	h.do(func(ctl *actors.Control[call]) { ctl.Abandon(st) })
	h.ready(0)

	// Host's doc: abandoned calls "are left to finish and their results are dropped".
	const limit = 3 * time.Second
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		h.host.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitLong):
		b.unblock()
		<-closed
		t.Fatalf("Close did not return within %v while an abandoned call was still blocked", waitLong)
	}
	if took := time.Since(start); took > limit {
		t.Errorf("Close took %v with an abandoned call still blocked, want under %v: it must not wait for abandoned calls", took, limit)
	}
}

func TestHostLogsGoToConfiguredLogger(t *testing.T) {
	var buf lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	organ := necro.NewOrgan([]string{"t"}, func(context.Context, necro.Event) ([]necro.Event, error) {
		panic(panicValue{0})
	})
	h := startHost(t, t.Context(), []necro.Mount{{Name: "fragile", Organ: organ}}, actors.Config{Logger: logger})
	h.ready(0)
	batch := items(t, 0, 1)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	h.crashed(0)
	h.batch(0)
	h.host.Close()

	msgs, levels := map[string]bool{}, map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("log line is not JSON: %q: %v", sc.Text(), err)
			continue
		}
		if line["component"] == "protoactor" {
			msgs[fmt.Sprint(line["msg"])] = true
			levels[fmt.Sprint(line["msg"])] = fmt.Sprint(line["level"])
		}
	}
	// protoactor's Info lines reach the configured logger at Debug only: at the default
	// level they would show at every run.
	for _, want := range []string{"actor system started", "[ACTOR] Recovering"} {
		if !msgs[want] {
			t.Errorf("no protoactor line %q in the configured logger; protoactor lines: %v\n%s", want, msgs, buf.Bytes())
		}
		if levels[want] != "DEBUG" {
			t.Errorf("protoactor's line %q came at %s, want DEBUG", want, levels[want])
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of several loggers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf.Bytes())
}

// eventually polls cond until it holds or waitLong has passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitLong, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseAfterCancelReachesRunningHandle(t *testing.T) {
	end := make(chan struct{}) // ends the handler at cleanup if its ctx never is
	t.Cleanup(func() { close(end) })
	started := make(chan struct{})
	errs := make(chan error, 1)
	organ := necro.NewOrgan([]string{"t"}, func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
		close(started)
		select {
		case <-ctx.Done():
			errs <- ctx.Err()
		case <-end:
			errs <- errors.New("ctx never canceled")
		}
		return nil, nil
	})
	base, cancel := context.WithCancel(t.Context())
	defer cancel()
	h := startHost(t, base, []necro.Mount{{Name: "o", Organ: organ}}, actors.Config{})
	h.ready(0)
	batch := items(t, 0, 1)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	<-started

	// The Spine's immediate stop: cancel the host's ctx, then Close at once. Start's
	// doc: "when it is done the running handlers' contexts are canceled".
	const limit = 3 * time.Second
	start := time.Now()
	cancel()
	h.host.Close()
	if took := time.Since(start); took > limit {
		t.Errorf("Close right after the host's ctx was canceled took %v, want under %v: the running handler honours ctx", took, limit)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("running handler's ctx.Err() = %v, want context.Canceled", err)
		}
	case <-time.After(limit):
		t.Errorf("the running handler's ctx was not canceled %v after the host's ctx and Close", limit)
	}
}

func TestCloseStartsNoMoreItemsOfABatch(t *testing.T) {
	end := make(chan struct{}) // ends a handler at cleanup if its ctx never is
	t.Cleanup(func() { close(end) })
	const unwind = 100 * time.Millisecond
	var mu sync.Mutex
	var startedAt []time.Time
	first := make(chan struct{}, 1)
	organ := necro.NewOrgan([]string{"t"}, func(ctx context.Context, _ necro.Event) ([]necro.Event, error) {
		mu.Lock()
		startedAt = append(startedAt, time.Now())
		mu.Unlock()
		select {
		case first <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			time.Sleep(unwind) // honours ctx, and takes a moment to unwind
		case <-end:
		}
		return nil, ctx.Err()
	})
	h := startHost(t, t.Context(), []necro.Mount{{Name: "o", Organ: organ}}, actors.Config{})
	h.ready(0)
	batch := items(t, 0, 3)
	h.do(func(ctl *actors.Control[call]) { ctl.Dispatch(0, batch) })
	<-first
	h.host.Close()
	closedAt := time.Now()
	// Give the actor time to go on with its batch, which it must not.
	time.Sleep(3 * unwind)
	mu.Lock()
	defer mu.Unlock()
	for i, at := range startedAt {
		if at.After(closedAt) {
			t.Errorf("item %d started %v after Close returned; want no Handle call after Close", i, at.Sub(closedAt))
		}
	}
}
