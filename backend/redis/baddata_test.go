package redis_test

// Data in Redis that the store did not expect: stream ids beyond what a double holds
// exactly.

import (
	"slices"
	"strconv"
	"testing"
	"time"

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
