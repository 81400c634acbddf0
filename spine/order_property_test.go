package spine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/internal/seqmodel"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// recordingQueue is the real memory backend, with a record of what Pull handed out.
type recordingQueue struct {
	*memory.Backend
	mu     sync.Mutex
	pulled []string
}

func (q *recordingQueue) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	ds, err := q.Backend.Pull(ctx, max)
	q.mu.Lock()
	for _, d := range ds {
		q.pulled = append(q.pulled, keyOf(d.Event))
	}
	q.mu.Unlock()
	return ds, err
}

func (q *recordingQueue) Settle(ctx context.Context, batch ...backend.Settlement) error {
	// A released delivery is given back: it was not dispatched after all.
	q.mu.Lock()
	for _, st := range batch {
		if st.Outcome == backend.Release {
			k := keyOf(st.Delivery.Event)
			if n := len(q.pulled); n > 0 && q.pulled[n-1] == k {
				q.pulled = q.pulled[:n-1]
			}
		}
	}
	q.mu.Unlock()
	return q.Backend.Settle(ctx, batch...)
}

func tagOf(ev necro.Event) string {
	var p struct {
		Tag string `json:"tag"`
	}
	_ = ev.DecodePayload(&p)
	return p.Tag
}

func keyOf(ev necro.Event) string { return seqmodel.Key(tagOf(ev), ev.Attempt()) }

type traces struct {
	mu sync.Mutex
	by map[string][]string
}

func (t *traces) add(organ, key string) {
	t.mu.Lock()
	t.by[organ] = append(t.by[organ], key)
	t.mu.Unlock()
}

// realOrgan builds the organ a seqmodel.Organ specifies.
func realOrgan(spec seqmodel.Organ, tr *traces) necro.Mount {
	h := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		tag := tagOf(ev)
		tr.add(spec.Name, seqmodel.Key(tag, ev.Attempt()))
		kids, fail := spec.Handle(tag, ev.Attempt())
		switch fail {
		case seqmodel.ErrorFailure:
			return nil, errors.New("specified failure")
		case seqmodel.PermanentFailure:
			return nil, necro.Permanent(errors.New("specified permanent failure"))
		case seqmodel.PanicFailure:
			panic("specified panic")
		}
		out := make([]necro.Event, len(kids))
		for i, k := range kids {
			ev, err := necro.NewEvent(k.Type, map[string]any{"tag": k.Tag})
			if err != nil {
				return nil, err
			}
			out[i] = ev
		}
		return out, nil
	}
	return necro.Mount{Name: spec.Name, Organ: necro.NewOrgan(spec.Listens, h)}
}

var instant = supervision.Backoff{Base: time.Nanosecond, Max: time.Nanosecond, Jitter: supervision.NoJitter}

// runReal runs g through the real Spine with the given window and returns what it showed.
func runReal(t interface{ Fatal(...any) }, g seqmodel.Graph, window int) (seqmodel.Outcome, spine.Stats, error) {
	mem, err := memory.New(memory.Config{Capacity: memory.Unbounded})
	if err != nil {
		t.Fatal(err)
	}
	q := &recordingQueue{Backend: mem}
	tr := &traces{by: map[string][]string{}}
	var mounts []necro.Mount
	for _, o := range g.Organs {
		mounts = append(mounts, realOrgan(o, tr))
	}
	cfg := spine.Config{
		Window:   window,
		MaxSteps: g.MaxSteps,
		MaxDepth: g.MaxDepth,
		Retry:    supervision.RetryPolicy{MaxAttempts: g.MaxAttempts, Backoff: instant},
		Restart:  supervision.OneForOne{MaxRestarts: 1_000_000, Window: time.Hour, Backoff: instant},
	}
	if g.MaxSteps == 0 {
		cfg.MaxSteps = spine.Unlimited
	}
	if g.MaxDepth == 0 {
		cfg.MaxDepth = spine.Unlimited
	}
	sp, err := spine.New(q, mounts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range g.Roots {
		ev, err := necro.NewEvent(r.Type, map[string]any{"tag": r.Tag})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	runErr := sp.Run(context.Background())
	out := seqmodel.Outcome{Traces: tr.by, BudgetExceeded: errors.Is(runErr, necro.ErrStepBudgetExceeded)}
	q.mu.Lock()
	out.Dispatched = slices.Clone(q.pulled)
	q.mu.Unlock()
	dls, err := mem.DeadLetters(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		out.DeadLetters = append(out.DeadLetters, fmt.Sprintf("%s@%s: %s", keyOf(dl.Event), dl.Organ, dl.Reason))
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	left, _ := mem.Pull(done, 1<<30)
	for _, d := range left {
		out.Left = append(out.Left, keyOf(d.Event))
	}
	if out.BudgetExceeded {
		runErr = nil
	}
	return out, sp.Stats(), runErr
}

// drawGraph draws a random organ graph: fan-out, chains, cycles and failures.
func drawGraph(t *rapid.T) seqmodel.Graph {
	types := []string{"t0", "t1", "t2", "t3"}[:rapid.IntRange(1, 4).Draw(t, "types")]
	typ := rapid.SampledFrom(types)
	var g seqmodel.Graph
	for i := range rapid.IntRange(1, 4).Draw(t, "organs") {
		o := seqmodel.Organ{
			Name:    fmt.Sprintf("O%d", i),
			Listens: rapid.SliceOfNDistinct(typ, 0, len(types), rapid.ID).Draw(t, "listens"),
			Emits:   rapid.SliceOfN(typ, 0, 2).Draw(t, "emits"),
		}
		o.FailEvery = rapid.SampledFrom([]int{0, 0, 2, 3, 5}).Draw(t, "failEvery")
		if o.FailEvery > 0 {
			o.Permanent = rapid.IntRange(0, 4).Draw(t, "permanent") == 0
			o.Panics = !o.Permanent && rapid.Bool().Draw(t, "panics")
		}
		g.Organs = append(g.Organs, o)
	}
	for i := range rapid.IntRange(1, 5).Draw(t, "roots") {
		g.Roots = append(g.Roots, seqmodel.Root{Type: typ.Draw(t, "rootType"), Tag: fmt.Sprintf("r%d", i)})
	}
	g.MaxSteps = rapid.IntRange(1, 150).Draw(t, "maxSteps")
	g.MaxDepth = rapid.IntRange(0, 6).Draw(t, "maxDepth")
	g.MaxAttempts = rapid.IntRange(1, 3).Draw(t, "maxAttempts")
	return g
}

// TestOrderingMatchesSequentialModel is the ordering promise: for windows 1, 4 and 64
// every organ sees the same events in the same order, and the queue hands out the same
// events in the same order, as the one-event-at-a-time loop.
func TestOrderingMatchesSequentialModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		g := drawGraph(rt)
		want := g.Run()
		for _, w := range []int{1, 4, 64} {
			got, _, err := runReal(rt, g, w)
			if err != nil {
				rt.Fatalf("window %d: Run() = %v", w, err)
			}
			compareOutcomes(rt, w, got, want)
		}
	})
}

