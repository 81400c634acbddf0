package redis_test

// Wire compatibility with Python NecroStack (reference/seed-behaviors.md §2), checked on
// the exact bytes in Redis both ways: entries written as Python writes them decode, and
// entries necro writes pass every rule a Python consumer applies.

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// wireXAdd adds an entry with the fields in the order given, as a raw client does.
func wireXAdd(t *testing.T, rdb *goredis.Client, stream string, fields ...string) string {
	t.Helper()
	values := make([]any, len(fields))
	for i, f := range fields {
		values[i] = f
	}
	id, err := rdb.XAdd(t.Context(), &goredis.XAddArgs{Stream: stream, Values: values}).Result()
	if err != nil {
		t.Fatalf("XADD %s = %v", stream, err)
	}
	return id
}

// wireRawEntries returns the entries of a stream with their fields in stored order, from
// the raw XRANGE reply (go-redis's XMessage holds them in a map, which loses the order).
func wireRawEntries(t *testing.T, rdb *goredis.Client, stream string) []wireEntry {
	t.Helper()
	reply, err := rdb.Do(t.Context(), "XRANGE", stream, "-", "+").Slice()
	if err != nil {
		t.Fatalf("XRANGE %s = %v", stream, err)
	}
	var out []wireEntry
	for _, r := range reply {
		e, ok := r.([]any)
		if !ok || len(e) != 2 {
			t.Fatalf("XRANGE %s: entry %#v is not [id, fields]", stream, r)
		}
		fields, ok := e[1].([]any)
		if !ok || len(fields)%2 != 0 {
			t.Fatalf("XRANGE %s: fields %#v are not a flat list of names and values", stream, e[1])
		}
		we := wireEntry{id: e[0].(string)}
		for i := 0; i < len(fields); i += 2 {
			we.names = append(we.names, fields[i].(string))
			we.values = append(we.values, fields[i+1].(string))
		}
		out = append(out, we)
	}
	return out
}

// A wireEntry is one stream entry, its fields in stored order.
type wireEntry struct {
	id            string
	names, values []string
}

func (e wireEntry) get(name string) (string, bool) {
	i := slices.Index(e.names, name)
	if i < 0 {
		return "", false
	}
	return e.values[i], true
}

// wireKeys returns the keys of a JSON object in the order written, with their raw values.
func wireKeys(t *testing.T, text string) ([]string, map[string]json.RawMessage) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s: does not start a JSON object (%v, %v)", text, tok, err)
	}
	var keys []string
	values := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		k := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: value of %q: %v", text, k, err)
		}
		keys = append(keys, k)
		values[k] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		t.Fatalf("%s: does not end the JSON object (%v, %v)", text, tok, err)
	}
	if _, err := dec.Token(); err == nil {
		t.Fatalf("%s: text after the JSON object", text)
	}
	return keys, values
}

