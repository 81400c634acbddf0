package redis_test

// Oversized entries: an entry larger than any valid event is dead-lettered inside Redis
// and never sent to the worker; a poison entry's dead letter keeps a bounded prefix of
// its text and records its size; a Pull holds a bounded number of bytes.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// The documented defaults of Config's bounds, which these tests run with.
const (
	bigMaxEntry  = 2 << 20 // MaxEntryBytes
	bigMaxPull   = 8 << 20 // MaxPullBytes
	bigKeep      = 4 << 10 // PoisonKeepBytes
	bigHugeBytes = 20 << 20
	// What Redis may have sent of a read the store cut short before the cut reaches
	// it: what its socket's send buffer holds (net.ipv4.tcp_wmem's maximum, 4 MiB unless
	// changed) and the read connection's receive buffer (1 MiB, which the kernel counts
	// twice).
	bigCutSlack = 8 << 20
)

// bigEventText returns the text of an event as Python writes it, with a payload that
// makes the text exactly n bytes long: a valid event when n is small enough, an event
// whose payload is over MaxPayloadBytes otherwise.
func bigEventText(t *testing.T, n int) string {
	t.Helper()
	head := `{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "BIG", "payload": {"blob": "`
	const tail = `"}}`
	if n < len(head)+len(tail) {
		t.Fatalf("bigEventText(%d): too short for the envelope", n)
	}
	return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
}

