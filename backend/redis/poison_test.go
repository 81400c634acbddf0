package redis_test

// Poison entries: text in the stream that is no valid event goes to the dead-letter
// stream at once, within the Pull that reads it, with a reason naming the problem; it
// never sits pending, and the entries after it are still delivered.

import (
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// poisonGood is a valid event as Python writes it; the cases below spoil one part.
const poisonGood = `{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "ORDER_PLACED", "payload": {"order_id": "12345"}}`

// poisonCases are the entries a Pull must dead-letter: fields in stream order, the text
// the dead letter's event field must hold, and words its reason must contain.
var poisonCases = []struct {
	name   string
	fields []string
	event  string   // the dead letter's event field
	reason []string // each must appear in the reason
}{
	{"not JSON", []string{"event", "not json at all"}, "not json at all", []string{"not valid JSON"}},
	{"JSON array", []string{"event", `[1, 2, 3]`}, `[1, 2, 3]`, []string{"JSON object", "array"}},
	{"no event field", []string{"data", poisonGood, "source", "elsewhere"}, "{}", []string{`no "event" field`, `"data"`, `"source"`}},
	{
		"v1 UUID",
		[]string{"event", strings.Replace(poisonGood, "550e8400-e29b-41d4-a716-446655440000", "a8098c1a-f86e-11da-bd1a-00112444be1e", 1)},
		strings.Replace(poisonGood, "550e8400-e29b-41d4-a716-446655440000", "a8098c1a-f86e-11da-bd1a-00112444be1e", 1),
		[]string{"id", "version 1", "v4"},
	},
	{
		"id not a UUID",
		[]string{"event", strings.Replace(poisonGood, "550e8400-e29b-41d4-a716-446655440000", "order-12345", 1)},
		strings.Replace(poisonGood, "550e8400-e29b-41d4-a716-446655440000", "order-12345", 1),
		[]string{"id", `"order-12345"`, "UUID"},
	},
	{
		"unknown key",
		[]string{"event", strings.Replace(poisonGood, `"payload"`, `"trace_id": "abc", "payload"`, 1)},
		strings.Replace(poisonGood, `"payload"`, `"trace_id": "abc", "payload"`, 1),
		[]string{"trace_id", "unknown field"},
	},
	{
		"payload null",
		[]string{"event", strings.Replace(poisonGood, `{"order_id": "12345"}`, "null", 1)},
		strings.Replace(poisonGood, `{"order_id": "12345"}`, "null", 1),
		[]string{"payload", "null"},
	},
	{
		"NaN in the payload",
		[]string{"event", strings.Replace(poisonGood, `"12345"`, "NaN", 1)},
		strings.Replace(poisonGood, `"12345"`, "NaN", 1),
		[]string{"not valid JSON", "'N'"},
	},
	{
		"oversized payload",
		[]string{"event", strings.Replace(poisonGood, `"12345"`, `"`+strings.Repeat("x", necro.MaxPayloadBytes)+`"`, 1)},
		strings.Replace(poisonGood, `"12345"`, `"`+strings.Repeat("x", necro.MaxPayloadBytes)+`"`, 1),
		[]string{"payload", "exceeds", "1000000"},
	},
	{"invalid meta", []string{"event", poisonGood, "meta", `{"depth": `}, poisonGood, []string{"meta", "not valid JSON"}},
	{
		"type too long",
		[]string{"event", strings.Replace(poisonGood, "ORDER_PLACED", strings.Repeat("T", necro.MaxTypeBytes+1), 1)},
		strings.Replace(poisonGood, "ORDER_PLACED", strings.Repeat("T", necro.MaxTypeBytes+1), 1),
		[]string{"event_type", "longer than", strconv.Itoa(necro.MaxTypeBytes)},
	},
}

// Each kind of poison entry is dead-lettered by the Pull that reads it, with the raw
// text verbatim up to PoisonKeepBytes (4 KiB), the entry's size and a reason that names
// the problem; the good entry after it is the one that Pull returns.
func TestPoisonEntries(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	for _, tt := range poisonCases {
		t.Run(tt.name, func(t *testing.T) {
			b := open(t, srv, necroredis.Config{})
			cfg := b.Config()
			poison := wireXAdd(t, rdb, cfg.Stream, tt.fields...)
			good := seedEvent(t, "GOOD", map[string]any{"after": tt.name})
			seedEnqueue(t, b, good)

			ds := seedPull(t, b, 1, 2*time.Second)
			if len(ds) != 1 || ds[0].Event.ID() != good.ID() {
				t.Fatalf("Pull() = %v, want only the good event %s", ds, good.ID())
			}
			// Right after that one Pull: the poison entry is not pending, only the good one.
			pending, err := rdb.XPendingExt(t.Context(), &goredis.XPendingExtArgs{Stream: cfg.Stream, Group: cfg.Group,
				Start: "-", End: "+", Count: 10}).Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) != 1 || pending[0].ID == poison {
				t.Errorf("pending after the Pull: %+v, want only the good entry, never the poison %s", pending, poison)
			}
			seedAck(t, b, ds[0])
			if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != 0 {
				t.Errorf("XPENDING count = %d, want 0", n)
			}

			dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
			if len(dls) != 1 {
				t.Fatalf("%s holds %d entries, want 1", cfg.DeadLetterStream, len(dls))
			}
			dl := dls[0]
			if id, _ := dl.get("original_id"); id != poison {
				t.Errorf("original_id = %q, want %s", id, poison)
			}
			ev, _ := dl.get("event")
			if want := tt.event[:min(len(tt.event), bigKeep)]; ev != want {
				t.Errorf("event field = %.200q (%d bytes), want %.200q (%d bytes): the text verbatim up to %d bytes", ev, len(ev), want, len(want), bigKeep)
			}
			size := 0
			for i := 0; i < len(tt.fields); i += 2 {
				size += len(tt.fields[i]) + len(tt.fields[i+1])
			}
			if got, _ := dl.get("size"); got != strconv.Itoa(size) {
				t.Errorf("size field = %q, want %d", got, size)
			}
			reason, _ := dl.get("reason")
			for _, w := range tt.reason {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q does not contain %q", reason, w)
				}
			}
			if failedAt, _ := dl.get("failed_at"); failedAt == "" {
				t.Errorf("no failed_at in %v", dl.names)
			} else if _, err := necro.ParseTimestamp(failedAt); err != nil {
				t.Errorf("failed_at %q: %v", failedAt, err)
			}
			if tt.name == "invalid meta" {
				if meta, _ := dl.get("meta"); meta != `{"depth": ` {
					t.Errorf("meta field = %q, want the raw meta verbatim", meta)
				}
			}
			if m := b.Metrics(); m.Poison != 1 || m.DeadLettered != 1 || m.Pulled != 1 {
				t.Errorf("Metrics() = %+v, want Poison 1, DeadLettered 1, Pulled 1", m)
			}
			listed, err := b.DeadLetters(t.Context(), 0)
			if err != nil || len(listed) != 1 || listed[0].Reason != reason || !listed[0].Event.IsZero() {
				t.Errorf("DeadLetters() = %+v, %v; want one with reason %q and no event", listed, err, reason)
			}
		})
	}
}

