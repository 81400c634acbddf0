package redis_test

// The seed behaviours of Python NecroStack's RedisBackend (reference/seed-behaviors.md
// §1.H, rows H1–H17), each against a real redis-server, plus the behaviours the Go
// design adds around them: consumers leaving the group, entries deleted while pending,
// trimming, and delayed retries.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
)

// seedClient returns a go-redis client of srv for inspecting what the store wrote,
// closed when the test ends.
func seedClient(t *testing.T, srv *redistest.Server) *goredis.Client {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() }) // nothing left to report at the end of a test
	return rdb
}

// seedEvent builds an event or fails the test.
func seedEvent(t *testing.T, typ string, payload any) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		t.Fatalf("NewEvent(%q, %v) = %v", typ, payload, err)
	}
	return ev
}

// seedEnqueue enqueues the events or fails the test.
func seedEnqueue(t *testing.T, b *necroredis.Backend, evs ...necro.Event) {
	t.Helper()
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatalf("Enqueue(%d events) = %v", len(evs), err)
	}
}

// seedPull pulls up to max deliveries, waiting at most within, and fails the test when
// none comes.
func seedPull(t *testing.T, b *necroredis.Backend, max int, within time.Duration) []backend.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	ds, err := b.Pull(ctx, max)
	if err != nil || len(ds) == 0 {
		t.Fatalf("Pull(%d) within %v = %d deliveries, %v; want at least one", max, within, len(ds), err)
	}
	return ds
}

// seedAck acknowledges the deliveries or fails the test.
func seedAck(t *testing.T, b *necroredis.Backend, ds ...backend.Delivery) {
	t.Helper()
	sts := make([]backend.Settlement, len(ds))
	for i, d := range ds {
		sts[i] = backend.Settlement{Delivery: d, Outcome: backend.Ack}
	}
	if err := b.Settle(t.Context(), sts...); err != nil {
		t.Fatalf("Settle(ack %d) = %v", len(ds), err)
	}
}

// seedPending returns the group's pending count (XPENDING summary).
func seedPending(t *testing.T, rdb *goredis.Client, stream, group string) int64 {
	t.Helper()
	p, err := rdb.XPending(t.Context(), stream, group).Result()
	if err != nil {
		t.Fatalf("XPENDING %s %s = %v", stream, group, err)
	}
	return p.Count
}

// seedEntryIDs returns the ids of the entries of a stream, oldest first.
func seedEntryIDs(t *testing.T, rdb *goredis.Client, stream string) []string {
	t.Helper()
	msgs, err := rdb.XRange(t.Context(), stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s = %v", stream, err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// seedDeadLetters returns the entries of a dead-letter stream, oldest first.
func seedDeadLetters(t *testing.T, rdb *goredis.Client, dlq string) []goredis.XMessage {
	t.Helper()
	msgs, err := rdb.XRange(t.Context(), dlq, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s = %v", dlq, err)
	}
	return msgs
}

// seedConsumers returns the group's consumers by name, with their pending counts.
func seedConsumers(t *testing.T, rdb *goredis.Client, stream, group string) map[string]int64 {
	t.Helper()
	cs, err := rdb.XInfoConsumers(t.Context(), stream, group).Result()
	if err != nil {
		t.Fatalf("XINFO CONSUMERS %s %s = %v", stream, group, err)
	}
	out := make(map[string]int64, len(cs))
	for _, c := range cs {
		out[c.Name] = c.Pending
	}
	return out
}

// seedEventually polls cond every 10ms until it holds, failing the test with what
// when it still does not after within.
func seedEventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seedNames returns a fresh stream and group name.
func seedNames() (stream, group string) {
	return unique("necro:test:"), unique("test-group-")
}

// H1: an enqueued event comes back from Pull with the same id, type and payload.
func TestSeedH1EnqueueAndPull(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{})
	ev := seedEvent(t, "TEST_EVENT", map[string]any{"key": "value"})
	seedEnqueue(t, b, ev)
	ds := seedPull(t, b, 1, 2*time.Second)
	if len(ds) != 1 || !ds[0].Event.Equal(ev) {
		t.Fatalf("Pull() = %v, want exactly %v", ds, ev)
	}
	got := ds[0].Event
	if got.ID() != ev.ID() || got.Type() != "TEST_EVENT" || string(got.PayloadJSON()) != `{"key":"value"}` {
		t.Errorf("pulled id %s type %q payload %s, want %s TEST_EVENT {\"key\":\"value\"}",
			got.ID(), got.Type(), got.PayloadJSON(), ev.ID())
	}
	if ds[0].Deliveries != 1 {
		t.Errorf("Deliveries = %d, want 1", ds[0].Deliveries)
	}
}

// H2: events come back in FIFO order, and each is acked.
func TestSeedH2FIFOOrder(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	var want []string
	for i := range 3 {
		ev := seedEvent(t, "ORDERED", map[string]any{"seq": i})
		seedEnqueue(t, b, ev) // one at a time, as Python does
		want = append(want, ev.ID())
	}
	var got []string
	for range 3 {
		d := seedPull(t, b, 1, 2*time.Second)[0]
		got = append(got, d.Event.ID())
		seedAck(t, b, d)
	}
	if !slices.Equal(got, want) {
		t.Errorf("pulled %v, want FIFO %v", got, want)
	}
	if m := b.Metrics(); m.Acked != 3 {
		t.Errorf("Metrics().Acked = %d, want 3", m.Acked)
	}
	cfg := b.Config()
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 0 {
		t.Errorf("XPENDING count = %d after acking all, want 0", n)
	}
}

// H3: a Pull on an empty stream waits for its ctx and returns the ctx's error and no
// delivery (Python returned None after its timeout).
func TestSeedH3PullTimesOutOnEmpty(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{Block: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	ds, err := b.Pull(ctx, 1)
	elapsed := time.Since(start)
	if len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull() on an empty stream = %v, %v; want no delivery and context.DeadlineExceeded", ds, err)
	}
	if elapsed < 90*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("Pull() returned after %v, want about the ctx's 100ms", elapsed)
	}
}