// bigNetOutput returns how many bytes Redis has sent to all its clients so far.
func bigNetOutput(t *testing.T, srv *redistest.Server) int64 {
	t.Helper()
	info, err := srv.Do("INFO", "stats")
	if err != nil {
		t.Fatalf("INFO stats = %v", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "total_net_output_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("total_net_output_bytes %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("INFO stats has no total_net_output_bytes:\n%s", info)
	return 0
}

// bigEntrySizes returns the size of each entry of the stream, by entry id, as
// MaxEntryBytes measures it: its field names and values together.
func bigEntrySizes(t *testing.T, rdb *goredis.Client, stream string) map[string]int {
	t.Helper()
	sizes := map[string]int{}
	for _, e := range wireRawEntries(t, rdb, stream) {
		for i := range e.names {
			sizes[e.id] += len(e.names[i]) + len(e.values[i])
		}
	}
	return sizes
}

// bigPullAll pulls until want deliveries came, checking that no Pull returns entries of
// more than bigMaxPull bytes together, and returns them in the order pulled.
func bigPullAll(t *testing.T, b *necroredis.Backend, sizes map[string]int, want int) []backend.Delivery {
	t.Helper()
	var got []backend.Delivery
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		ds := seedPull(t, b, 100, 5*time.Second)
		total := 0
		for _, d := range ds {
			total += sizes[entryIDOf(t, d)]
		}
		if total > bigMaxPull {
			t.Errorf("Pull(100) returned %d deliveries holding %d bytes, over the budget of %d (MaxPullBytes)", len(ds), total, bigMaxPull)
		}
		got = append(got, ds...)
	}
	if len(got) != want {
		t.Fatalf("pulled %d deliveries, want %d", len(got), want)
	}
	return got
}

// bigCheckBuried checks the dead letter of a poison entry: Python's four fields first,
// the first bigKeep bytes of its event text, its size, and a reason with every word.
func bigCheckBuried(t *testing.T, dl wireEntry, original, event string, size int, words ...string) {
	t.Helper()
	if len(dl.names) < 4 || strings.Join(dl.names[:4], ",") != "original_id,event,reason,failed_at" {
		t.Errorf("dead letter of %s: fields %v, want original_id, event, reason, failed_at first", original, dl.names)
	}
	if id, _ := dl.get("original_id"); id != original {
		t.Errorf("dead letter original_id = %q, want %s", id, original)
	}
	got, _ := dl.get("event")
	if want := event[:min(len(event), bigKeep)]; got != want {
		t.Errorf("dead letter of %s: event field of %d bytes (%.40q…), want the first %d bytes of the entry's text",
			original, len(got), got, len(want))
	}
	if s, _ := dl.get("size"); s != strconv.Itoa(size) {
		t.Errorf("dead letter of %s: size field %q, want %d", original, s, size)
	}
	reason, _ := dl.get("reason")
	for _, w := range words {
		if !strings.Contains(reason, w) {
			t.Errorf("dead letter of %s: reason %.300q does not contain %q", original, reason, w)
		}
	}
}

// Entries over MaxEntryBytes, of 20 MiB and of one byte too many, are dead-lettered
// inside Redis: they never reach the store (the read that brings them is cut short at
// the first one's length, and Redis sends no more of it than its socket holds), their
// dead letters keep the first PoisonKeepBytes of the text and the entry's size. An entry of exactly MaxEntryBytes is
// read, and being poison (its payload is too large) dead-lettered the same way. The
// valid entries around them are all delivered, in order.
func TestOversizedEntriesStayInRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	cfg := b.Config()

	huge := bigEventText(t, bigHugeBytes-len("event"))
	over := bigEventText(t, bigMaxEntry+1-len("event"))
	atBound := bigEventText(t, bigMaxEntry-len("event"))
	var goodIDs, goodEntries []string
	good := func(i int) {
		ev := seedEvent(t, "GOOD", map[string]any{"i": i})
		goodIDs = append(goodIDs, ev.ID())
		goodEntries = append(goodEntries, wireXAdd(t, rdb, cfg.Stream, "event", string(ev.AppendJSON(nil))))
	}
	good(0)
	hugeID := wireXAdd(t, rdb, cfg.Stream, "event", huge)
	good(1)
	overID := wireXAdd(t, rdb, cfg.Stream, "event", over)
	good(2)
	atBoundID := wireXAdd(t, rdb, cfg.Stream, "event", atBound)
	good(3)
	sizes := bigEntrySizes(t, rdb, cfg.Stream)

	sent := bigNetOutput(t, srv)
	ds := bigPullAll(t, b, sizes, len(goodIDs))
	sent = bigNetOutput(t, srv) - sent
	var got []string
	for _, d := range ds {
		got = append(got, d.Event.ID())
	}
	if strings.Join(got, ",") != strings.Join(goodIDs, ",") {
		t.Errorf("pulled %v, want the valid events %v in order", got, goodIDs)
	}
	// The entry of exactly MaxEntryBytes is sent, and some small replies, and what
	// Redis's socket took of the one read cut short at the 20 MiB entry: nothing more.
	if limit := int64(bigMaxEntry + 1<<20 + bigCutSlack); sent > limit {
		t.Errorf("Redis sent %d bytes during the Pulls, want at most %d: the entries of %d and %d bytes must not leave Redis",
			sent, limit, sizes[hugeID], sizes[overID])
	}

	dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 3 {
		t.Fatalf("%s holds %d entries, want 3", cfg.DeadLetterStream, len(dls))
	}
	bigCheckBuried(t, dls[0], hugeID, huge, bigHugeBytes, strconv.Itoa(bigHugeBytes), "MaxEntryBytes")
	bigCheckBuried(t, dls[1], overID, over, bigMaxEntry+1, strconv.Itoa(bigMaxEntry+1), "MaxEntryBytes")
	bigCheckBuried(t, dls[2], atBoundID, atBound, bigMaxEntry, "payload", "exceeds")
	if m := b.Metrics(); m.Poison != 3 || m.DeadLettered != 3 || m.Pulled != int64(len(goodIDs)) || m.ReadsCut != 1 {
		t.Errorf("Metrics() = %+v, want Poison 3, DeadLettered 3, Pulled %d, ReadsCut 1", m, len(goodIDs))
	}
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != int64(len(goodIDs)) {
		t.Errorf("XPENDING count = %d, want %d: the valid entries only", n, len(goodIDs))
	}
	seedAck(t, b, ds...)
	for i, d := range ds {
		if id := entryIDOf(t, d); id != goodEntries[i] {
			t.Errorf("delivery %d is entry %s, want %s", i, id, goodEntries[i])
		}
	}

	// The operator's view shows each one's size, and what the dead letter kept of it.
	entries, err := openAdmin(t, srv, cfg.Stream).DeadLetterEntries(t.Context(), necroredis.DeadLetterFilter{})
	if err != nil || len(entries) != 3 {
		t.Fatalf("DeadLetterEntries() = %d entries, %v; want 3", len(entries), err)
	}
	listed, err := b.DeadLetters(t.Context(), 0)
	if err != nil || len(listed) != 3 {
		t.Fatalf("DeadLetters() = %d, %v; want 3", len(listed), err)
	}
	for i, want := range []int{bigHugeBytes, bigMaxEntry + 1, bigMaxEntry} {
		if entries[i].Size != want || !entries[i].Event.IsZero() {
			t.Errorf("DeadLetterEntries()[%d] Size %d, event zero %v; want %d and no event", i, entries[i].Size, entries[i].Event.IsZero(), want)
		}
		if note := fmt.Sprintf("%d bytes kept of an entry of %d", bigKeep, want); !strings.Contains(listed[i].Error, note) {
			t.Errorf("DeadLetters()[%d].Error %.300q does not say %q", i, listed[i].Error, note)
		}
	}
}

