package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/backendtest"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// unique returns prefix and 8 random hex digits, for stream, group and consumer names
// that no other test uses.
func unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// open returns a store on a fresh stream of srv, closed when the test ends.
func open(t *testing.T, srv *redistest.Server, cfg necroredis.Config) *necroredis.Backend {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = srv.URL()
	}
	b, err := connOpen(t, cfg)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.Stream, err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	backendtest.Run(t, func(t *testing.T, cfg backendtest.Config) backend.Backend {
		return open(t, srv, necroredis.Config{Capacity: cfg.Capacity, NackDelay: cfg.NackDelay})
	})
}

// Deliveries given back and never handled are claimable by another consumer as soon as
// their holder closes, not after ClaimAfter; one still being handled waits ClaimAfter.
func TestCloseHandsBackReleased(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	cfg := necroredis.Config{Stream: unique("necro:test:"), Group: unique("g-"), ClaimAfter: 4 * time.Second}
	first := open(t, srv, cfg)
	evs := make([]necro.Event, 3)
	for i := range evs {
		var err error
		if evs[i], err = necro.NewEvent("handback", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Enqueue(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	ds, err := first.Pull(t.Context(), 3)
	if err != nil || len(ds) != 3 {
		t.Fatalf("Pull(3) = %d deliveries, %v", len(ds), err)
	}
	if err := first.Settle(t.Context(),
		backend.Settlement{Delivery: ds[1], Outcome: backend.Release},
		backend.Settlement{Delivery: ds[2], Outcome: backend.Nack}); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := open(t, srv, cfg)
	start := time.Now()
	var got []string
	for time.Since(start) < 3*time.Second && len(got) < 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		more, _ := second.Pull(ctx, 10)
		cancel()
		for _, d := range more {
			got = append(got, d.Event.ID())
		}
	}
	if want := []string{evs[1].ID(), evs[2].ID()}; !slices.Equal(got, want) {
		t.Fatalf("the second consumer got %v within %v of the first closing, want the two given back: %v",
			got, time.Since(start), want)
	}
	if m := second.Metrics(); m.PendingRecovered != 2 {
		t.Errorf("PendingRecovered = %d, want 2", m.PendingRecovered)
	}
}

// A worker with a stable consumer name takes back the entries its previous process left
// pending, at once and first in line, instead of waiting ClaimAfter for a claim.
func TestStableConsumerTakesBackOwnPending(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	cfg := necroredis.Config{Stream: unique("necro:test:"), Group: unique("g-"), Consumer: "worker-1", ClaimAfter: time.Hour}
	before := open(t, srv, cfg)
	evs := make([]necro.Event, 3)
	for i := range evs {
		var err error
		if evs[i], err = necro.NewEvent("own", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := before.Enqueue(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	if ds, err := before.Pull(t.Context(), 2); err != nil || len(ds) != 2 {
		t.Fatalf("Pull(2) = %d deliveries, %v", len(ds), err)
	}
	if err := before.Close(); err != nil { // the two stay pending to worker-1
		t.Fatal(err)
	}
	after := open(t, srv, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	ds, err := after.Pull(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 {
		t.Fatalf("first Pull after the restart handed out %d deliveries, want 3", len(ds))
	}
	for i, d := range ds {
		want := 1 // the entry never read comes after the two taken back
		if i < 2 {
			want = 2
		}
		if d.Event.ID() != evs[i].ID() || d.Deliveries < want {
			t.Errorf("delivery %d = %s with Deliveries %d, want %s with at least %d", i, d.Event.ID(), d.Deliveries, evs[i].ID(), want)
		}
	}
}

// Background work that fails while Redis is away is counted, not only logged.
func TestBackgroundFailuresAreCounted(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{})
	if got := b.Metrics().Failures; got != 0 {
		t.Fatalf("Failures = %d before anything failed", got)
	}
	srv.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for b.Metrics().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Failures still 0 five seconds after Redis was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