// Entries written exactly as Python NecroStack writes them (one field, event; json.dumps
// with its separators and ensure_ascii escapes; isoformat timestamps) come out of Pull as
// the same event, with the lineage of a root.
func TestWirePythonEntriesDecode(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	stream := b.Config().Stream
	const id = "550e8400-e29b-41d4-a716-446655440000"
	at := time.Date(2025, 1, 15, 10, 30, 45, 123456000, time.UTC)
	tests := []struct {
		name    string
		raw     string
		at      time.Time
		payload string // the payload's values, as compact UTF-8 JSON
	}{
		{
			"README example",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "ORDER_PLACED", "payload": {"order_id": "12345", "amount": 99.99}}`,
			at, `{"order_id":"12345","amount":99.99}`,
		},
		{
			"ensure_ascii escapes and a surrogate pair",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "GREETING", "payload": {"name": "Jos\u00e9", "mood": "\ud83d\udd25 hot", "quote": "say \"hi\"\n", "tags": ["caf\u00e9", 1, 2.5, true, null], "nested": {"deep": {"n": 123456789012345678901234567890}}}}`,
			at, `{"name":"José","mood":"🔥 hot","quote":"say \"hi\"\n","tags":["café",1,2.5,true,null],"nested":{"deep":{"n":123456789012345678901234567890}}}`,
		},
		{
			"timestamp without a fraction",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", "event_type": "TICK", "payload": {}}`,
			at.Truncate(time.Second), `{}`,
		},
		{
			"timestamp with another offset",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T16:00:45.123456+05:30", "event_type": "TICK", "payload": {}}`,
			at, `{}`,
		},
		{
			"naive timestamp",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456", "event_type": "TICK", "payload": {}}`,
			at, `{}`,
		},
		{
			"payload absent",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "PING"}`,
			at, `{}`,
		},
		{
			"floats as Python writes them",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "MEASURE", "payload": {"a": 3.0, "b": 1e+20, "c": -0.5, "d": 1.5e-07}}`,
			at, `{"a":3.0,"b":1e+20,"c":-0.5,"d":1.5e-07}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var typ struct {
				Type string `json:"event_type"`
			}
			if err := json.Unmarshal([]byte(tt.raw), &typ); err != nil {
				t.Fatalf("the test's raw entry is not JSON: %v", err)
			}
			want, err := necro.Draft{ID: id, Type: typ.Type, Timestamp: tt.at, Payload: json.RawMessage(tt.payload)}.Build()
			if err != nil {
				t.Fatal(err)
			}
			wireXAdd(t, rdb, stream, "event", tt.raw)
			d := seedPull(t, b, 1, 2*time.Second)[0]
			seedAck(t, b, d)
			got := d.Event
			if !got.Equal(want) {
				t.Errorf("Pull() of %s\n = %s payload %s meta %+v\nwant %s payload %s meta %+v",
					tt.raw, got, got.PayloadJSON(), got.Meta(), want, want.PayloadJSON(), want.Meta())
			}
			if got.ID() != id || got.Type() != typ.Type || !got.Timestamp().Equal(tt.at) ||
				got.Timestamp().Location() != time.UTC {
				t.Errorf("id %s type %q timestamp %v, want %s %q %v UTC", got.ID(), got.Type(), got.Timestamp(), id,
					typ.Type, tt.at)
			}
			// The payload's text keeps Python's escapes; its values are what count.
			dec := json.NewDecoder(strings.NewReader(tt.payload))
			dec.UseNumber()
			var wantPayload map[string]any
			if err := dec.Decode(&wantPayload); err != nil {
				t.Fatal(err)
			}
			if p := got.Payload(); !reflect.DeepEqual(p, wantPayload) {
				t.Errorf("Payload() = %#v, want %#v", p, wantPayload)
			}
			// A Python entry carries no meta: the event is a root.
			if got.Correlation() != id || got.Meta().CausationID != "" || got.Depth() != 0 || got.Attempt() != 1 ||
				!got.IsForAll() {
				t.Errorf("lineage %+v, want a root (correlation = its own id, depth 0, attempt 1)", got.Meta())
			}
		})
	}
	if m := b.Metrics(); m.Poison != 0 {
		t.Errorf("Metrics().Poison = %d, want 0", m.Poison)
	}
}

var (
	wireUUIDv4    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	wireTimestamp = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$`)
)

// wirePythonReadable checks an entry's event field against every rule a Python consumer
// applies (§2 "What a Python consumer therefore requires of a Go producer") and that it
// holds ev.
func wirePythonReadable(t *testing.T, e wireEntry, ev necro.Event) {
	t.Helper()
	raw, ok := e.get("event")
	if !ok {
		t.Fatalf("entry %s has no event field: %v", e.id, e.names)
	}
	keys, values := wireKeys(t, raw)
	if want := []string{"id", "timestamp", "event_type", "payload"}; !slices.Equal(keys, want) {
		t.Errorf("event keys %v, want exactly %v in that order: %s", keys, want, raw)
	}
	var id, ts, typ string
	for k, dst := range map[string]*string{"id": &id, "timestamp": &ts, "event_type": &typ} {
		if err := json.Unmarshal(values[k], dst); err != nil {
			t.Errorf("%s is not a string: %s", k, values[k])
		}
	}
	if !wireUUIDv4.MatchString(id) || id != ev.ID() {
		t.Errorf("id %q, want %s as a lowercase canonical UUID v4", id, ev.ID())
	}
	// Python before 3.11 reads only 3 or 6 fraction digits: necro always writes 6.
	if !wireTimestamp.MatchString(ts) {
		t.Errorf("timestamp %q, want YYYY-MM-DDTHH:MM:SS.ffffff+00:00", ts)
	} else if at, err := time.Parse("2006-01-02T15:04:05.999999-07:00", ts); err != nil || !at.Equal(ev.Timestamp()) {
		t.Errorf("timestamp %q parses as %v, %v; want %v", ts, at, err, ev.Timestamp())
	}
	if strings.TrimSpace(typ) == "" || typ != ev.Type() {
		t.Errorf("event_type %q, want %q", typ, ev.Type())
	}
	p := bytes.TrimSpace(values["payload"])
	var obj map[string]any
	if len(p) == 0 || p[0] != '{' || json.Unmarshal(p, &obj) != nil || obj == nil {
		t.Errorf("payload %s, want a JSON object", p)
	}
	if len(ev.PayloadJSON()) == 2 && string(p) != "{}" {
		t.Errorf("empty payload written as %s, want {}", p)
	}
}

