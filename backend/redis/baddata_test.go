package redis_test

// Data in Redis that the store did not expect: stream ids beyond what a double holds
// exactly, members of the delayed set that are no retry, and background work that
// keeps failing.

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// Trimming compares stream ids exactly, with sequence parts up to 2^64-1, which a Lua
// number (a double) does not hold: it never trims an entry a group has not read, and it
// keeps working when the id after the last one read rolls over to the next
// millisecond.
func TestTrimExactIDs(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const seq60 = 1<<60 + 129 // 1152921504606847105: a double rounds it to 2^60+256
	id := func(ms, seq uint64) string {
		return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
	}
	tests := []struct {
		name    string
		entries []string          // XADD in this order
		groups  map[string]string // group → last-delivered id; the store's group is "store"
		unread  []string          // the entries some group has not read: they must stay
		later   string            // the store's group then reads up to here ...
		after   []string          // ... and these must be all that is left
	}{
		{
			name: "sequence above 2^53",
			entries: []string{id(5, 1), id(5, seq60), id(5, seq60+1), id(5, seq60+2), id(5, seq60+3), id(5, seq60+4),
				id(5, seq60+5), id(5, seq60+6), id(5, seq60+7), id(5, seq60+8), id(5, seq60+9), id(5, seq60+10)},
			groups: map[string]string{"store": id(5, seq60), "other": id(5, seq60+6)},
			unread: []string{id(5, seq60+1), id(5, seq60+2), id(5, seq60+3), id(5, seq60+4), id(5, seq60+5),
				id(5, seq60+6), id(5, seq60+7), id(5, seq60+8), id(5, seq60+9), id(5, seq60+10)},
			later: id(5, seq60+8),
			after: []string{id(5, seq60+9), id(5, seq60+10)},
		},
		{
			name:    "sequence 2^64-2",
			entries: []string{id(5, 1<<64-3), id(5, 1<<64-2), id(5, 1<<64-1)},
			groups:  map[string]string{"store": id(5, 1<<64-2)},
			unread:  []string{id(5, 1<<64-1)},
			later:   id(5, 1<<64-1),
			after:   []string{},
		},
		{
			name:    "sequence 2^64-1 rolls over",
			entries: []string{id(5, 1<<64-2), id(5, 1<<64-1), id(6, 0), id(6, 1)},
			groups:  map[string]string{"store": id(5, 1<<64-1)},
			unread:  []string{id(6, 0), id(6, 1)},
			later:   id(6, 0),
			after:   []string{id(6, 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := unique("necro:test:")
			for _, e := range tt.entries {
				mustDo(t, srv, "XADD", stream, e, "event", "{}")
			}
			for g, last := range tt.groups {
				name := g
				if g == "store" {
					name = unique("g-")
				}
				mustDo(t, srv, "XGROUP", "CREATE", stream, name, last)
				tt.groups[g] = name
			}
			b := open(t, srv, necroredis.Config{Stream: stream, Group: tt.groups["store"], TrimInterval: 20 * time.Millisecond})
			wantTrimmed := int64(len(tt.entries) - len(tt.unread))
			seedEventually(t, 5*time.Second, "nothing was trimmed", func() bool {
				m := b.Metrics()
				return m.Trimmed >= wantTrimmed || m.Failures > 0
			})
			if got := entries(t, srv, stream); !slices.Equal(got, tt.unread) {
				m := b.Metrics()
				t.Fatalf("after trimming (Trimmed %d, Failures %d) the stream holds %v; want the entries some group has not read, %v",
					m.Trimmed, m.Failures, got, tt.unread)
			}
			if m := b.Metrics(); m.Failures != 0 || m.Trimmed != wantTrimmed {
				t.Fatalf("Metrics: Failures %d, Trimmed %d; want 0 failures and %d trimmed", m.Failures, m.Trimmed, wantTrimmed)
			}
			// Trimming goes on working: once the store's group has read further, what
			// every group has read goes.
			mustDo(t, srv, "XGROUP", "SETID", stream, tt.groups["store"], tt.later)
			if other, ok := tt.groups["other"]; ok {
				mustDo(t, srv, "XGROUP", "SETID", stream, other, tt.later)
			}
			wantTrimmed += int64(len(tt.unread) - len(tt.after))
			seedEventually(t, 5*time.Second, "nothing more was trimmed", func() bool {
				m := b.Metrics()
				return m.Trimmed >= wantTrimmed || m.Failures > 0
			})
			if got := entries(t, srv, stream); !slices.Equal(got, tt.after) {
				t.Errorf("after reading up to %s the stream holds %v, want %v", tt.later, got, tt.after)
			}
			if m := b.Metrics(); m.Failures != 0 {
				t.Errorf("Metrics: Failures %d, want 0", m.Failures)
			}
		})
	}
}

// entries returns the ids of a stream's entries, oldest first, read through a client
// of the test's own.
func entries(t *testing.T, srv *redistest.Server, stream string) []string {
	t.Helper()
	msgs, err := seedClient(t, srv).XRange(t.Context(), stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s = %v", stream, err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// Members of <stream>:delayed that are no retry (written by hand, or by another
// program) are dead-lettered by the mover with a reason naming the problem, a bounded
// excerpt and their size, and taken out of the set; the valid retries around them are
// still delivered, and nothing counts as a failure.
func TestDelayedMalformedMembers(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	var logs connLog
	b := open(t, srv, necroredis.Config{Logger: logs.logger()})
	cfg := b.Config()
	delayed := cfg.Stream + ":delayed"
	huge := strings.Repeat("x", 100_000)
	bad := []struct {
		member string
		reason string // a word of the reason
	}{
		{"garbage", "no NUL"},
		{"token\x00{\"only\": \"one separator\"}", "one NUL"},
		{"", "empty"},
		{huge, "no NUL"},
	}
	for _, m := range bad {
		if err := rdb.ZAdd(t.Context(), delayed, goredis.Z{Score: 0, Member: m.member}).Err(); err != nil {
			t.Fatal(err)
		}
	}

	evs := seedMany(t, "DELAYED", 3)
	seedEnqueue(t, b, evs...)
	for _, d := range seedPull(t, b, 3, 2*time.Second) {
		err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: backend.Ack,
			Retries: []backend.Retry{{Event: d.Event.Retry(2), At: time.Now().Add(50 * time.Millisecond)}}})
		if err != nil {
			t.Fatalf("Settle(retry) = %v", err)
		}
	}
	var got []string
	for len(got) < len(evs) {
		for _, d := range seedPull(t, b, len(evs), 5*time.Second) {
			got = append(got, d.Event.ID())
			seedAck(t, b, d)
		}
	}
	if want := []string{evs[0].ID(), evs[1].ID(), evs[2].ID()}; !slices.Equal(got, want) {
		t.Errorf("the retries came out as %v, want %v", got, want)
	}

	if n, err := rdb.ZCard(t.Context(), delayed).Result(); err != nil || n != 0 {
		t.Errorf("ZCARD %s = %d, %v; want 0: the malformed members must leave the set", delayed, n, err)
	}
	dls := seedDeadLetters(t, rdb, cfg.DeadLetterStream)
	if len(dls) != len(bad) {
		t.Fatalf("%d dead letters, want %d: %v", len(dls), len(bad), dls)
	}
	for _, m := range bad {
		size := strconv.Itoa(len(m.member)) + " bytes"
		found := false
		for _, dl := range dls {
			reason, _ := dl.Values["reason"].(string)
			event, _ := dl.Values["event"].(string)
			if !strings.Contains(reason, m.reason) || !strings.Contains(reason, size) {
				continue
			}
			found = true
			if !strings.Contains(reason, "delayed") {
				t.Errorf("reason %q does not say the member was in the delayed set", reason)
			}
			if len(event) > 1024+64 {
				t.Errorf("the dead letter of a %s member holds %d bytes of it, want a bounded excerpt", size, len(event))
			}
			if want := strings.ReplaceAll(m.member[:min(len(m.member), 16)], "\x00", `\0`); !strings.HasPrefix(event, want) {
				t.Errorf("the dead letter's event %.40q does not start with the member's text %q", event, want)
			}
		}
		if !found {
			t.Errorf("no dead letter with a reason naming %q and %q: %v", m.reason, size, dls)
		}
	}
	if m := b.Metrics(); m.Poison != int64(len(bad)) || m.DeadLettered != int64(len(bad)) || m.Failures != 0 {
		t.Errorf("Metrics: Poison %d, DeadLettered %d, Failures %d; want %d, %d, 0", m.Poison, m.DeadLettered, m.Failures, len(bad), len(bad))
	}
	if recs := naming(logs.records(t, "ERROR"), "delayed"); len(recs) != len(bad) {
		t.Errorf("%d error logs about the delayed set, want %d; logs:\n%s", len(recs), len(bad), logs.String())
	}
	if err := b.Ready(t.Context()); err != nil {
		t.Errorf("Ready = %v, want nil: nothing is failing", err)
	}
}

// A member of the delayed set that will never be due (score +inf) stays there, and the
// mover keeps polling at its usual pace rather than spinning on it.
func TestDelayedMemberNeverDue(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{TrimInterval: necroredis.Off})
	delayed := b.Config().Stream + ":delayed"
	if err := rdb.ZAdd(t.Context(), delayed, goredis.Z{Score: math.Inf(1), Member: "never"}).Err(); err != nil {
		t.Fatal(err)
	}
	scripts := func() int64 {
		t.Helper()
		stats, err := rdb.Info(t.Context(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for line := range strings.SplitSeq(stats, "\n") {
			if name, rest, ok := strings.Cut(line, ":"); ok && (name == "cmdstat_evalsha" || name == "cmdstat_eval") {
				calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
				c, _ := strconv.ParseInt(calls, 10, 64)
				n += c
			}
		}
		return n
	}
	before := scripts()
	time.Sleep(time.Second)
	// The mover polls every 250ms and refreshes every ClaimAfter/6 (5s): a handful of
	// scripts a second, where a spinning loop runs thousands.
	if n := scripts() - before; n > 40 {
		t.Errorf("%d scripts ran in 1s with a member due at +inf; the mover spins", n)
	}
	if n, err := rdb.ZCard(t.Context(), delayed).Result(); err != nil || n != 1 {
		t.Errorf("ZCARD = %d, %v; want the member left alone", n, err)
	}
}

// Background work that keeps failing while Redis answers (here: the store's ACL user
// loses the right to run scripts) makes Health unhealthy and Ready fail, naming what
// fails; both recover once it works again.
func TestHealthShowsFailingBackgroundWork(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	mustDo(t, srv, "ACL", "SETUSER", "mover", "on", ">mover-pw", "~*", "&*", "+@all")
	b := open(t, srv, necroredis.Config{URL: "redis://mover:mover-pw@" + srv.Addr() + "/0"})
	seedEnqueue(t, b, seedEvent(t, "x", nil))
	if err := b.Ready(t.Context()); err != nil {
		t.Fatalf("Ready = %v on a fresh store", err)
	}
	mustDo(t, srv, "ACL", "SETUSER", "mover", "-@scripting")
	var err error
	seedEventually(t, 5*time.Second, "Ready stayed nil while the mover could run no script", func() bool {
		err = b.Ready(t.Context())
		return err != nil
	})
	if !strings.Contains(err.Error(), "moving due retries") || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Ready = %q, want it to name the mover (moving due retries) and its error (NOPERM)", err)
	}
	h := b.Health(t.Context())
	if h.Healthy || h.Err == nil || h.StreamLength != 1 {
		t.Errorf("Health = %+v; want unhealthy with the error, and the levels still read (StreamLength 1)", h)
	}
	if rep := b.Report(t.Context()); rep.QueueDepth != 1 {
		t.Errorf("Report().QueueDepth = %d, want 1: Redis answers, the levels are known", rep.QueueDepth)
	}
	mustDo(t, srv, "ACL", "SETUSER", "mover", "+@all")
	seedEventually(t, 5*time.Second, "Ready still failed after the mover worked again", func() bool {
		err = b.Ready(t.Context())
		return err == nil
	})
}
