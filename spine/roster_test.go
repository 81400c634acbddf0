package spine_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
)

// handlings records, per organ, how often each event was handled, and, per organ, the
// parents of the events it handled.
type handlings struct {
	mu      sync.Mutex
	counts  map[string]map[string]int
	parents map[string]map[string]bool
}

func newHandlings() *handlings {
	return &handlings{counts: map[string]map[string]int{}, parents: map[string]map[string]bool{}}
}

// organ returns a mount that records each handling under name and emits what emit
// returns for the event.
func (h *handlings) organ(name string, types []string, emit func(necro.Event) []necro.Event) necro.Mount {
	return necro.Mount{Name: name, Organ: necro.NewOrgan(types, func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		h.mu.Lock()
		if h.counts[name] == nil {
			h.counts[name], h.parents[name] = map[string]int{}, map[string]bool{}
		}
		h.counts[name][ev.ID()]++
		h.parents[name][ev.Meta().CausationID] = true
		h.mu.Unlock()
		if emit == nil {
			return nil, nil
		}
		return emit(ev), nil
	})}
}

// distinct returns how many distinct events organ handled.
func (h *handlings) distinct(organ string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.counts[organ])
}

// ids returns the ids of the events organ handled.
func (h *handlings) ids(organ string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id := range h.counts[organ] {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// handledParent reports whether organ handled a child of parent.
func (h *handlings) handledParent(organ, parent string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.parents[organ][parent]
}

func child(typ string) func(necro.Event) []necro.Event {
	return func(necro.Event) []necro.Event {
		ev, err := necro.NewEvent(typ, nil)
		if err != nil {
			panic(err)
		}
		return []necro.Event{ev}
	}
}

// A rosterWorker is one Spine serving a Redis stream under its own consumer name, as a
// worker process would.
type rosterWorker struct {
	name   string
	sp     *spine.Spine
	b      *necroredis.Backend
	served chan error
	stats  spine.Stats // the Spine's, once stopped
}

// rosterRedis is the store configuration of these tests: quick heartbeats, so that
// workers see each other join and leave within a second.
func rosterRedis(url, consumer string) necroredis.Config {
	return necroredis.Config{URL: url, Consumer: consumer, Block: 20 * time.Millisecond,
		Heartbeat: 100 * time.Millisecond, MemberTimeout: 600 * time.Millisecond}
}

func startRosterWorker(t *testing.T, url, name string, cfg spine.Config, mounts ...necro.Mount) *rosterWorker {
	t.Helper()
	b, err := necroredis.Open(t.Context(), rosterRedis(url, name))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spine.New(b, mounts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &rosterWorker{name: name, sp: sp, b: b, served: make(chan error, 1)}
	go func() { w.served <- sp.Serve(context.WithoutCancel(t.Context())) }()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop drains the worker and closes its store, once.
func (w *rosterWorker) stop(t *testing.T) {
	t.Helper()
	if w.sp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.sp.Shutdown(ctx); err != nil {
		t.Errorf("worker %s: shutdown: %v", w.name, err)
	}
	if err := <-w.served; err != nil {
		t.Errorf("worker %s: serve: %v", w.name, err)
	}
	if err := w.b.Close(); err != nil {
		t.Errorf("worker %s: close: %v", w.name, err)
	}
	w.stats, w.sp = w.sp.Stats(), nil
}

// waitLive waits until every worker serves and its store lists all of them as live.
func waitLive(t *testing.T, ws ...*rosterWorker) {
	t.Helper()
	waitUntil(t, 10*time.Second, "the workers to serve and see each other on the roster", func() bool {
		for _, w := range ws {
			if w.sp.Ready(t.Context()) != nil {
				return false
			}
			roll, err := w.b.Roll(t.Context())
			if err != nil {
				return false
			}
			for _, o := range ws {
				if !slices.ContainsFunc(roll.Members, func(m backend.Member) bool { return m.Name == o.name }) {
					return false
				}
			}
		}
		return true
	})
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func enqueueN(t *testing.T, url, typ string, n int) []string {
	t.Helper()
	p, err := necroredis.Open(t.Context(), necroredis.Config{URL: url, Consumer: "producer"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var ids []string
	for i := range n {
		ev, err := necro.NewEvent(typ, map[string]any{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Enqueue(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID())
	}
	slices.Sort(ids)
	return ids
}

// checkDrained fails the test when the group still holds pending or unread entries.
func checkDrained(t *testing.T, url string) {
	t.Helper()
	a, err := necroredis.OpenAdmin(t.Context(), necroredis.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	in, err := a.Inspect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range in.Groups {
		if g.Pending != 0 || g.Lag != 0 {
			t.Errorf("group %s: %d pending, lag %d; want 0 and 0", g.Name, g.Pending, g.Lag)
		}
	}
}

// Two workers with different organs share a group, as an ETL worker and a trading
// worker did: each event reaches the worker that routes it, and none is acked unrouted.
func TestWorkerHandsOverWhatOnlyAnotherWorkerRoutes(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	h := newHandlings()
	etl := startRosterWorker(t, srv.URL(), "etl", spine.Config{},
		h.organ("start", []string{"etl.start"}, child("etl.step")), h.organ("step", []string{"etl.step"}, nil))
	trading := startRosterWorker(t, srv.URL(), "trading", spine.Config{}, h.organ("book", []string{"order.placed"}, nil))
	waitLive(t, etl, trading)

	roots := enqueueN(t, srv.URL(), "etl.start", 200)
	waitUntil(t, 30*time.Second, "every ETL chain to complete", func() bool { return h.distinct("step") == len(roots) })
	if got := h.ids("start"); !slices.Equal(got, roots) {
		t.Errorf("organ start handled %d distinct events, want the %d roots", len(got), len(roots))
	}
	for _, w := range []*rosterWorker{etl, trading} {
		if st := w.sp.Stats(); st.Unrouted != 0 {
			t.Errorf("worker %s acked %d events as unrouted, want 0", w.name, st.Unrouted)
		}
	}
	if st := trading.sp.Stats(); st.HandedOff == 0 {
		t.Errorf("the trading worker handed off no event; stats %+v", st)
	}
	etl.stop(t)
	trading.stop(t)
	checkDrained(t, srv.URL())
}

// A worker that mounts only some of the organs of an event's type handles those and
// sends a copy on to the organs another worker mounts.
func TestWorkerForwardsToOrganMountedOnlyElsewhere(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	h := newHandlings()
	older := startRosterWorker(t, srv.URL(), "older", spine.Config{}, h.organ("x", []string{"t"}, nil))
	newer := startRosterWorker(t, srv.URL(), "newer", spine.Config{}, h.organ("x", []string{"t"}, nil), h.organ("y", []string{"t"}, nil))
	waitLive(t, older, newer)

	roots := enqueueN(t, srv.URL(), "t", 200)
	waitUntil(t, 30*time.Second, "both organs to handle every event", func() bool {
		return h.distinct("x") == len(roots) && h.distinct("y") == len(roots)
	})
	if got := h.ids("y"); !slices.Equal(got, roots) {
		t.Errorf("organ y handled %d distinct events, want the %d roots", len(got), len(roots))
	}
	if st := older.sp.Stats(); st.Forwarded == 0 || st.Unrouted != 0 {
		t.Errorf("older worker: forwarded %d, unrouted %d; want some forwarded and none unrouted", st.Forwarded, st.Unrouted)
	}
	older.stop(t)
	newer.stop(t)
	checkDrained(t, srv.URL())
}

// A rolling deploy replaces v1 workers with v2 workers while a producer feeds the
// stream. v2's organ x also emits a new type, handled by v2's new organ y: a v1 worker
// that pulls one hands it to a v2 worker. Nothing is lost, and nothing is unrouted.
func TestRollingDeployLosesNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	h := newHandlings()
	var auditsMu sync.Mutex
	audited := map[string]bool{} // orders whose audit a v2 x emitted
	v1 := func(name string) *rosterWorker {
		return startRosterWorker(t, srv.URL(), name, spine.Config{},
			h.organ("x", []string{"order"}, child("order.booked")), h.organ("z", []string{"order.booked"}, nil))
	}
	v2 := func(name string) *rosterWorker {
		return startRosterWorker(t, srv.URL(), name, spine.Config{},
			h.organ("x", []string{"order"}, func(ev necro.Event) []necro.Event {
				auditsMu.Lock()
				audited[ev.ID()] = true
				auditsMu.Unlock()
				return append(child("order.booked")(ev), child("order.audited")(ev)...)
			}),
			h.organ("z", []string{"order.booked"}, nil), h.organ("y", []string{"order.audited"}, nil))
	}

	p, err := necroredis.Open(t.Context(), necroredis.Config{URL: srv.URL(), Consumer: "producer"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var mu sync.Mutex
	var roots []string
	stopProducing := make(chan struct{})
	produced := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stopProducing:
				produced <- nil
				return
			case <-time.After(2 * time.Millisecond):
			}
			ev, err := necro.NewEvent("order", map[string]any{"n": i})
			if err == nil {
				err = p.Enqueue(context.Background(), ev)
			}
			if err != nil {
				produced <- err
				return
			}
			mu.Lock()
			roots = append(roots, ev.ID())
			mu.Unlock()
		}
	}()

	workers := []*rosterWorker{v1("v1-a"), v1("v1-b")}
	time.Sleep(400 * time.Millisecond)
	workers = append(workers, v2("v2-a"))
	time.Sleep(700 * time.Millisecond)
	workers[0].stop(t)
	workers = append(workers, v2("v2-b"))
	time.Sleep(700 * time.Millisecond)
	workers[1].stop(t)
	time.Sleep(400 * time.Millisecond)
	close(stopProducing)
	if err := <-produced; err != nil {
		t.Fatalf("producer: %v", err)
	}

	mu.Lock()
	want := slices.Sorted(slices.Values(roots))
	mu.Unlock()
	if len(want) < 300 {
		t.Errorf("the producer enqueued only %d orders; the deploy did not happen under load", len(want))
	}
	waitUntil(t, 60*time.Second, "every order and every booking to be handled", func() bool {
		return h.distinct("x") == len(want) && h.distinct("z") == len(want)
	})
	if got := h.ids("x"); !slices.Equal(got, want) {
		t.Fatalf("organ x handled %d distinct orders, want the %d produced", len(got), len(want))
	}
	missing := func() []string {
		auditsMu.Lock()
		defer auditsMu.Unlock()
		var out []string
		for id := range audited {
			if !h.handledParent("y", id) {
				out = append(out, id)
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Errorf("%d audits emitted by v2 were never handled by y (of %d), e.g. the audit of order %s", len(m), len(audited), m[0])
	}
	for _, w := range workers {
		w.stop(t)
		if w.stats.Unrouted != 0 {
			t.Errorf("worker %s acked %d events as unrouted, want 0", w.name, w.stats.Unrouted)
		}
	}
	t.Logf("%d orders, %d audited by v2", len(want), len(audited))
	checkDrained(t, srv.URL())
}

// On a store only this process uses, an event targeted at an organ that is not mounted
// is dead-lettered naming the organ, not acked as unrouted.
func TestTargetAtUnmountedOrganIsDeadLettered(t *testing.T) {
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHandlings()
	sp, err := spine.New(q, []necro.Mount{h.organ("x", []string{"t"}, nil)}, spine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := necro.NewEvent("t", nil)
	if err != nil {
		t.Fatal(err)
	}
	both := ev.Retry(1, "x", "ghost")
	other, err := necro.NewEvent("t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(t.Context(), both, other.Retry(1, "ghost")); err != nil {
		t.Fatal(err)
	}
	if err := sp.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	dls, err := q.DeadLetters(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dl := range dls {
		got = append(got, dl.Event.ID()+"/"+dl.Organ)
		if !strings.Contains(dl.Error, `"ghost"`) {
			t.Errorf("dead letter error %q does not name the organ", dl.Error)
		}
	}
	slices.Sort(got)
	want := []string{both.ID() + "/ghost", other.ID() + "/ghost"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("dead letters %v, want %v", got, want)
	}
	if h.ids("x")[0] != both.ID() || h.distinct("x") != 1 {
		t.Errorf("organ x handled %v, want only %s", h.ids("x"), both.ID())
	}
	if st := sp.Stats(); st.Unrouted != 0 {
		t.Errorf("Stats.Unrouted = %d, want 0", st.Unrouted)
	}
}

// With Unrouted set to UnroutedDeadLetter, an event no organ listens to is
// dead-lettered with the reason "unrouted"; by default it is acked and counted.
func TestUnroutedPolicy(t *testing.T) {
	for _, tt := range []struct {
		policy spine.UnroutedPolicy
		dead   int
	}{{spine.UnroutedAck, 0}, {spine.UnroutedDeadLetter, 1}} {
		t.Run(tt.policy.String(), func(t *testing.T) {
			q, err := memory.New(memory.Config{})
			if err != nil {
				t.Fatal(err)
			}
			h := newHandlings()
			sp, err := spine.New(q, []necro.Mount{h.organ("x", []string{"t"}, nil)}, spine.Config{Unrouted: tt.policy})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := necro.NewEvent("nobody.listens", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Enqueue(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			if err := sp.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			dls, err := q.DeadLetters(t.Context(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != tt.dead || sp.Stats().Unrouted != 1 {
				t.Fatalf("%d dead letters and %d unrouted, want %d and 1", len(dls), sp.Stats().Unrouted, tt.dead)
			}
			if tt.dead > 0 && (dls[0].Reason != "unrouted" || dls[0].Event.ID() != ev.ID()) {
				t.Errorf("dead letter %+v, want the event with reason unrouted", dls[0])
			}
		})
	}
}

// Producers that send ever new event types nobody routes cannot grow the worker's log
// or memory without bound: only the first so many types are logged.
func TestUnroutedTypesLoggedBounded(t *testing.T) {
	q, err := memory.New(memory.Config{Capacity: memory.Unbounded})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	lw := &lockedWriter{w: &logs}
	log := slog.New(slog.NewTextHandler(lw, nil))
	sp, err := spine.New(q, []necro.Mount{{Name: "x", Organ: necro.NewOrgan([]string{"t"}, nil)}},
		spine.Config{Logger: log, MaxSteps: spine.Unlimited})
	if err != nil {
		t.Fatal(err)
	}
	const types = 3000
	for i := range types {
		ev, err := necro.NewEvent(fmt.Sprintf("unknown.%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	lw.mu.Lock()
	lines := strings.Count(logs.String(), "no organ listens to this event type")
	lw.mu.Unlock()
	if st := sp.Stats(); st.Unrouted != types {
		t.Errorf("Stats.Unrouted = %d, want %d", st.Unrouted, types)
	}
	if lines == 0 || lines > 1024 {
		t.Errorf("%d unrouted types logged of %d; want at least one and at most 1024", lines, types)
	}
}

// A bounded Run on a store shared with other workers ends when the stream is idle, and
// takes its worker off the roster.
func TestBoundedRunOnRosterStoreEnds(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b, err := necroredis.Open(t.Context(), rosterRedis(srv.URL(), "bounded"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h := newHandlings()
	sp, err := spine.New(b, []necro.Mount{h.organ("x", []string{"t"}, nil)}, spine.Config{IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	enqueueN(t, srv.URL(), "t", 3)
	done := make(chan error, 1)
	go func() { done <- sp.Run(t.Context()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20s after the stream went idle")
	}
	if h.distinct("x") != 3 {
		t.Errorf("x handled %d events, want 3", h.distinct("x"))
	}
	roll, err := b.Roll(t.Context())
	if err != nil || len(roll.Members) != 0 {
		t.Errorf("roll after the run = %+v, %v; want nobody", roll, err)
	}
}