func compareOutcomes(t *rapid.T, window int, got, want seqmodel.Outcome) {
	t.Helper()
	if !slices.Equal(got.Dispatched, want.Dispatched) {
		t.Fatalf("window %d: queue order\n got %v\nwant %v", window, got.Dispatched, want.Dispatched)
	}
	for organ, w := range want.Traces {
		if !slices.Equal(got.Traces[organ], w) {
			t.Fatalf("window %d: organ %s saw\n got %v\nwant %v", window, organ, got.Traces[organ], w)
		}
	}
	for organ, g := range got.Traces {
		if len(want.Traces[organ]) == 0 && len(g) > 0 {
			t.Fatalf("window %d: organ %s saw %v, want nothing", window, organ, g)
		}
	}
	if !slices.Equal(got.DeadLetters, want.DeadLetters) {
		t.Fatalf("window %d: dead letters\n got %v\nwant %v", window, got.DeadLetters, want.DeadLetters)
	}
	if !slices.Equal(got.Left, want.Left) || got.BudgetExceeded != want.BudgetExceeded {
		t.Fatalf("window %d: left queued %v (budget exceeded %v), want %v (%v)", window,
			got.Left, got.BudgetExceeded, want.Left, want.BudgetExceeded)
	}
}

// TestCyclicGraphsTerminate: with no step bound, MaxDepth alone ends every graph,
// cycles included; and with a step bound, no run dispatches more than MaxSteps.
func TestCyclicGraphsTerminate(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		g := drawGraph(rt)
		bounded := rapid.Bool().Draw(rt, "bounded")
		if !bounded {
			g.MaxSteps = 0
			g.MaxDepth = rapid.IntRange(1, 3).Draw(rt, "depth") // at most 8 children an event: ≤ 512 events a root
		}
		want := g.Run()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done := make(chan struct{})
		var got seqmodel.Outcome
		var st spine.Stats
		var err error
		go func() {
			defer close(done)
			got, st, err = runReal(rt, g, rapid.SampledFrom([]int{1, 4, 64}).Draw(rt, "window"))
		}()
		select {
		case <-done:
		case <-ctx.Done():
			rt.Fatalf("run did not terminate")
		}
		if err != nil {
			rt.Fatalf("Run() = %v", err)
		}
		if bounded && st.Dispatched > int64(g.MaxSteps) {
			rt.Fatalf("dispatched %d events, budget %d", st.Dispatched, g.MaxSteps)
		}
		if !bounded && (got.BudgetExceeded || len(got.Left) > 0) {
			rt.Fatalf("unbounded run left %v", got.Left)
		}
		if len(got.Dispatched) != len(want.Dispatched) {
			rt.Fatalf("dispatched %d events, model %d", len(got.Dispatched), len(want.Dispatched))
		}
	})
}