// A Pull that reads many poison entries at once dead-letters them all in the same call
// and returns the good entries among them, in order.
func TestPoisonBatch(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	cfg := b.Config()
	var want []string
	for i, tt := range poisonCases {
		wireXAdd(t, rdb, cfg.Stream, tt.fields...)
		if i%3 == 0 {
			ev := seedEvent(t, "GOOD", map[string]any{"i": i})
			seedEnqueue(t, b, ev)
			want = append(want, ev.ID())
		}
	}
	ds := seedPull(t, b, 100, 2*time.Second)
	var got []string
	for _, d := range ds {
		got = append(got, d.Event.ID())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Pull(100) = %v, want the good events %v", got, want)
	}
	if n := seedPending(t, rdb, cfg.Stream, cfg.Group); n != int64(len(want)) {
		t.Errorf("XPENDING count = %d right after the Pull, want %d: the good ones only", n, len(want))
	}
	if m := b.Metrics(); m.Poison != int64(len(poisonCases)) {
		t.Errorf("Metrics().Poison = %d, want %d", m.Poison, len(poisonCases))
	}
	if dls := wireRawEntries(t, rdb, cfg.DeadLetterStream); len(dls) != len(poisonCases) {
		t.Errorf("%d dead letters, want %d", len(dls), len(poisonCases))
	}
	seedAck(t, b, ds...)
}

// A poison entry's text never makes a log line, a dead letter's reason or error, or an
// error returned grow with it: a 512 KiB timestamp (whose parse error quotes it twice)
// and a 512 KiB field name in an entry without an event field.
func TestPoisonTextClipped(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	var logs connLog
	b := open(t, srv, necroredis.Config{Logger: logs.logger()})
	cfg := b.Config()
	long := strings.Repeat("T", 512<<10)
	badTime := strings.Replace(poisonGood, "2025-01-15T10:30:45.123456+00:00", long, 1)
	wireXAdd(t, rdb, cfg.Stream, "event", badTime)
	wireXAdd(t, rdb, cfg.Stream, long, poisonGood)
	good := seedEvent(t, "GOOD", nil)
	seedEnqueue(t, b, good)
	ds := seedPull(t, b, 10, 2*time.Second)
	if len(ds) != 1 || ds[0].Event.ID() != good.ID() {
		t.Fatalf("Pull() = %v, want only %s", ds, good.ID())
	}
	seedAck(t, b, ds...)

	const lineMax = 2 << 10
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if len(line) > lineMax {
			t.Errorf("a log line of %d bytes, want at most %d: %.300s…", len(line), lineMax, line)
		}
	}
	if n := len(logs.records(t, "ERROR")); n != 2 {
		t.Errorf("%d error lines, want one per poison entry:\n%.2000s", n, logs.String())
	}
	dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	for _, dl := range dls {
		for _, f := range []string{"reason", "error"} {
			if v, _ := dl.get(f); len(v) > 1<<10 {
				t.Errorf("dead letter %s field of %d bytes, want at most %d: %.200q…", f, len(v), 1<<10, v)
			}
		}
	}
	listed, err := b.DeadLetters(t.Context(), 0)
	if err != nil || len(listed) != 2 {
		t.Fatalf("DeadLetters() = %d, %v; want 2", len(listed), err)
	}
	for _, dl := range listed {
		if len(dl.Error) > 8<<10 {
			t.Errorf("DeadLetters() Error of %d bytes, want at most %d: %.200q…", len(dl.Error), 8<<10, dl.Error)
		}
	}
	if !strings.Contains(listed[0].Error, "timestamp") {
		t.Errorf("DeadLetters()[0].Error %.300q does not name the timestamp", listed[0].Error)
	}
}