// H4: a payload of strings, numbers, a nested object and a list survives the trip, and
// so does the timestamp, to the microsecond.
func TestSeedH4SerializationRoundTrip(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{})
	at := time.Date(2025, 1, 15, 10, 30, 45, 123456789, time.UTC)
	ev, err := necro.Draft{Type: "COMPLEX_EVENT", Timestamp: at, Payload: map[string]any{
		"string": "hello",
		"int":    42,
		"float":  3.14,
		"nested": map[string]any{"a": 1, "b": []any{1, 2, 3}},
		"list":   []any{"x", "y", "z"},
	}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	seedEnqueue(t, b, ev)
	got := seedPull(t, b, 1, 2*time.Second)[0].Event
	if !got.Equal(ev) {
		t.Errorf("pulled %s payload %s, want %s payload %s", got, got.PayloadJSON(), ev, ev.PayloadJSON())
	}
	if want := at.Truncate(time.Microsecond); !got.Timestamp().Equal(want) {
		t.Errorf("Timestamp() = %v, want %v", got.Timestamp(), want)
	}
	p := got.Payload()
	if p["string"] != "hello" || fmt.Sprint(p["int"]) != "42" || fmt.Sprint(p["float"]) != "3.14" ||
		fmt.Sprint(p["nested"]) != "map[a:1 b:[1 2 3]]" || fmt.Sprint(p["list"]) != "[x y z]" {
		t.Errorf("Payload() = %v", p)
	}
}

// H5: an ack after a pull counts, and leaves nothing pending.
func TestSeedH5AckRemovesFromPending(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	seedEnqueue(t, b, seedEvent(t, "ACK_TEST", nil))
	d := seedPull(t, b, 1, 2*time.Second)[0]
	cfg := b.Config()
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 1 {
		t.Errorf("XPENDING count = %d before the ack, want 1", n)
	}
	seedAck(t, b, d)
	if m := b.Metrics(); m.Acked != 1 {
		t.Errorf("Metrics().Acked = %d, want 1", m.Acked)
	}
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 0 {
		t.Errorf("XPENDING count = %d after the ack, want 0", n)
	}
}

// H6: a delivery pulled and not acked stays in the group's pending list, under this
// consumer's name.
func TestSeedH6UnackedStaysPending(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{Consumer: unique("test-consumer-")})
	seedEnqueue(t, b, seedEvent(t, "PENDING_TEST", nil))
	seedPull(t, b, 1, 2*time.Second)
	cfg := b.Config()
	p, err := rdb.XPending(t.Context(), cfg.Stream, cfg.Group).Result()
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 1 || p.Consumers[cfg.Consumer] != 1 {
		t.Errorf("XPENDING = %+v, want 1 entry pending to %s", p, cfg.Consumer)
	}
}

// H7: the consumer group exists without anyone creating it. Python created it before
// its first enqueue or pull; Open creates it at once, so it exists before either.
func TestSeedH7GroupCreatedAutomatically(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	stream, group := seedNames()
	b := open(t, srv, necroredis.Config{Stream: stream, Group: group})
	groups, err := rdb.XInfoGroups(t.Context(), stream).Result()
	if err != nil {
		t.Fatalf("XINFO GROUPS %s right after Open = %v", stream, err)
	}
	if len(groups) != 1 || groups[0].Name != group || groups[0].LastDeliveredID != "0-0" {
		t.Errorf("XINFO GROUPS = %+v, want only %s, reading from 0", groups, group)
	}
	seedEnqueue(t, b, seedEvent(t, "GROUP_TEST", nil))
	if d := seedPull(t, b, 1, 2*time.Second)[0]; d.Event.Type() != "GROUP_TEST" {
		t.Errorf("pulled %s, want the GROUP_TEST event", d.Event)
	}
}

