package spine_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// flakyPulls is the memory backend with pulls that fail while broken is set.
type flakyPulls struct {
	*memory.Backend
	broken atomic.Bool
}

func (q *flakyPulls) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	if q.broken.Load() {
		return nil, errors.New("connection refused")
	}
	return q.Backend.Pull(ctx, max)
}

func waitFor(t *testing.T, sp *spine.Spine, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s; stats %+v, health %+v", what, sp.Stats(), sp.Health())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHealthReportsOpenCircuitAndRecovers(t *testing.T) {
	mem, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	q := &flakyPulls{Backend: mem}
	q.broken.Store(true)
	var handled atomic.Int32
	organ := necro.NewOrgan([]string{"ping"}, func(context.Context, necro.Event) ([]necro.Event, error) {
		handled.Add(1)
		return nil, nil
	})
	sp, err := spine.New(q, []necro.Mount{{Name: "o", Organ: organ}}, spine.Config{
		BackendBackoff: supervision.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if h := sp.Health(); !h.Healthy || h.Running {
		t.Fatalf("Health() before any run = %+v, want healthy and not running", h)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- sp.Serve(ctx) }()
	waitFor(t, sp, "the circuit to open", func() bool { return !sp.Health().Healthy })
	h := sp.Health()
	if !h.Running || len(h.Problems) != 1 || !strings.Contains(h.Problems[0], "circuit open") {
		t.Fatalf("Health() with failing pulls = %+v, want running, one problem naming the open circuit", h)
	}
	ev, _ := necro.NewEvent("ping", nil)
	if err := mem.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	q.broken.Store(false)
	waitFor(t, sp, "the event to be handled", func() bool { return handled.Load() == 1 })
	waitFor(t, sp, "health to come back", func() bool { return sp.Health().Healthy })
	if st := sp.Stats(); st.BackendErrors == 0 {
		t.Errorf("Stats().BackendErrors = 0 after failing pulls")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve() = %v", err)
	}
}

func TestHealthReportsQuarantinedOrgan(t *testing.T) {
	mem, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	fail.Store(true)
	organ := necro.NewOrgan([]string{"job"}, func(context.Context, necro.Event) ([]necro.Event, error) {
		if fail.Load() {
			panic("broken")
		}
		return nil, nil
	})
	instant := supervision.Backoff{Base: time.Microsecond, Max: time.Microsecond, Jitter: supervision.NoJitter}
	var logs seedLogBuffer
	sp, err := spine.New(mem, []necro.Mount{{Name: "fragile", Organ: organ}}, spine.Config{
		Logger:  slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Retry:   supervision.RetryPolicy{MaxAttempts: 1},
		Restart: supervision.OneForOne{MaxRestarts: 1, Window: time.Minute, Backoff: instant, Quarantine: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ev, _ := necro.NewEvent("job", nil)
		if err := mem.Enqueue(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- sp.Serve(ctx) }()
	t.Cleanup(func() {
		if t.Failed() {
			for _, rec := range logs.records(t) {
				t.Log(rec)
			}
		}
	})
	waitFor(t, sp, "the quarantine", func() bool { return !sp.Health().Healthy })
	if h := sp.Health(); len(h.Problems) != 1 || !strings.Contains(h.Problems[0], "organ fragile quarantined") {
		t.Fatalf("Health() = %+v, want one problem naming the quarantined organ", h)
	}
	fail.Store(false)
	waitFor(t, sp, "the organ to come back", func() bool { return sp.Health().Healthy })
	waitFor(t, sp, "all three events settled", func() bool { return sp.Stats().Processed == 3 })
	if st := sp.Stats(); st.Quarantines != 1 || st.Panics != 2 {
		t.Errorf("Quarantines %d, Panics %d; want 1 and 2", st.Quarantines, st.Panics)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve() = %v", err)
	}
}