// A Pull hands out entries of at most MaxPullBytes together, whether it reads them
// from Redis or hands out again entries given back; nothing is skipped or reordered.
func TestPullByteBudget(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	cfg := b.Config()
	var want []string
	var hugeID string
	for i := range 20 {
		if i == 9 {
			// Where the first Pull's budget ends: looked at before being read, and
			// dead-lettered in Redis rather than left for the next Pull.
			hugeID = wireXAdd(t, rdb, cfg.Stream, "event", bigEventText(t, bigHugeBytes))
		}
		ev := seedEvent(t, "LARGE", map[string]any{"i": i, "blob": strings.Repeat("y", 900_000)})
		seedEnqueue(t, b, ev)
		want = append(want, ev.ID())
	}
	sizes := bigEntrySizes(t, rdb, cfg.Stream)
	check := func(ds []backend.Delivery) {
		t.Helper()
		var got []string
		for _, d := range ds {
			got = append(got, d.Event.ID())
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("pulled %v, want %v", got, want)
		}
	}
	ds := bigPullAll(t, b, sizes, len(want))
	check(ds)
	if dls := wireRawEntries(t, rdb, cfg.DeadLetterStream); len(dls) != 1 {
		t.Errorf("%d dead letters, want the one of %s", len(dls), hugeID)
	} else if id, _ := dls[0].get("original_id"); id != hugeID {
		t.Errorf("dead letter of %s, want of %s", id, hugeID)
	}

	// Given back, they are handed out again from memory: within the budget too. Each
	// one released goes first in line, so they are released last first.
	var back []backend.Settlement
	for _, d := range slices.Backward(ds) {
		back = append(back, backend.Settlement{Delivery: d, Outcome: backend.Release})
	}
	if err := b.Settle(t.Context(), back...); err != nil {
		t.Fatal(err)
	}
	ds = bigPullAll(t, b, sizes, len(want))
	check(ds)
	seedAck(t, b, ds...)
}

// A Pull that waits on an empty stream is woken by an entry over MaxEntryBytes: the
// entry never arrives whole (the read is cut short at its length), it is dead-lettered
// in Redis with its size, and the Pull goes on to the valid entry after it.
func TestOversizedEntryWakingAPull(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{Block: 5 * time.Second})
	cfg := b.Config()
	type result struct {
		ds  []backend.Delivery
		err error
	}
	pulled := make(chan result, 1) // the Pull's goroutine never waits to hand over its result
	go func() {
		ds, err := b.Pull(t.Context(), 10)
		pulled <- result{ds, err}
	}()
	seedEventually(t, 5*time.Second, "the Pull never waited in XREADGROUP", func() bool {
		list, err := srv.Do("CLIENT", "LIST")
		return err == nil && strings.Contains(list, "cmd=xreadgroup")
	})
	huge := bigEventText(t, bigHugeBytes-len("event"))
	sent := bigNetOutput(t, srv)
	hugeID := wireXAdd(t, rdb, cfg.Stream, "event", huge)
	good := seedEvent(t, "GOOD", nil)
	seedEnqueue(t, b, good)
	r := <-pulled
	sent = bigNetOutput(t, srv) - sent
	if r.err != nil || len(r.ds) != 1 || r.ds[0].Event.ID() != good.ID() {
		t.Fatalf("Pull() = %v, %v; want only %s", r.ds, r.err, good.ID())
	}
	if sent > bigCutSlack {
		t.Errorf("Redis sent %d bytes while the Pull woke and ran, want at most %d (what its socket takes of a read cut short): the entry of %d bytes must never arrive whole",
			sent, bigCutSlack, bigHugeBytes)
	}
	seedAck(t, b, r.ds...)
	dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	bigCheckBuried(t, dls[0], hugeID, huge, bigHugeBytes, strconv.Itoa(bigHugeBytes), "MaxEntryBytes")
	if m := b.Metrics(); m.Poison != 1 || m.DeadLettered != 1 || m.ReadsCut != 1 {
		t.Errorf("Metrics() = %+v, want Poison 1, DeadLettered 1, ReadsCut 1", m)
	}
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 0 {
		t.Errorf("XPENDING count = %d, want 0", n)
	}
}