// H8: an entry held by a live consumer is never claimed, however long it is handled:
// the consumer refreshes it. Once that consumer has stopped (Close leaves its held
// entries pending), another consumer of the group claims the same entry after
// ClaimAfter, as its second delivery.
func TestSeedH8PendingRecovery(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream, group := seedNames()
	// A live consumer refreshes what it holds every ClaimAfter/6; 500ms leaves room for
	// the stalls of a loaded machine running -race.
	const claimAfter = 500 * time.Millisecond
	cfg := necroredis.Config{Stream: stream, Group: group, ClaimAfter: claimAfter}
	cfg.Consumer = "consumer-1"
	first := open(t, srv, cfg)
	cfg.Consumer = "consumer-2"
	second := open(t, srv, cfg)

	ev := seedEvent(t, "RECOVERY_TEST", nil)
	seedEnqueue(t, first, ev)
	d := seedPull(t, first, 1, 2*time.Second)[0]
	if d.Event.ID() != ev.ID() || d.Deliveries != 1 {
		t.Fatalf("first pull = %s (delivery %d), want %s (delivery 1)", d.Event, d.Deliveries, ev.ID())
	}

	// (a) The first consumer is alive and holds it: the second gets nothing.
	ctx, cancel := context.WithTimeout(t.Context(), 3*claimAfter)
	ds, err := second.Pull(ctx, 1)
	cancel()
	if len(ds) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("while consumer-1 holds the entry, consumer-2's Pull = %v, %v; want nothing within %v",
			ds, err, 3*claimAfter)
	}

	// (b) The first consumer stops without settling: the second claims the entry.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	got := seedPull(t, second, 1, 5*time.Second)[0]
	if got.Event.ID() != ev.ID() || got.Deliveries != 2 {
		t.Errorf("consumer-2 pulled %s (delivery %d), want %s (delivery 2)", got.Event, got.Deliveries, ev.ID())
	}
	if m := second.Metrics(); m.PendingRecovered < 1 {
		t.Errorf("Metrics().PendingRecovered = %d, want >= 1", m.PendingRecovered)
	}
	seedAck(t, second, got)
}

// A consumer that holds nothing leaves the group when it closes.
func TestSeedCloseLeavesGroupWhenHoldingNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	stream, group := seedNames()
	b := open(t, srv, necroredis.Config{Stream: stream, Group: group, Consumer: "leaver"})
	seedEnqueue(t, b, seedEvent(t, "LEAVE", nil))
	seedAck(t, b, seedPull(t, b, 1, 2*time.Second)...)
	if cs := seedConsumers(t, rdb, stream, group); len(cs) != 1 {
		t.Fatalf("consumers before Close = %v, want leaver", cs)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if cs := seedConsumers(t, rdb, stream, group); len(cs) != 0 {
		t.Errorf("consumers after Close = %v, want none: leaver held nothing", cs)
	}
}

// A consumer that closes holding a delivery stays in the group, even when idle past
// ForgetConsumersAfter, until its entries are claimed; then it is forgotten.
func TestSeedCloseStaysWhileHolding(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	stream, group := seedNames()
	holder := open(t, srv, necroredis.Config{Stream: stream, Group: group, Consumer: "holder"})
	ev := seedEvent(t, "HELD", nil)
	seedEnqueue(t, holder, ev)
	seedPull(t, holder, 1, 2*time.Second)
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	if cs := seedConsumers(t, rdb, stream, group); cs["holder"] != 1 {
		t.Fatalf("consumers after Close = %v, want holder with 1 pending", cs)
	}

	const forget = 100 * time.Millisecond
	other := open(t, srv, necroredis.Config{Stream: stream, Group: group, Consumer: "other",
		ClaimAfter: 100 * time.Millisecond, ForgetConsumersAfter: forget, TrimInterval: 20 * time.Millisecond})
	// No Pull yet, so nothing is claimed: holder is idle past forget and must stay.
	time.Sleep(4 * forget)
	if cs := seedConsumers(t, rdb, stream, group); cs["holder"] != 1 {
		t.Fatalf("consumers %v after %v idle, want holder still there with 1 pending", cs, 4*forget)
	}
	if m := other.Metrics(); m.ForgotConsumers != 0 {
		t.Errorf("ForgotConsumers = %d while holder holds an entry, want 0", m.ForgotConsumers)
	}

	d := seedPull(t, other, 1, 5*time.Second)[0]
	if d.Event.ID() != ev.ID() || d.Deliveries != 2 {
		t.Fatalf("other pulled %s (delivery %d), want %s (delivery 2)", d.Event, d.Deliveries, ev.ID())
	}
	seedAck(t, other, d)
	seedEventually(t, 3*time.Second, "holder is still in the group after its entry was claimed, or not counted", func() bool {
		_, ok := seedConsumers(t, rdb, stream, group)["holder"]
		return !ok && other.Metrics().ForgotConsumers > 0
	})
	if m := other.Metrics(); m.ForgotConsumers != 1 {
		t.Errorf("ForgotConsumers = %d, want 1", m.ForgotConsumers)
	}
}

