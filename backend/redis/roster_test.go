package redis_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// announce puts b's worker on its group's roster, serving organ on the types.
func announce(t *testing.T, b *necroredis.Backend, organ string, types ...string) {
	t.Helper()
	if err := b.Announce(t.Context(), []backend.OrganRoutes{{Organ: organ, Types: types}}); err != nil {
		t.Fatalf("Announce(%s) = %v", organ, err)
	}
}

// announceWorker puts a worker of the default group, the one an Admin checks replays
// against, on the roster of stream, serving organ on the types.
func announceWorker(t *testing.T, srv *redistest.Server, stream, organ string, types ...string) {
	t.Helper()
	announce(t, open(t, srv, necroredis.Config{Stream: stream, Group: necroredis.DefaultGroup, Consumer: "worker-" + organ}), organ, types...)
}

func names(roll backend.Roll) []string {
	var out []string
	for _, m := range roll.Members {
		out = append(out, m.Name)
	}
	return out
}

// Workers that announce themselves are on each other's roll, with what they serve,
// until they withdraw, close, or stop heartbeating for MemberTimeout.
func TestRosterAnnounceRollWithdraw(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	cfg := func(name string) necroredis.Config {
		return necroredis.Config{Stream: stream, Group: "g", Consumer: name, Heartbeat: 50 * time.Millisecond, MemberTimeout: 300 * time.Millisecond}
	}
	a, b := open(t, srv, cfg("a")), open(t, srv, cfg("b"))
	announce(t, a, "x", "t2", "t1", "t1")
	announce(t, b, "y", "u")
	roll, err := a.Roll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := names(roll); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("roll = %v, want [a b]", got)
	}
	if m := roll.Members[0]; !m.Self || len(m.Organs) != 1 || m.Organs[0].Organ != "x" || !slices.Equal(m.Organs[0].Types, []string{"t1", "t2"}) {
		t.Errorf("a's entry = %+v, want itself serving x on [t1 t2]", m)
	}
	if m := roll.Members[1]; m.Self || m.Seen.IsZero() {
		t.Errorf("b's entry = %+v, want another worker with a heartbeat", m)
	}
	// Heartbeats keep b live past MemberTimeout.
	time.Sleep(600 * time.Millisecond)
	if roll, err = a.Roll(t.Context()); err != nil || !slices.Equal(names(roll), []string{"a", "b"}) {
		t.Fatalf("roll after 2 timeouts = %v, %v; want both still live", names(roll), err)
	}
	if err := b.Withdraw(t.Context()); err != nil {
		t.Fatal(err)
	}
	if roll, err = a.Roll(t.Context()); err != nil || !slices.Equal(names(roll), []string{"a"}) {
		t.Errorf("roll after b withdrew = %v, %v; want [a]", names(roll), err)
	}

	// A worker that stops heartbeating (here: a roster entry with no store behind it)
	// drops off after MemberTimeout, and inspect still shows it as gone.
	key := stream + ":workers:g"
	if _, err := srv.Do("HSET", key, "ghost", `{"seen":1,"organs":{"z":["v"]}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Do("HSET", key, "odd", `not json`); err != nil {
		t.Fatal(err)
	}
	if roll, err = a.Roll(t.Context()); err != nil || !slices.Equal(names(roll), []string{"a"}) {
		t.Errorf("roll with a long-gone and an odd entry = %v, %v; want [a]", names(roll), err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Do("HLEN", key); err != nil || n != "0" {
		t.Errorf("HLEN %s after every worker left = %s, %v; want 0 (the long-gone entry and the odd one removed)", key, n, err)
	}
}

// A delivery handed off to another worker leaves this one, keeps its entry id, and is
// handed out by the receiver, which adopts it; the giver can no longer settle it.
func TestHandoffIsAdoptedByTheReceiver(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	giver := open(t, srv, necroredis.Config{Stream: stream, Group: "g", Consumer: "giver"})
	receiver := open(t, srv, necroredis.Config{Stream: stream, Group: "g", Consumer: "receiver"})
	announce(t, giver, "x", "t")
	announce(t, receiver, "y", "u")
	ev := newEvent(t, "u", nil)
	if err := giver.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	ds, err := giver.Pull(t.Context(), 1)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Pull = %v, %v", ds, err)
	}
	if err := giver.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Handoff, To: "receiver"}); err != nil {
		t.Fatalf("Settle(Handoff) = %v", err)
	}
	if err := giver.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack}); !errors.Is(err, backend.ErrUnknownDelivery) {
		t.Errorf("Ack after the handoff = %v, want ErrUnknownDelivery", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := receiver.Pull(ctx, 1)
	if err != nil || len(got) != 1 || got[0].Event.ID() != ev.ID() {
		t.Fatalf("receiver's Pull = %v, %v; want the handed-off event", got, err)
	}
	if entryIDOf(t, got[0]) != entryIDOf(t, ds[0]) {
		t.Errorf("receiver got entry %s, want the same entry %s", entryIDOf(t, got[0]), entryIDOf(t, ds[0]))
	}
	if err := receiver.Settle(t.Context(), backend.Settlement{Delivery: got[0], Outcome: backend.Ack}); err != nil {
		t.Fatalf("receiver's Ack = %v", err)
	}
	if m := giver.Metrics(); m.HandedOff != 1 {
		t.Errorf("giver HandedOff = %d, want 1", m.HandedOff)
	}
	if m := receiver.Metrics(); m.Adopted != 1 {
		t.Errorf("receiver Adopted = %d, want 1", m.Adopted)
	}
	// A handoff to nobody else is refused, and the delivery stays with the giver.
	if err := giver.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	ds, err = giver.Pull(ctx, 1)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Pull = %v, %v", ds, err)
	}
	if err := giver.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Handoff, To: "giver"}); err == nil || !strings.Contains(err.Error(), "another worker") {
		t.Errorf("Settle(Handoff to itself) = %v, want an error", err)
	}
	if err := giver.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack}); err != nil {
		t.Errorf("Ack after a refused handoff = %v, want nil", err)
	}
}

// A dead letter whose organ no live worker mounts is not replayed unless re-targeted at
// an organ a live worker mounts, or replayed unchecked; inspect shows the roster.
func TestReplayRefusesOrganNoLiveWorkerMounts(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream := unique("necro:test:")
	b := open(t, srv, necroredis.Config{Stream: stream, Group: necroredis.DefaultGroup, Consumer: "w1"})
	deadLetter(t, b, newEvent(t, "x", nil), "Old", 1, "boom")
	a := openAdmin(t, srv, stream)
	all, err := a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil || len(all) != 1 {
		t.Fatalf("DeadLetterEntries() = %d entries, %v", len(all), err)
	}
	id := all[0].ID
	if _, err := a.Replay(t.Context(), id, necroredis.ReplayOptions{}); !errors.Is(err, necroredis.ErrNoLiveOrgan) ||
		!strings.Contains(err.Error(), `"Old"`) {
		t.Errorf("Replay with no live worker = %v, want ErrNoLiveOrgan naming Old", err)
	}
	announce(t, b, "New", "x")
	if _, err := a.Replay(t.Context(), id, necroredis.ReplayOptions{}); !errors.Is(err, necroredis.ErrNoLiveOrgan) ||
		!strings.Contains(err.Error(), `organ "Old"`) || !strings.Contains(err.Error(), "1 live workers") {
		t.Errorf("Replay for a renamed organ = %v, want ErrNoLiveOrgan naming Old", err)
	}
	if _, err := a.Replay(t.Context(), id, necroredis.ReplayOptions{Targets: []string{"Gone"}}); !errors.Is(err, necroredis.ErrNoLiveOrgan) {
		t.Errorf("Replay re-targeted at an organ nobody mounts = %v, want ErrNoLiveOrgan", err)
	}
	in, err := a.Inspect(t.Context())
	if err != nil || len(in.Groups) != 1 || len(in.Groups[0].Workers) != 1 {
		t.Fatalf("Inspect = %+v, %v; want one group with one worker", in.Groups, err)
	}
	if w := in.Groups[0].Workers[0]; w.Name != "w1" || !w.Live || w.Organs[0].Organ != "New" {
		t.Errorf("roster = %+v, want w1 live serving New", w)
	}
	newID, err := a.Replay(t.Context(), id, necroredis.ReplayOptions{Targets: []string{"New"}})
	if err != nil || newID == "" {
		t.Fatalf("Replay re-targeted at New = %q, %v", newID, err)
	}
	ds, err := b.Pull(t.Context(), 1)
	if err != nil || len(ds) != 1 || !slices.Equal(ds[0].Event.Meta().Targets, []string{"New"}) {
		t.Fatalf("Pull after the replay = %v, %v; want the event targeted at New", ds, err)
	}

	// Unchecked replays whatever the roster says.
	deadLetter(t, b, newEvent(t, "nobody.listens", nil), "Old", 1, "boom")
	all, err = a.DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{Type: "nobody.listens"})
	if err != nil || len(all) != 1 {
		t.Fatalf("DeadLetterEntries() = %d entries, %v", len(all), err)
	}
	if newID, err := a.Replay(t.Context(), all[0].ID, necroredis.ReplayOptions{Unchecked: true}); err != nil || newID == "" {
		t.Errorf("unchecked Replay = %q, %v; want it replayed", newID, err)
	}
}