// With MaxEntryBytes Off new entries are read with a plain XREADGROUP: an oversized one
// reaches the store whole, and is dead-lettered as the poison it is, its text kept in
// part and its size recorded.
func TestMaxEntryBytesOff(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{MaxEntryBytes: necroredis.Off})
	cfg := b.Config()
	huge := bigEventText(t, bigHugeBytes-len("event"))
	hugeID := wireXAdd(t, rdb, cfg.Stream, "event", huge)
	good := seedEvent(t, "GOOD", nil)
	seedEnqueue(t, b, good)
	sent := bigNetOutput(t, srv)
	ds := seedPull(t, b, 10, 5*time.Second)
	sent = bigNetOutput(t, srv) - sent
	if len(ds) != 1 || ds[0].Event.ID() != good.ID() {
		t.Fatalf("Pull() = %v, want only %s", ds, good.ID())
	}
	seedAck(t, b, ds...)
	if sent < bigHugeBytes {
		t.Errorf("Redis sent %d bytes during the Pull, want the whole entry of %d: the read is a plain one", sent, bigHugeBytes)
	}
	dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	bigCheckBuried(t, dls[0], hugeID, huge, bigHugeBytes, "payload", "exceeds")
}

// bigPendingCase writes a valid entry, a 20 MiB entry and twelve valid entries of about
// 900 KB, reads them all with a raw client as consumer, and returns the valid events'
// ids, the 20 MiB entry's id and text, and the entry sizes.
func bigPendingCase(t *testing.T, rdb *goredis.Client, stream, group, consumer string) (goodIDs []string, hugeID, huge string, sizes map[string]int) {
	t.Helper()
	if err := rdb.XGroupCreateMkStream(t.Context(), stream, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	huge = bigEventText(t, bigHugeBytes-len("event"))
	for i := range 13 {
		if i == 1 {
			hugeID = wireXAdd(t, rdb, stream, "event", huge)
		}
		ev := seedEvent(t, "LARGE", map[string]any{"i": i, "blob": strings.Repeat("z", 900_000)})
		wireXAdd(t, rdb, stream, "event", string(ev.AppendJSON(nil)))
		goodIDs = append(goodIDs, ev.ID())
	}
	res, err := rdb.XReadGroup(t.Context(), &goredis.XReadGroupArgs{Group: group, Consumer: consumer,
		Streams: []string{stream, ">"}, Count: 100}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != 14 {
		t.Fatalf("XREADGROUP as %s = %d streams, %v; want the 14 entries", consumer, len(res), err)
	}
	return goodIDs, hugeID, huge, bigEntrySizes(t, rdb, stream)
}

// Entries claimed from a stopped consumer, and a worker's own pending entries taken back
// when it starts again, are bounded the same way: the 20 MiB entry is dead-lettered in
// Redis with its size, and the rest comes in Pulls within the budget, in order.
func TestClaimedAndOwnEntriesBounded(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprintf("own=%v", own), func(t *testing.T) {
			stream, group := seedNames()
			consumer := "ghost"
			if own {
				consumer = "stable"
			}
			goodIDs, hugeID, huge, sizes := bigPendingCase(t, rdb, stream, group, consumer)
			if !own {
				// The ghost stopped an hour ago, as far as the group can tell.
				ids := seedEntryIDs(t, rdb, stream)
				args := []any{"XCLAIM", stream, group, consumer, 0}
				for _, id := range ids {
					args = append(args, id)
				}
				if err := rdb.Do(t.Context(), append(args, "IDLE", 3_600_000, "JUSTID")...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			sent := bigNetOutput(t, srv)
			cfg := necroredis.Config{Stream: stream, Group: group}
			if own {
				cfg.Consumer = consumer
			}
			b := open(t, srv, cfg)
			ds := bigPullAll(t, b, sizes, len(goodIDs))
			sent = bigNetOutput(t, srv) - sent
			var got []string
			for _, d := range ds {
				got = append(got, d.Event.ID())
			}
			if strings.Join(got, ",") != strings.Join(goodIDs, ",") {
				t.Errorf("pulled %v, want %v in order", got, goodIDs)
			}
			if sent >= bigHugeBytes {
				t.Errorf("Redis sent %d bytes while the store took the entries over, want less than the %d of the oversized entry alone",
					sent, bigHugeBytes)
			}
			dls := wireRawEntries(t, rdb, b.Config().DeadLetterStream)
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dls))
			}
			bigCheckBuried(t, dls[0], hugeID, huge, bigHugeBytes, strconv.Itoa(bigHugeBytes), "MaxEntryBytes")
			if r, _ := dls[0].get("receipt"); !strings.HasPrefix(r, hugeID+"#") {
				t.Errorf("dead letter receipt %q, want %s#<deliveries>", r, hugeID)
			}
			seedAck(t, b, ds...)
			if n := seedPending(t, rdb, stream, group); n != 0 {
				t.Errorf("XPENDING count = %d after the acks, want 0", n)
			}
		})
	}
}