// ForgetConsumersAfter removes a consumer of another process that has been idle that
// long and holds nothing.
func TestSeedForgetIdleConsumers(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	stream, group := seedNames()
	if err := rdb.XGroupCreateMkStream(t.Context(), stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// Another process joins the group as "ghost" with a raw XREADGROUP, reads an entry
	// and acks it, so that it holds nothing. (Redis 7.0 adds a consumer only when its
	// read returns something.)
	if err := rdb.XAdd(t.Context(), &goredis.XAddArgs{Stream: stream, Values: []any{"note", "read by ghost"}}).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(t.Context(), &goredis.XReadGroupArgs{Group: group, Consumer: "ghost",
		Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != 1 {
		t.Fatalf("XREADGROUP as ghost = %v, %v", res, err)
	}
	if err := rdb.XAck(t.Context(), stream, group, res[0].Messages[0].ID).Err(); err != nil {
		t.Fatal(err)
	}
	if cs := seedConsumers(t, rdb, stream, group); len(cs) != 1 || cs["ghost"] != 0 {
		t.Fatalf("consumers = %v, want ghost holding nothing", cs)
	}
	b := open(t, srv, necroredis.Config{Stream: stream, Group: group, ForgetConsumersAfter: 200 * time.Millisecond,
		TrimInterval: 50 * time.Millisecond})
	// The counter moves after the script's reply: wait for both.
	seedEventually(t, 3*time.Second, "ghost is still in the group, or not counted", func() bool {
		_, ok := seedConsumers(t, rdb, stream, group)["ghost"]
		return !ok && b.Metrics().ForgotConsumers > 0
	})
	if m := b.Metrics(); m.ForgotConsumers != 1 {
		t.Errorf("ForgotConsumers = %d, want 1", m.ForgotConsumers)
	}
	if cs := seedConsumers(t, rdb, stream, group); len(cs) > 1 || len(cs) == 1 && cs[b.Config().Consumer] != 0 {
		t.Errorf("consumers = %v, want at most the store's own, %s", cs, b.Config().Consumer)
	}
}

// H9: a dead letter written by Settle lands in the dead-letter stream with the caller's
// reason, the source entry's id and event, and a failed_at; the source entry is acked.
func TestSeedH9DeadLetter(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	cfg := b.Config()
	ev := seedEvent(t, "NACK_TEST", map[string]any{"k": "v"})
	seedEnqueue(t, b, ev)
	entry := seedEntryIDs(t, rdb, cfg.Stream)[0]
	d := seedPull(t, b, 1, 2*time.Second)[0]
	at := time.Now()
	err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: backend.Ack, DeadLetters: []backend.DeadLetter{{
		Event: d.Event, Organ: "Failing", Attempts: 3, Error: "boom", Reason: "Test failure", At: at, Receipt: d.Receipt,
	}}})
	if err != nil {
		t.Fatalf("Settle(dead letter) = %v", err)
	}
	dls := seedDeadLetters(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 1 {
		t.Fatalf("%s holds %d entries, want 1", cfg.DeadLetterStream, len(dls))
	}
	v := dls[0].Values
	if v["reason"] != "Test failure" || v["original_id"] != entry || v["event"] != string(ev.AppendJSON(nil)) ||
		v["organ"] != "Failing" || v["attempts"] != "3" || v["error"] != "boom" {
		t.Errorf("dead letter = %v, want reason %q original_id %s event %s organ Failing attempts 3 error boom",
			v, "Test failure", entry, ev.AppendJSON(nil))
	}
	if s, _ := v["failed_at"].(string); s == "" {
		t.Errorf("dead letter has no failed_at: %v", v)
	} else if ts, err := necro.ParseTimestamp(s); err != nil || ts.Sub(at).Abs() > time.Millisecond {
		t.Errorf("failed_at %q = %v, %v; want %v", s, ts, err, at)
	}
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 0 {
		t.Errorf("XPENDING count = %d after the dead letter, want 0: the source is acked", n)
	}
	got, err := b.DeadLetters(t.Context(), 0)
	if err != nil || len(got) != 1 || !got[0].Event.Equal(ev) || got[0].Reason != "Test failure" ||
		got[0].Organ != "Failing" || got[0].Attempts != 3 || got[0].Error != "boom" || got[0].Receipt != d.Receipt {
		t.Errorf("DeadLetters() = %+v, %v", got, err)
	}
	if m := b.Metrics(); m.DeadLettered != 1 {
		t.Errorf("Metrics().DeadLettered = %d, want 1", m.DeadLettered)
	}
}

// H10, changed on purpose. Python dead-lettered an entry after max_retries deliveries,
// counting a crashed worker's deliveries as failures. Here the Spine counts failures,
// and the store counts only deliveries that were never settled: with MaxDeliveries 2 an
// entry is dead-lettered on its third delivery, which only happens when the consumers
// holding it stop (a live consumer refreshes what it holds). With MaxDeliveries off,
// the default, no number of claims dead-letters it.
func TestSeedH10MaxDeliveries(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)

	t.Run("MaxDeliveries 2", func(t *testing.T) {
		stream, group := seedNames()
		cfg := necroredis.Config{Stream: stream, Group: group, ClaimAfter: 100 * time.Millisecond, MaxDeliveries: 2}
		ev := seedEvent(t, "POISON_TEST", nil)
		var entry string
		// Two consumers take turns; each pulls and stops without settling.
		for i, name := range []string{"consumer-1", "consumer-2"} {
			cfg.Consumer = name
			b := open(t, srv, cfg)
			if i == 0 {
				seedEnqueue(t, b, ev)
				entry = seedEntryIDs(t, rdb, stream)[0]
			}
			d := seedPull(t, b, 1, 5*time.Second)[0]
			if d.Event.ID() != ev.ID() || d.Deliveries != i+1 {
				t.Fatalf("%s pulled %s (delivery %d), want %s (delivery %d)", name, d.Event, d.Deliveries, ev.ID(), i+1)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		}
		cfg.Consumer = "consumer-1"
		b := open(t, srv, cfg)
		seedEventually(t, 5*time.Second, "the third delivery was not dead-lettered", func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			if ds, _ := b.Pull(ctx, 1); len(ds) > 0 {
				t.Fatalf("the third delivery was handed out: %v", ds)
			}
			return b.Metrics().DeadLettered == 1
		})
		dls := seedDeadLetters(t, rdb, stream+":dlq")
		if len(dls) != 1 || dls[0].Values["reason"] != "delivered 3 times without being settled" ||
			dls[0].Values["original_id"] != entry || dls[0].Values["event"] != string(ev.AppendJSON(nil)) {
			t.Fatalf("dead letters = %v, want one of entry %s with reason %q", dls, entry,
				"delivered 3 times without being settled")
		}
		if n := seedPending(t, rdb, stream, group); n != 0 {
			t.Errorf("XPENDING count = %d after the dead letter, want 0", n)
		}
		// The entry could be decoded: it is dead-lettered for its deliveries, not as poison.
		if m := b.Metrics(); m.Poison != 0 {
			t.Errorf("Metrics().Poison = %d for an entry that decodes, want 0", m.Poison)
		}
	})

	t.Run("MaxDeliveries off", func(t *testing.T) {
		stream, group := seedNames()
		cfg := necroredis.Config{Stream: stream, Group: group, ClaimAfter: 100 * time.Millisecond}
		ev := seedEvent(t, "CRASH_LOOP", nil)
		const claims = 5
		for i := range claims + 1 { // one read, then claims
			cfg.Consumer = "crashing-" + strconv.Itoa(i)
			b := open(t, srv, cfg)
			if i == 0 {
				seedEnqueue(t, b, ev)
			}
			d := seedPull(t, b, 1, 5*time.Second)[0]
			if d.Event.ID() != ev.ID() || d.Deliveries != i+1 {
				t.Fatalf("%s pulled %s (delivery %d), want %s (delivery %d)", cfg.Consumer, d.Event, d.Deliveries,
					ev.ID(), i+1)
			}
			if i == claims {
				seedAck(t, b, d) // a healthy worker at last
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if dls := seedDeadLetters(t, rdb, stream+":dlq"); len(dls) != 0 {
			t.Errorf("dead letters after %d claims = %v, want none", claims, dls)
		}
		if n := seedPending(t, rdb, stream, group); n != 0 {
			t.Errorf("XPENDING count = %d after the ack, want 0", n)
		}
	})
}

// H11: Health after an enqueue is healthy and describes the stream and the group.
func TestSeedH11Health(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{Consumer: unique("test-consumer-")})
	seedEnqueue(t, b, seedEvent(t, "HEALTH_TEST", nil))
	h := b.Health(t.Context())
	cfg := b.Config()
	if !h.Healthy || h.Err != nil || h.Latency <= 0 {
		t.Fatalf("Health() = %+v, want healthy with a latency", h)
	}
	if h.StreamLength != 1 || h.Group != cfg.Group || h.Consumer != cfg.Consumer || h.Lag != 1 || h.Pending != 0 {
		t.Errorf("Health() = %+v, want StreamLength 1, Lag 1, Pending 0, Group %s, Consumer %s",
			h, cfg.Group, cfg.Consumer)
	}
	seedPull(t, b, 1, 2*time.Second)
	if h := b.Health(t.Context()); !h.Healthy || h.Pending != 1 || h.Held != 1 || h.Lag != 0 {
		t.Errorf("Health() after a pull = %+v, want Pending 1, Held 1, Lag 0", h)
	}
}

// H12: the metrics count enqueues, pulls and acks.
func TestSeedH12Metrics(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{})
	if m := b.Metrics(); m != (necroredis.Metrics{}) {
		t.Errorf("Metrics() after Open = %+v, want zero", m)
	}
	seedEnqueue(t, b, seedEvent(t, "METRICS_TEST", nil))
	if m := b.Metrics(); m.Enqueued != 1 || m.Pulled != 0 {
		t.Errorf("after an enqueue, Metrics() = %+v, want Enqueued 1", m)
	}
	d := seedPull(t, b, 1, 2*time.Second)[0]
	if m := b.Metrics(); m.Pulled != 1 || m.Acked != 0 {
		t.Errorf("after a pull, Metrics() = %+v, want Pulled 1", m)
	}
	seedAck(t, b, d)
	if m := b.Metrics(); m.Enqueued != 1 || m.Pulled != 1 || m.Acked != 1 {
		t.Errorf("after an ack, Metrics() = %+v, want Enqueued 1 Pulled 1 Acked 1", m)
	}
}

// H13: when Redis drops every client connection, the next Pull reconnects by itself,
// returns the queued event and counts the reconnection: whether the connections were
// idle in the pool or one was inside a waiting Pull.
func TestSeedH13Reconnect(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	kill := func(t *testing.T) {
		t.Helper()
		if r, err := srv.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil || strings.HasPrefix(r, "ERR:") {
			t.Fatalf("CLIENT KILL TYPE normal = %q, %v", r, err)
		} else if n, _ := strconv.Atoi(r); n < 1 {
			t.Fatalf("CLIENT KILL TYPE normal killed %q connections, want >= 1", r)
		}
	}

	t.Run("idle connections", func(t *testing.T) {
		b := open(t, srv, necroredis.Config{})
		ev := seedEvent(t, "RECONNECT_TEST", nil)
		seedEnqueue(t, b, ev)
		kill(t)
		d := seedPull(t, b, 1, 5*time.Second)[0]
		if d.Event.ID() != ev.ID() {
			t.Errorf("pulled %s after the connections were killed, want %s", d.Event, ev.ID())
		}
		seedAck(t, b, d)
		if m := b.Metrics(); m.Reconnections < 1 {
			t.Errorf("Metrics().Reconnections = %d after the connections were killed, want >= 1", m.Reconnections)
		}
	})

	t.Run("a waiting Pull", func(t *testing.T) {
		rdb := seedClient(t, srv)
		b := open(t, srv, necroredis.Config{Block: 5 * time.Second})
		type result struct {
			ds  []backend.Delivery
			err error
		}
		pulled := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			ds, err := b.Pull(ctx, 1)
			pulled <- result{ds, err}
		}()
		time.Sleep(200 * time.Millisecond) // let the Pull block in XREADGROUP; the test holds either way
		kill(t)
		ev := seedEvent(t, "RECONNECT_TEST", nil)
		wire := string(ev.AppendJSON(nil))
		if err := rdb.XAdd(t.Context(), &goredis.XAddArgs{Stream: b.Config().Stream, Values: []any{"event", wire}}).Err(); err != nil {
			t.Fatal(err)
		}
		r := <-pulled
		if r.err != nil || len(r.ds) != 1 || r.ds[0].Event.ID() != ev.ID() {
			t.Fatalf("the waiting Pull returned %v, %v; want %s", r.ds, r.err, ev.ID())
		}
		seedAck(t, b, r.ds[0])
		if m := b.Metrics(); m.Reconnections < 1 {
			t.Errorf("Metrics().Reconnections = %d after the connections were killed, want >= 1", m.Reconnections)
		}
	})
}