// Entries necro writes are readable by a Python consumer: the field event holds exactly
// the four keys in Python's order, the lineage rides in a separate meta field.
func TestWireNecroEntriesSatisfyPython(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	stream := b.Config().Stream
	evs := []necro.Event{
		seedEvent(t, "ORDER_PLACED", map[string]any{"order_id": "12345", "amount": 99.99, "who": "José <a&b> 🔥"}),
		seedEvent(t, "EMPTY", nil),
		seedEvent(t, "EMPTY_MAP", map[string]any{}),
		seedEvent(t, "RAW", json.RawMessage(`{ "spaced" : [1, 2] }`)),
	}
	seedEnqueue(t, b, evs...)
	entries := wireRawEntries(t, rdb, stream)
	if len(entries) != len(evs) {
		t.Fatalf("stream holds %d entries, want %d", len(entries), len(evs))
	}
	for i, e := range entries {
		wirePythonReadable(t, e, evs[i])
		if !slices.Equal(e.names, []string{"event", "meta"}) {
			t.Errorf("entry fields %v, want [event meta]", e.names)
		}
		meta, _ := e.get("meta")
		if m, err := necro.DecodeMetadata([]byte(meta)); err != nil || m.CausationID != "" || m.Depth != 0 {
			t.Errorf("meta of a root %q = %+v, %v", meta, m, err)
		}
	}

	// A child emitted through Settle: Python sees a plain event, necro its lineage.
	parent := seedPull(t, b, 1, 2*time.Second)[0]
	child := seedEvent(t, "ORDER_SHIPPED", map[string]any{"order_id": "12345"}).EmittedBy(parent.Event, "Shipper", 0, necro.TraceContext{})
	if err := b.Settle(t.Context(), backend.Settlement{Delivery: parent, Outcome: backend.Ack,
		Children: []necro.Event{child}}); err != nil {
		t.Fatal(err)
	}
	entries = wireRawEntries(t, rdb, stream)
	last := entries[len(entries)-1]
	wirePythonReadable(t, last, child)
	raw, _ := last.get("event")
	if strings.Contains(raw, parent.Event.ID()) {
		t.Errorf("the child's event field mentions its parent: %s; lineage belongs in meta", raw)
	}
	meta, ok := last.get("meta")
	if !ok {
		t.Fatalf("the child's entry has no meta field: %v", last.names)
	}
	var m struct {
		Correlation string `json:"correlation_id"`
		Causation   string `json:"causation_id"`
		Depth       int    `json:"depth"`
	}
	if err := json.Unmarshal([]byte(meta), &m); err != nil || m.Correlation != parent.Event.ID() ||
		m.Causation != parent.Event.ID() || m.Depth != 1 {
		t.Errorf("the child's meta %s, want correlation_id and causation_id %s, depth 1", meta, parent.Event.ID())
	}
	for range len(evs) - 1 {
		seedAck(t, b, seedPull(t, b, 1, 2*time.Second)...)
	}
	got := seedPull(t, b, 1, 2*time.Second)[0].Event
	if !got.Equal(child) {
		t.Errorf("the child came back as %s meta %+v, want %s meta %+v", got, got.Meta(), child, child.Meta())
	}
}