// The bounds default as documented, and MaxPullBytes is never below MaxEntryBytes.
func TestEntryBoundsDefaults(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	tests := []struct {
		name                  string
		cfg                   necroredis.Config
		entry, pull, keepText int
	}{
		{"zero value", necroredis.Config{}, bigMaxEntry, bigMaxPull, bigKeep},
		{"large entries", necroredis.Config{MaxEntryBytes: 16 << 20}, 16 << 20, 16 << 20, bigKeep},
		{"set", necroredis.Config{MaxEntryBytes: 1 << 20, MaxPullBytes: 3 << 20, PoisonKeepBytes: 100}, 1 << 20, 3 << 20, 100},
		{"entry bound off", necroredis.Config{MaxEntryBytes: necroredis.Off}, necroredis.Off, bigMaxPull, bigKeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := open(t, srv, tt.cfg).Config()
			if got.MaxEntryBytes != tt.entry || got.MaxPullBytes != tt.pull || got.PoisonKeepBytes != tt.keepText {
				t.Errorf("Open(%+v).Config() bounds = %d, %d, %d; want %d, %d, %d", tt.cfg,
					got.MaxEntryBytes, got.MaxPullBytes, got.PoisonKeepBytes, tt.entry, tt.pull, tt.keepText)
			}
		})
	}
}

// bigCommandCalls returns how many times Redis has run cmd, from scripts or not.
func bigCommandCalls(t *testing.T, srv *redistest.Server, cmd string) int64 {
	t.Helper()
	info, err := srv.Do("INFO", "commandstats")
	if err != nil {
		t.Fatalf("INFO commandstats = %v", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			v, _, _ = strings.Cut(v, ",")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("cmdstat_%s calls %q: %v", cmd, v, err)
			}
			return n
		}
	}
	return 0 // never run
}

// A read cut short while the store holds many entries reads again only that read's
// entries: the held ones are not looked at (no XRANGE, no XCLAIM of them); the cut
// read's valid entries come once each, in order, as their first delivery, within the
// budget, and its oversized entry is dead-lettered in Redis.
func TestCutReadWhileHolding(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	// ClaimAfter of an hour: no refresh or claim scan runs XCLAIM during the test.
	b := open(t, srv, necroredis.Config{ClaimAfter: time.Hour})
	cfg := b.Config()
	var small []necro.Event
	for i := range 600 {
		small = append(small, seedEvent(t, "SMALL", map[string]any{"i": i}))
	}
	seedEnqueue(t, b, small...)
	var held []backend.Delivery
	for len(held) < len(small) {
		held = append(held, seedPull(t, b, len(small)-len(held), 5*time.Second)...)
	}
	var want []string
	var hugeID string
	for i := range 12 {
		if i == 6 {
			hugeID = wireXAdd(t, rdb, cfg.Stream, "event", bigEventText(t, bigHugeBytes))
		}
		ev := seedEvent(t, "LARGE", map[string]any{"i": i, "blob": strings.Repeat("w", 900_000)})
		wireXAdd(t, rdb, cfg.Stream, "event", string(ev.AppendJSON(nil)))
		want = append(want, ev.ID())
	}
	sizes := bigEntrySizes(t, rdb, cfg.Stream)

	xclaims, xranges := bigCommandCalls(t, srv, "xclaim"), bigCommandCalls(t, srv, "xrange")
	ds := bigPullAll(t, b, sizes, len(want))
	xclaims, xranges = bigCommandCalls(t, srv, "xclaim")-xclaims, bigCommandCalls(t, srv, "xrange")-xranges
	var got []string
	for _, d := range ds {
		got = append(got, d.Event.ID())
		if d.Deliveries != 1 {
			t.Errorf("delivery of %s is number %d, want 1: the cut read's delivery is the one handed out", d.Event.ID(), d.Deliveries)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pulled %v, want %v", got, want)
	}
	if xclaims != int64(len(want)) || xranges != int64(len(want)+1) {
		t.Errorf("Redis ran XCLAIM %d times and XRANGE %d times, want %d and %d: the cut read's entries alone, never the %d held",
			xclaims, xranges, len(want), len(want)+1, len(held))
	}
	if m := b.Metrics(); m.ReadsCut != 1 || m.Poison != 1 {
		t.Errorf("Metrics() = %+v, want ReadsCut 1 and Poison 1", m)
	}
	dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want the one of %s", len(dls), hugeID)
	}
	bigCheckBuried(t, dls[0], hugeID, bigEventText(t, bigHugeBytes), bigHugeBytes+len("event"), "MaxEntryBytes")
	if r, _ := dls[0].get("receipt"); r != hugeID+"#1" {
		t.Errorf("dead letter receipt %q, want %s#1: its one delivery was the cut read", r, hugeID)
	}
	seedAck(t, b, append(held, ds...)...)
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 0 {
		t.Errorf("XPENDING count = %d after the acks, want 0", n)
	}
}