// H14, changed on purpose: Python ignored the ack of an event it never handed out; here
// settling an unknown delivery is an error, ErrUnknownDelivery inside a *SettleError,
// so that a caller's bookkeeping mistake does not pass unnoticed.
func TestSeedH14SettleUnknownDelivery(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{})
	ev := seedEvent(t, "NEVER_PULLED", nil)
	seedEnqueue(t, b, ev)
	check := func(name string, d backend.Delivery) {
		t.Helper()
		err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: backend.Ack})
		var se *backend.SettleError
		if !errors.As(err, &se) || se.Applied != 0 || !errors.Is(err, backend.ErrUnknownDelivery) {
			t.Errorf("%s: Settle() = %v, want a *SettleError{Applied: 0} wrapping ErrUnknownDelivery", name, err)
		}
	}
	check("never pulled", backend.Delivery{Event: ev, Receipt: "0-1#1", Deliveries: 1})
	check("not a receipt", backend.Delivery{Event: ev, Receipt: "nonsense", Deliveries: 1})
	d := seedPull(t, b, 1, 2*time.Second)[0]
	wrong := d
	wrong.Receipt = strings.TrimSuffix(d.Receipt, "#1") + "#2"
	check("another delivery's receipt", wrong)
	seedAck(t, b, d)
	check("acked twice", d)
	if m := b.Metrics(); m.Acked != 1 {
		t.Errorf("Metrics().Acked = %d, want 1", m.Acked)
	}
}

