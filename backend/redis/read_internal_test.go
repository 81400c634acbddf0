package redis

import (
	"errors"
	"io"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/internal/redistest"
)

// A read of new entries whose reply is lost to the network leaves its entries pending
// to this consumer and held nowhere: the store reads them again at once, as their
// first delivery, rather than after ClaimAfter; the entries held already are left
// alone. A read Redis refused with an error reply recovers nothing.
func TestLostReadRecoveredAtOnce(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b, err := Open(t.Context(), Config{URL: srv.URL(), Stream: "necro:test:lost", ClaimAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // the test's checks are done by then
	var evs []necro.Event
	for i := range 5 {
		ev, err := necro.NewEvent("LOST", map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	first, err := b.Pull(t.Context(), 1)
	if err != nil || len(first) != 1 || first[0].Event.ID() != evs[0].ID() {
		t.Fatalf("Pull(1) = %v, %v; want %s", first, err, evs[0].ID())
	}

	// Redis delivers two entries to this consumer; their reply never reaches the store.
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = raw.Close() }) // nothing left to report at the end of a test
	res, err := raw.XReadGroup(t.Context(), &goredis.XReadGroupArgs{Group: b.cfg.Group, Consumer: b.cfg.Consumer,
		Streams: []string{b.cfg.Stream, ">"}, Count: 2}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != 2 {
		t.Fatalf("XREADGROUP as the store's consumer = %v, %v; want 2 entries", res, err)
	}

	b.reading <- struct{}{} // a Pull's turn to read, as Pull takes it
	refused := errors.New("ERR something Redis refused")
	ds, err := b.readFailed(t.Context(), 10, b.cfg.MaxPullBytes, refused)
	if !errors.Is(err, refused) || len(ds) != 0 || b.lost != "" {
		t.Errorf("after a refused read: readFailed = %v, %v, scan at %q; want the error, nothing, no scan", ds, err, b.lost)
	}
	ds, err = b.readFailed(t.Context(), 10, b.cfg.MaxPullBytes, io.ErrUnexpectedEOF)
	<-b.reading
	if err != nil || len(ds) != 2 || ds[0].Event.ID() != evs[1].ID() || ds[1].Event.ID() != evs[2].ID() {
		t.Fatalf("after a read lost to the network: readFailed = %v, %v; want %s and %s", ds, err, evs[1].ID(), evs[2].ID())
	}
	for _, d := range ds {
		if d.Deliveries != 1 {
			t.Errorf("delivery of %s is number %d, want 1", d.Event.ID(), d.Deliveries)
		}
	}
	rest, err := b.Pull(t.Context(), 10)
	if err != nil || len(rest) != 2 || rest[0].Event.ID() != evs[3].ID() || rest[1].Event.ID() != evs[4].ID() {
		t.Fatalf("Pull(10) = %v, %v; want %s and %s, once each", rest, err, evs[3].ID(), evs[4].ID())
	}
	p, err := raw.XPendingExt(t.Context(), &goredis.XPendingExtArgs{Stream: b.cfg.Stream, Group: b.cfg.Group,
		Start: "-", End: "+", Count: 10}).Result()
	if err != nil || len(p) != 5 {
		t.Fatalf("XPENDING = %v, %v; want the 5 entries", p, err)
	}
	for _, e := range p {
		if e.RetryCount != 1 || e.Consumer != b.cfg.Consumer {
			t.Errorf("pending entry %s: %d deliveries, to %s; want 1, to %s", e.ID, e.RetryCount, e.Consumer, b.cfg.Consumer)
		}
	}
}