// Entries of some size, many to a Pull's budget, fill reads sized to them rather than
// have them cut short: only the first read, made before their size is known, is cut;
// every entry comes once, in order, and no Pull passes the budget.
func TestMidSizeEntriesFillReads(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	const maxPull = 256 << 10
	b := open(t, srv, necroredis.Config{MaxEntryBytes: 64 << 10, MaxPullBytes: maxPull})
	cfg := b.Config()
	var evs []necro.Event
	var want []string
	for i := range 300 {
		ev := seedEvent(t, "MID", map[string]any{"i": i, "blob": strings.Repeat("m", 20_000)})
		evs = append(evs, ev)
		want = append(want, ev.ID())
	}
	seedEnqueue(t, b, evs...)
	sizes := bigEntrySizes(t, rdb, cfg.Stream)
	var got []string
	var ds []backend.Delivery
	for len(got) < len(want) {
		pulled := seedPull(t, b, 100, 5*time.Second)
		total := 0
		for _, d := range pulled {
			total += sizes[entryIDOf(t, d)]
			got = append(got, d.Event.ID())
		}
		if total > maxPull {
			t.Errorf("Pull(100) returned %d deliveries holding %d bytes, over the budget of %d", len(pulled), total, maxPull)
		}
		ds = append(ds, pulled...)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pulled %d deliveries, want the %d events once each, in order", len(got), len(want))
	}
	if m := b.Metrics(); m.ReadsCut != 1 {
		t.Errorf("Metrics().ReadsCut = %d, want 1: once their size is known, reads ask for no more than the budget takes", m.ReadsCut)
	}
	seedAck(t, b, ds...)
}

// Over TLS the read's guard follows the decrypted reply: an oversized entry cuts the
// read short there too, is dead-lettered in Redis, and the valid entry after it comes.
func TestOversizedEntryOverTLS(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{TLS: true, Password: tlsPassword})
	rdb := inspector(t, srv, "", tlsPassword)
	b, err := connOpen(t, necroredis.Config{URL: srv.URL(), TLS: srv.TLSConfig(), Stream: unique("necro:test:")})
	if err != nil {
		t.Fatalf("Open(%s) = %v", necroredis.MaskURL(srv.URL()), err)
	}
	cfg := b.Config()
	huge := bigEventText(t, bigHugeBytes-len("event"))
	hugeID := wireXAdd(t, rdb, cfg.Stream, "event", huge)
	good := seedEvent(t, "GOOD", nil)
	seedEnqueue(t, b, good)
	ds := seedPull(t, b, 10, 5*time.Second)
	if len(ds) != 1 || ds[0].Event.ID() != good.ID() {
		t.Fatalf("Pull() = %v, want only %s", ds, good.ID())
	}
	seedAck(t, b, ds...)
	dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	bigCheckBuried(t, dls[0], hugeID, huge, bigHugeBytes, strconv.Itoa(bigHugeBytes), "MaxEntryBytes")
	if m := b.Metrics(); m.ReadsCut != 1 || m.Poison != 1 {
		t.Errorf("Metrics() = %+v, want ReadsCut 1, Poison 1", m)
	}
}