// H15: two consumers of one group share the work: each gets a different event.
func TestSeedH15ConsumersShareTheGroup(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	stream, group := seedNames()
	first := open(t, srv, necroredis.Config{Stream: stream, Group: group, Consumer: "consumer-1"})
	second := open(t, srv, necroredis.Config{Stream: stream, Group: group, Consumer: "consumer-2"})
	for i := range 4 {
		seedEnqueue(t, first, seedEvent(t, "MULTI_TEST", map[string]any{"i": i}))
	}
	d1 := seedPull(t, first, 1, 2*time.Second)[0]
	d2 := seedPull(t, second, 1, 2*time.Second)[0]
	if d1.Event.ID() == d2.Event.ID() {
		t.Errorf("both consumers got %s, want different events", d1.Event.ID())
	}
	seedAck(t, first, d1)
	seedAck(t, second, d2)
}

// H16, decided: after Close every call returns ErrClosed (Python reconnected silently);
// a Pull waiting when Close comes returns it too.
func TestSeedH16Close(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b := open(t, srv, necroredis.Config{})
	ev := seedEvent(t, "CLOSE_TEST", nil)
	seedEnqueue(t, b, ev)
	d := seedPull(t, b, 1, 2*time.Second)[0]

	pulled := make(chan error, 1)
	go func() {
		_, err := b.Pull(t.Context(), 1) // nothing else is queued: it waits
		pulled <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the Pull start waiting; it ends either way
	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	select {
	case err := <-pulled:
		if !errors.Is(err, backend.ErrClosed) {
			t.Errorf("a Pull waiting at Close returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a Pull waiting at Close did not return within 5s")
	}

	ctx := t.Context()
	calls := map[string]error{
		"Close":   b.Close(),
		"Enqueue": b.Enqueue(ctx, ev),
		"Settle":  b.Settle(ctx, backend.Settlement{Delivery: d, Outcome: backend.Ack}),
	}
	_, calls["Pull"] = b.Pull(ctx, 1)
	_, calls["DeadLetters"] = b.DeadLetters(ctx, 0)
	for name, err := range calls {
		if !errors.Is(err, backend.ErrClosed) || !errors.Is(err, necro.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if h := b.Health(ctx); h.Healthy || h.Err == nil {
		t.Errorf("Health() after Close = %+v, want unhealthy with an error", h)
	}
}

// H17: a Spine on the Redis store runs the COUNT chain 1→2→3, stopped from the handler
// at 3; every event is acked.
func TestSeedH17SpineEndToEnd(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	var (
		mu        sync.Mutex
		processed []int
		sp        *spine.Spine
	)
	count := func(_ context.Context, ev necro.Event) ([]necro.Event, error) {
		var p struct{ N int }
		if err := ev.DecodePayload(&p); err != nil {
			return nil, err
		}
		mu.Lock()
		processed = append(processed, p.N)
		mu.Unlock()
		if p.N >= 3 {
			sp.Stop()
			return nil, nil
		}
		next, err := necro.NewEvent("COUNT", map[string]any{"n": p.N + 1})
		return []necro.Event{next}, err
	}
	sp, err := spine.New(b, []necro.Mount{{Name: "Counter", Organ: necro.NewOrgan([]string{"COUNT"}, count)}}, spine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	seedEnqueue(t, b, seedEvent(t, "COUNT", map[string]any{"n": 1}))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := sp.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	mu.Lock()
	got := slices.Clone(processed)
	mu.Unlock()
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("processed %v, want [1 2 3]", got)
	}
	if st := sp.Stats(); st.Processed != 3 || st.Emitted != 2 {
		t.Errorf("Stats() = Processed %d Emitted %d, want 3 2", st.Processed, st.Emitted)
	}
	if m := b.Metrics(); m.Acked != 3 {
		t.Errorf("Metrics().Acked = %d, want 3", m.Acked)
	}
	cfg := b.Config()
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 0 {
		t.Errorf("XPENDING count = %d after the run, want 0", n)
	}
}

// An entry deleted from the stream while pending to a stopped consumer is claimed as
// deleted: dead-lettered with the reason, counted, never dropped silently.
func TestSeedDeletedWhilePending(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	stream, group := seedNames()
	cfg := necroredis.Config{Stream: stream, Group: group, ClaimAfter: 100 * time.Millisecond}
	cfg.Consumer = "stopped"
	stopped := open(t, srv, cfg)
	seedEnqueue(t, stopped, seedEvent(t, "DELETED", nil))
	entry := seedEntryIDs(t, rdb, stream)[0]
	seedPull(t, stopped, 1, 2*time.Second)
	if err := stopped.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.XDel(t.Context(), stream, entry).Result(); err != nil || n != 1 {
		t.Fatalf("XDEL %s = %d, %v", entry, n, err)
	}

	cfg.Consumer = "claimer"
	b := open(t, srv, cfg)
	seedEventually(t, 5*time.Second, "the deleted entry was not accounted for", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if ds, _ := b.Pull(ctx, 1); len(ds) > 0 {
			t.Fatalf("a deleted entry was handed out: %v", ds)
		}
		return b.Metrics().DeletedPending > 0
	})
	if m := b.Metrics(); m.DeletedPending != 1 || m.DeadLettered != 1 {
		t.Errorf("Metrics() = %+v, want DeletedPending 1, DeadLettered 1", m)
	}
	dls := seedDeadLetters(t, rdb, stream+":dlq")
	if len(dls) != 1 || dls[0].Values["reason"] != "entry deleted from the stream while pending" ||
		dls[0].Values["original_id"] != entry {
		t.Errorf("dead letters = %v, want one for %s with reason %q", dls, entry,
			"entry deleted from the stream while pending")
	}
	if n := seedPending(t, rdb, stream, group); n != 0 {
		t.Errorf("XPENDING count = %d, want 0", n)
	}
}

// seedDrain pulls and acks n events in batches.
func seedDrain(t *testing.T, b *necroredis.Backend, n int) {
	t.Helper()
	for n > 0 {
		ds := seedPull(t, b, min(n, 100), 5*time.Second)
		seedAck(t, b, ds...)
		n -= len(ds)
	}
}

// seedMany returns n events.
func seedMany(t *testing.T, typ string, n int) []necro.Event {
	t.Helper()
	evs := make([]necro.Event, n)
	for i := range evs {
		evs[i] = seedEvent(t, typ, map[string]any{"i": i})
	}
	return evs
}

// Acknowledged entries are trimmed, but never one that another group has not read, nor
// one still pending.
func TestSeedTrim(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	const interval = 50 * time.Millisecond
	xlen := func(stream string) int64 {
		n, err := rdb.XLen(t.Context(), stream).Result()
		if err != nil {
			t.Fatalf("XLEN %s = %v", stream, err)
		}
		return n
	}

	t.Run("acked entries go", func(t *testing.T) {
		b := open(t, srv, necroredis.Config{TrimInterval: interval})
		stream := b.Config().Stream
		seedEnqueue(t, b, seedMany(t, "TRIM", 1000)...)
		seedDrain(t, b, 1000)
		seedEventually(t, 2*time.Second, "the acked entries were not trimmed", func() bool { return xlen(stream) <= 5 })
		// The counter moves after the script's reply.
		seedEventually(t, time.Second, "the trimmed entries were not counted", func() bool {
			return b.Metrics().Trimmed >= 1000-xlen(stream)
		})
	})

	t.Run("another group still needs them", func(t *testing.T) {
		b := open(t, srv, necroredis.Config{TrimInterval: interval})
		stream := b.Config().Stream
		if err := rdb.XGroupCreate(t.Context(), stream, "late-reader", "0").Err(); err != nil {
			t.Fatal(err)
		}
		seedEnqueue(t, b, seedMany(t, "TRIM", 1000)...)
		seedDrain(t, b, 1000)
		time.Sleep(10 * interval) // ten chances to trim what it must not
		if n := xlen(stream); n != 1000 {
			t.Fatalf("XLEN = %d while late-reader has read nothing, want 1000", n)
		}
		// The other group reads and acks everything; now the entries may go.
		res, err := rdb.XReadGroup(t.Context(), &goredis.XReadGroupArgs{Group: "late-reader", Consumer: "r",
			Streams: []string{stream, ">"}, Count: 2000, Block: -1}).Result()
		if err != nil || len(res) != 1 || len(res[0].Messages) != 1000 {
			t.Fatalf("late-reader read %v, %v; want all 1000 entries", len(res), err)
		}
		ids := make([]string, len(res[0].Messages))
		for i, m := range res[0].Messages {
			ids[i] = m.ID
		}
		if err := rdb.XAck(t.Context(), stream, "late-reader", ids...).Err(); err != nil {
			t.Fatal(err)
		}
		seedEventually(t, 2*time.Second, "entries acked by both groups were not trimmed", func() bool {
			return xlen(stream) <= 5
		})
	})

	t.Run("pending entries stay", func(t *testing.T) {
		b := open(t, srv, necroredis.Config{TrimInterval: interval})
		stream := b.Config().Stream
		seedEnqueue(t, b, seedMany(t, "TRIM", 10)...)
		ds := seedPull(t, b, 10, 2*time.Second)
		if len(ds) != 10 {
			t.Fatalf("Pull(10) = %d deliveries, want 10", len(ds))
		}
		ids := seedEntryIDs(t, rdb, stream)
		seedAck(t, b, ds[:5]...)
		seedAck(t, b, ds[6:]...)
		// Entries 0–4 are below the pending entry 5 and may go; 5 and those above stay.
		seedEventually(t, 2*time.Second, "the entries below the pending one were not trimmed", func() bool {
			return xlen(stream) == 5
		})
		time.Sleep(10 * interval)
		if got := seedEntryIDs(t, rdb, stream); !slices.Equal(got, ids[5:]) {
			t.Fatalf("stream holds %v, want %v: the pending entry and those after it", got, ids[5:])
		}
		seedAck(t, b, ds[5])
		seedEventually(t, 2*time.Second, "the stream was not trimmed after the last ack", func() bool {
			return xlen(stream) == 0
		})
	})
}

// A retry due later waits in <stream>:delayed and comes out of Pull once due, as the
// attempt it was scheduled as; it is moved even when the backend that scheduled it has
// closed.
func TestSeedDelayedRetry(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const delay = 300 * time.Millisecond
	zcard := func(key string) string {
		r, err := srv.Do("ZCARD", key)
		if err != nil {
			t.Fatalf("ZCARD %s = %v", key, err)
		}
		return r
	}
	schedule := func(t *testing.T, b *necroredis.Backend, ev necro.Event) time.Time {
		t.Helper()
		seedEnqueue(t, b, ev)
		d := seedPull(t, b, 1, 2*time.Second)[0]
		at := time.Now().Add(delay)
		err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: backend.Ack,
			Retries: []backend.Retry{{Event: d.Event.Retry(2, "Organ"), At: at}}})
		if err != nil {
			t.Fatalf("Settle(retry at +%v) = %v", delay, err)
		}
		if n := zcard(b.Config().Stream + ":delayed"); n != "1" {
			t.Fatalf("ZCARD delayed = %s right after the Settle, want 1", n)
		}
		return at
	}
	check := func(t *testing.T, d backend.Delivery, ev necro.Event, at time.Time) {
		t.Helper()
		// The delayed set scores in milliseconds: allow the rounding.
		if early := time.Until(at); early > time.Millisecond {
			t.Errorf("the retry came out %v before it was due", early)
		}
		if d.Event.ID() != ev.ID() || d.Event.Attempt() != 2 || !d.Event.IsFor("Organ") || d.Event.IsFor("Other") {
			t.Errorf("pulled %s attempt %d targets %v, want %s attempt 2 for Organ only", d.Event, d.Event.Attempt(),
				d.Event.Meta().Targets, ev.ID())
		}
	}

	t.Run("same backend", func(t *testing.T) {
		b := open(t, srv, necroredis.Config{})
		ev := seedEvent(t, "DELAYED", nil)
		at := schedule(t, b, ev)
		d := seedPull(t, b, 1, 5*time.Second)[0]
		check(t, d, ev, at)
		if n := zcard(b.Config().Stream + ":delayed"); n != "0" {
			t.Errorf("ZCARD delayed = %s after the retry came out, want 0", n)
		}
		seedAck(t, b, d)
	})

	t.Run("scheduler closed", func(t *testing.T) {
		stream, group := seedNames()
		cfg := necroredis.Config{Stream: stream, Group: group}
		scheduler := open(t, srv, cfg)
		ev := seedEvent(t, "DELAYED", nil)
		at := schedule(t, scheduler, ev)
		if err := scheduler.Close(); err != nil {
			t.Fatal(err)
		}
		other := open(t, srv, cfg)
		d := seedPull(t, other, 1, 5*time.Second)[0]
		check(t, d, ev, at)
		seedAck(t, other, d)
	})
}