// With the names left zero, the store uses Python NecroStack's: stream
// necrostack:events, group necrostack, dead letters in necrostack:events:dlq, and a
// consumer named consumer- and 8 hex digits, new on every start.
func TestWireDefaults(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{}) // its own server: the names are fixed
	rdb := seedClient(t, srv)
	openDefault := func() *necroredis.Backend {
		t.Helper()
		b, err := necroredis.Open(t.Context(), necroredis.Config{URL: srv.URL(), Block: 20 * time.Millisecond})
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
				t.Errorf("Close() = %v", err)
			}
		})
		return b
	}
	b := openDefault()
	cfg := b.Config()
	if cfg.Stream != "necrostack:events" || cfg.Group != "necrostack" || cfg.DeadLetterStream != "necrostack:events:dlq" {
		t.Errorf("Config() = stream %q group %q dead letters %q, want necrostack:events necrostack necrostack:events:dlq",
			cfg.Stream, cfg.Group, cfg.DeadLetterStream)
	}
	consumerName := regexp.MustCompile(`^consumer-[0-9a-f]{8}$`)
	if !consumerName.MatchString(cfg.Consumer) {
		t.Errorf("Consumer = %q, want consumer- and 8 lowercase hex digits", cfg.Consumer)
	}
	if other := openDefault().Config().Consumer; other == cfg.Consumer || !consumerName.MatchString(other) {
		t.Errorf("a second Open is named %q, the first %q: want another name of the same shape", other, cfg.Consumer)
	}

	ev := seedEvent(t, "DEFAULTS", nil)
	seedEnqueue(t, b, ev)
	groups, err := rdb.XInfoGroups(t.Context(), "necrostack:events").Result()
	if err != nil || len(groups) != 1 || groups[0].Name != "necrostack" {
		t.Errorf("XINFO GROUPS necrostack:events = %+v, %v; want the group necrostack", groups, err)
	}
	d := seedPull(t, b, 1, 2*time.Second)[0]
	if cs := seedConsumers(t, rdb, "necrostack:events", "necrostack"); cs[cfg.Consumer] != 1 {
		t.Errorf("consumers %v, want %s holding 1", cs, cfg.Consumer)
	}
	err = b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: backend.Ack,
		DeadLetters: []backend.DeadLetter{{Event: d.Event, Reason: "Processing failed", At: time.Now(), Receipt: d.Receipt}}})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.XLen(t.Context(), "necrostack:events:dlq").Result(); err != nil || n != 1 {
		t.Errorf("XLEN necrostack:events:dlq = %d, %v; want 1", n, err)
	}
}

// A dead-letter entry starts with Python's four fields in Python's order, then necro's;
// its event field is the source entry's text verbatim.
func TestWireDeadLetterLayout(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	rdb := seedClient(t, srv)
	b := open(t, srv, necroredis.Config{})
	cfg := b.Config()
	ev := seedEvent(t, "DOOMED", map[string]any{"why": "José 🔥"})
	seedEnqueue(t, b, ev)
	source := wireRawEntries(t, rdb, cfg.Stream)[0]
	d := seedPull(t, b, 1, 2*time.Second)[0]
	before := time.Now()
	err := b.Settle(t.Context(), backend.Settlement{Delivery: d, Outcome: backend.Ack, DeadLetters: []backend.DeadLetter{{
		Event: d.Event, Organ: "Doom", Attempts: 3, Error: "boom", Reason: "retries exhausted", At: time.Now(), Receipt: d.Receipt,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	dls := wireRawEntries(t, rdb, cfg.DeadLetterStream)
	if len(dls) != 1 {
		t.Fatalf("%s holds %d entries, want 1", cfg.DeadLetterStream, len(dls))
	}
	dl := dls[0]
	if len(dl.names) < 4 || !slices.Equal(dl.names[:4], []string{"original_id", "event", "reason", "failed_at"}) {
		t.Errorf("dead-letter fields %v, want original_id, event, reason, failed_at first", dl.names)
	}
	if want := []string{"original_id", "event", "reason", "failed_at", "organ", "attempts", "error", "meta", "receipt"}; !slices.Equal(dl.names, want) {
		t.Errorf("dead-letter fields %v, want %v", dl.names, want)
	}
	srcEvent, _ := source.get("event")
	srcMeta, _ := source.get("meta")
	want := map[string]string{"original_id": source.id, "event": srcEvent, "reason": "retries exhausted",
		"organ": "Doom", "attempts": "3", "error": "boom", "meta": srcMeta, "receipt": d.Receipt}
	for k, v := range want {
		if got, _ := dl.get(k); got != v {
			t.Errorf("dead letter %s = %q, want %q", k, got, v)
		}
	}
	failedAt, _ := dl.get("failed_at")
	at, err := necro.ParseTimestamp(failedAt)
	if err != nil || !strings.HasSuffix(failedAt, "+00:00") || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("failed_at %q = %v, %v; want a +00:00 time around %v", failedAt, at, err, before)
	}
}
