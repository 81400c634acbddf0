package necro_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/necrostack/necro"
)

// bigNumber draws an integer of up to 512 bits, written as a json.Number, so that the
// round trip is checked on integers no float64 or int64 can hold.
var bigNumber = rapid.Custom(func(rt *rapid.T) json.Number {
	n := new(big.Int).SetBytes(rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(rt, "magnitude"))
	if rapid.Bool().Draw(rt, "negative") {
		n.Neg(n)
	}
	return json.Number(n.String())
})

// a1Payload draws a payload as seed A1 does: a subset of key1 (null, bool or an unbounded
// int), key2 (text up to 20 characters) and count (0..1000). It returns the payload and
// what Payload() must give back for it.
func a1Payload(rt *rapid.T) (in, want map[string]any) {
	in, want = map[string]any{}, map[string]any{}
	if rapid.Bool().Draw(rt, "has key1") {
		switch rapid.IntRange(0, 2).Draw(rt, "key1 kind") {
		case 0:
			in["key1"], want["key1"] = nil, nil
		case 1:
			b := rapid.Bool().Draw(rt, "key1")
			in["key1"], want["key1"] = b, b
		default:
			n := bigNumber.Draw(rt, "key1")
			in["key1"], want["key1"] = n, n
		}
	}
	if rapid.Bool().Draw(rt, "has key2") {
		s := rapid.StringN(0, 20, -1).Draw(rt, "key2")
		in["key2"], want["key2"] = s, s
	}
	if rapid.Bool().Draw(rt, "has count") {
		n := rapid.IntRange(0, 1000).Draw(rt, "count")
		in["count"], want["count"] = n, json.Number(strconv.Itoa(n))
	}
	return in, want
}

func TestEventJSONRoundTripProperty(t *testing.T) { // A1
	rapid.Check(t, func(rt *rapid.T) {
		typ := rapid.StringMatching(`[A-Za-z_][A-Za-z0-9_]*`).Draw(rt, "type")
		in, want := a1Payload(rt)
		ev, err := necro.NewEvent(typ, in)
		if err != nil {
			rt.Fatalf("NewEvent(%q, %v) = %v", typ, in, err)
		}
		if got := ev.Payload(); !reflect.DeepEqual(got, want) {
			rt.Fatalf("Payload() = %#v, want %#v", got, want)
		}
		data, err := json.Marshal(ev)
		if err != nil {
			rt.Fatalf("json.Marshal(%v) = %v", ev, err)
		}
		got, err := necro.DecodeEvent(data)
		if err != nil {
			rt.Fatalf("DecodeEvent(%s) = %v", data, err)
		}
		if got.ID() != ev.ID() || !got.Timestamp().Equal(ev.Timestamp()) || got.Type() != ev.Type() {
			rt.Fatalf("DecodeEvent(%s) = %s %v %q, want %s %v %q", data,
				got.ID(), got.Timestamp(), got.Type(), ev.ID(), ev.Timestamp(), ev.Type())
		}
		if p := got.Payload(); !reflect.DeepEqual(p, want) {
			rt.Fatalf("DecodeEvent(%s).Payload() = %#v, want %#v", data, p, want)
		}
		// DecodeEvent yields attempt 1 and no lineage, which is what NewEvent gives too.
		if !got.Equal(ev) {
			rt.Fatalf("DecodeEvent(%s) = %v, not Equal to %v", data, got, ev)
		}
	})
}

func TestEventRoundTripKeepsHugeIntegers(t *testing.T) {
	huge := "-123456789012345678901234567890123456789012345678901234567890"
	ev := newEvent(t, "T", map[string]any{"n": json.Number(huge)})
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := necro.DecodeEvent(data)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ N *big.Int }
	if err := got.DecodePayload(&v); err != nil || v.N.String() != huge {
		t.Errorf("DecodePayload(&big.Int) = %v, %v; want %s", v.N, err, huge)
	}
	if n := got.Payload()["n"]; n != json.Number(huge) {
		t.Errorf("Payload()[n] = %#v, want json.Number(%s)", n, huge)
	}
}

func TestDecodeEventDoesNotKeepInput(t *testing.T) {
	data := wire(validID, "2025-01-15T10:30:45.123456+00:00", "TEST", `{"a":"b"}`)
	ev, err := necro.DecodeEvent(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'X'
	}
	if ev.ID() != validID || ev.Type() != "TEST" || string(ev.PayloadJSON()) != `{"a":"b"}` {
		t.Errorf("after overwriting the input: %v %s, want it unchanged", ev, ev.PayloadJSON())
	}
}

func TestDecodeEventUnknownFieldRejected(t *testing.T) { // A5
	for _, name := range []string{"extra_field", "unknown", "foo", "bar", "data", "meta", "custom", "value", "trace_id", "ID", "Payload"} {
		for _, value := range []string{`"text"`, `42`, `true`} {
			for _, data := range []string{
				fmt.Sprintf(`{"event_type":"X","payload":{},%q:%s}`, name, value),
				fmt.Sprintf(`{"id":%q,"timestamp":"2025-01-15T10:30:45Z",%q:%s,"event_type":"X","payload":{}}`, validID, name, value),
			} {
				_, err := necro.DecodeEvent([]byte(data))
				checkInvalid(t, err, name, strconv.Quote(name), "extra")
			}
		}
	}
}

func TestDecodeEventPayloadKeysUnrestricted(t *testing.T) { // A5
	ev, err := necro.DecodeEvent(wire(validID, "2025-01-15T10:30:45Z", "X", `{"foo":1,"id":2,"extra_field":{"meta":[]}}`))
	if err != nil || len(ev.Payload()) != 3 {
		t.Errorf("DecodeEvent() = %v, %v; want a payload of 3 keys", ev, err)
	}
}

// pyEvent is an event exactly as Python's json.dumps writes it.
const pyEvent = `{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "ORDER_PLACED", "payload": {"order_id": "12345", "amount": 99.99}}`

func TestDecodeEventPythonWire(t *testing.T) { // §2
	at := func(h, m, s, us int) time.Time { return time.Date(2025, 1, 15, h, m, s, us*1000, time.UTC) }
	tests := []struct {
		name    string
		data    string
		ts      time.Time
		typ     string
		payload map[string]any
	}{
		{"python json.dumps", pyEvent, at(10, 30, 45, 123456), "ORDER_PLACED",
			map[string]any{"order_id": "12345", "amount": json.Number("99.99")}},
		{"ensure_ascii escapes and surrogate pairs",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "caf\u00e9", "payload": {"msg": "\ud83d\udd25 na\u00efve \u00a3", "\u00fcber": "\u2028"}}`,
			at(10, 30, 45, 123456), "café", map[string]any{"msg": "🔥 naïve £", "über": "\u2028"}},
		{"fraction omitted when zero",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", "event_type": "T", "payload": {}}`,
			at(10, 30, 45, 0), "T", map[string]any{}},
		{"Z offset",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456Z", "event_type": "T", "payload": {}}`,
			at(10, 30, 45, 123456), "T", map[string]any{}},
		{"no offset is UTC",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456", "event_type": "T", "payload": {}}`,
			at(10, 30, 45, 123456), "T", map[string]any{}},
		{"no offset and no fraction",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45", "event_type": "T", "payload": {}}`,
			at(10, 30, 45, 0), "T", map[string]any{}},
		{"another offset",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T16:00:45.5+05:30", "event_type": "T", "payload": {}}`,
			at(10, 30, 45, 500000), "T", map[string]any{}},
		{"nanoseconds truncated",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456789+00:00", "event_type": "T", "payload": {}}`,
			at(10, 30, 45, 123456), "T", map[string]any{}},
		{"python floats and big ints",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", "event_type": "T", "payload": {"f": 3.0, "g": 1e+20, "h": -0.5, "i": 123456789012345678901234567890}}`,
			at(10, 30, 45, 0), "T", map[string]any{"f": json.Number("3.0"), "g": json.Number("1e+20"), "h": json.Number("-0.5"), "i": json.Number("123456789012345678901234567890")}},
		{"payload missing",
			`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", "event_type": "T"}`,
			at(10, 30, 45, 0), "T", map[string]any{}},
		{"indented, keys reordered, type padded",
			"{\n  \"payload\": {\n    \"a\": [1, 2]\n  },\n  \"event_type\": \"  T \",\n  \"timestamp\": \"2025-01-15T10:30:45+00:00\",\n  \"id\": \"550E8400-E29B-41D4-A716-446655440000\"\n}\n",
			at(10, 30, 45, 0), "T", map[string]any{"a": []any{json.Number("1"), json.Number("2")}}},
		{"escaped key names",
			`{"\u0069d": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", "event_type": "T", "payload": {}}`,
			at(10, 30, 45, 0), "T", map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := necro.DecodeEvent([]byte(tt.data))
			if err != nil {
				t.Fatalf("DecodeEvent(%s) = %v", tt.data, err)
			}
			if ev.ID() != validID || !ev.Timestamp().Equal(tt.ts) || ev.Timestamp().Location() != time.UTC || ev.Type() != tt.typ {
				t.Errorf("DecodeEvent(%s) = %s %v %q, want %s %v %q", tt.data, ev.ID(), ev.Timestamp(), ev.Type(), validID, tt.ts, tt.typ)
			}
			if got := ev.Payload(); !reflect.DeepEqual(got, tt.payload) {
				t.Errorf("Payload() = %#v, want %#v", got, tt.payload)
			}
			if ev.Attempt() != 1 || ev.Depth() != 0 || ev.Correlation() != validID {
				t.Errorf("Attempt, Depth, Correlation = %d, %d, %s; want 1, 0, the event's own id", ev.Attempt(), ev.Depth(), ev.Correlation())
			}
		})
	}
}

func TestDecodeEventPythonFloats(t *testing.T) {
	ev, err := necro.DecodeEvent([]byte(`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", "event_type": "T", "payload": {"f": 3.0, "g": 1e+20}}`))
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ F, G float64 }
	if err := ev.DecodePayload(&v); err != nil || v.F != 3 || v.G != 1e20 {
		t.Errorf("DecodePayload() = %+v, %v; want F 3, G 1e20", v, err)
	}
}

func TestDecodeEventRejects(t *testing.T) { // §2 strictness
	const ts = "2025-01-15T10:30:45.123456+00:00"
	ok := string(wire(validID, ts, "T", "{}"))
	tests := []struct {
		name  string
		data  string
		field string // the ValidationError.Field
	}{
		{"NaN", strings.Replace(pyEvent, "99.99", "NaN", 1), "event"},
		{"Infinity", strings.Replace(pyEvent, "99.99", "Infinity", 1), "event"},
		{"-Infinity", strings.Replace(pyEvent, "99.99", "-Infinity", 1), "event"},
		{"payload null", string(wire(validID, ts, "T", "null")), "payload"},
		{"payload array", string(wire(validID, ts, "T", "[]")), "payload"},
		{"payload string", string(wire(validID, ts, "T", `"{}"`)), "payload"},
		{"payload number", string(wire(validID, ts, "T", `1`)), "payload"},
		{"top-level array", "[" + ok + "]", "event"},
		{"top-level null", "null", "event"},
		{"top-level string", `"x"`, "event"},
		{"empty", "", "event"},
		{"white space only", " \n", "event"},
		{"empty object", "{}", "id"},
		{"duplicate id", strings.Replace(ok, `{"id"`, `{"id":"`+validID+`","id"`, 1), "id"},
		{"duplicate payload", strings.TrimSuffix(ok, "}") + `,"payload":{}}`, "payload"},
		{"duplicate escaped key", strings.TrimSuffix(ok, "}") + `,"event_typ\u0065":"U"}`, "event_type"},
		{"trailing garbage", ok + " x", "event"},
		{"trailing object", ok + "{}", "event"},
		{"trailing comma", ok + ",", "event"},
		{"truncated", ok[:len(ok)-1], "event"},
		{"missing id", `{"timestamp":"` + ts + `","event_type":"T","payload":{}}`, "id"},
		{"missing timestamp", `{"id":"` + validID + `","event_type":"T","payload":{}}`, "timestamp"},
		{"missing event_type", `{"id":"` + validID + `","timestamp":"` + ts + `","payload":{}}`, "event_type"},
		{"id null", strings.Replace(ok, `"`+validID+`"`, "null", 1), "id"},
		{"id number", strings.Replace(ok, `"`+validID+`"`, "1", 1), "id"},
		{"event_type number", `{"id":"` + validID + `","timestamp":"` + ts + `","event_type":7,"payload":{}}`, "event_type"},
		{"blank event_type", string(wire(validID, ts, " \t", "{}")), "event_type"},
		{"timestamp number", `{"id":"` + validID + `","timestamp":1736937045,"event_type":"T","payload":{}}`, "timestamp"},
		{"timestamp words", string(wire(validID, "yesterday", "T", "{}")), "timestamp"},
		{"timestamp month 13", string(wire(validID, "2025-13-01T00:00:00Z", "T", "{}")), "timestamp"},
		{"timestamp date only", string(wire(validID, "2025-01-15", "T", "{}")), "timestamp"},
		{"timestamp after year 9999 in UTC", string(wire(validID, "9999-12-31T23:30:00-01:00", "T", "{}")), "timestamp"},
		{"timestamp before year 1 in UTC", string(wire(validID, "0001-01-01T00:30:00+01:00", "T", "{}")), "timestamp"},
		{"timestamp in year 0", string(wire(validID, "0000-06-01T00:00:00Z", "T", "{}")), "timestamp"},
		{"invalid UTF-8", strings.Replace(ok, `"T"`, "\"T\xff\"", 1), "event"},
		{"single quotes", strings.ReplaceAll(ok, `"`, `'`), "event"},
		{"version 7 id", string(wire("01890a5d-ac96-774b-bcce-b302099a8057", ts, "T", "{}")), "id"},
		{"version 1 id", string(wire("550e8400-e29b-11d4-a716-446655440000", ts, "T", "{}")), "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := necro.DecodeEvent([]byte(tt.data))
			if !ev.IsZero() {
				t.Errorf("DecodeEvent(%s) = %v, want the zero Event", tt.data, ev)
			}
			checkInvalid(t, err, tt.field)
		})
	}
}

func TestEventUnmarshalJSON(t *testing.T) {
	var msg struct {
		Event necro.Event `json:"event"`
	}
	if err := json.Unmarshal([]byte(`{"event": `+pyEvent+`}`), &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Event.ID() != validID || msg.Event.Type() != "ORDER_PLACED" {
		t.Errorf("json.Unmarshal() gave %v", msg.Event)
	}
	err := json.Unmarshal([]byte(`{"event": {"event_type":"X","foo":1}}`), &msg)
	if !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("json.Unmarshal(unknown field) = %v, want ErrInvalidEvent", err)
	}
}

func TestMarshalJSONWireShape(t *testing.T) {
	ev := build(t, necro.Draft{ID: validID, Timestamp: fixedTime, Type: "ORDER_PLACED",
		Payload: map[string]any{"order_id": "12345", "amount": 99.99, "note": "<b>&</b> 🔥"}})
	got, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"2025-01-15T10:30:45.123456+00:00",` +
		`"event_type":"ORDER_PLACED","payload":{"amount":99.99,"note":"<b>&</b> 🔥","order_id":"12345"}}`
	if string(got) != want {
		t.Errorf("MarshalJSON() =\n%s\nwant\n%s", got, want)
	}
	if appended := ev.AppendJSON([]byte("x")); string(appended) != "x"+want {
		t.Errorf("AppendJSON(x) = %s, want x%s", appended, want)
	}
	if keys := topLevelKeys(t, got); !reflect.DeepEqual(keys, []string{"id", "timestamp", "event_type", "payload"}) {
		t.Errorf("MarshalJSON() keys = %q, want id, timestamp, event_type, payload", keys)
	}
	if viaMarshal, err := json.Marshal(ev); err != nil || !json.Valid(viaMarshal) {
		t.Errorf("json.Marshal(ev) = %s, %v", viaMarshal, err)
	}
}

// topLevelKeys returns the keys of a JSON object in the order they appear.
func topLevelKeys(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s does not start with an object: %v %v", data, tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestMarshalJSONTimestamp(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2025, 1, 15, 10, 30, 45, 0, time.UTC), "2025-01-15T10:30:45.000000+00:00"},
		{time.Date(2025, 1, 15, 10, 30, 45, 1000, time.UTC), "2025-01-15T10:30:45.000001+00:00"},
		{time.Date(2025, 1, 15, 10, 30, 45, 999_999_999, time.UTC), "2025-01-15T10:30:45.999999+00:00"},
		{time.Date(2025, 1, 15, 12, 30, 45, 500_000_000, time.FixedZone("CEST", 2*3600)), "2025-01-15T10:30:45.500000+00:00"},
		{time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC), "0001-01-01T00:00:00.000001+00:00"},
		{time.Date(9999, 12, 31, 23, 59, 59, 999_999_000, time.UTC), "9999-12-31T23:59:59.999999+00:00"},
	}
	for _, tt := range tests {
		ev := build(t, necro.Draft{ID: validID, Type: "T", Timestamp: tt.in})
		data, _ := ev.MarshalJSON()
		var v struct{ Timestamp string }
		if err := json.Unmarshal(data, &v); err != nil || v.Timestamp != tt.want {
			t.Errorf("MarshalJSON() of %v has timestamp %q, want %q (%v)", tt.in, v.Timestamp, tt.want, err)
		}
		if back, err := necro.DecodeEvent(data); err != nil || !back.Equal(ev) {
			t.Errorf("DecodeEvent(%s) = %v, %v", data, back, err)
		}
	}
}

func TestMarshalJSONZeroEvent(t *testing.T) {
	var ev necro.Event
	if _, err := ev.MarshalJSON(); !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("Event{}.MarshalJSON() = %v, want ErrInvalidEvent", err)
	}
	if _, err := json.Marshal(ev); !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("json.Marshal(Event{}) = %v, want ErrInvalidEvent", err)
	}
}

func TestDecodeWithMeta(t *testing.T) {
	event := wire(validID, "2025-01-15T10:30:45.123456+00:00", "ORDER_PLACED", `{"order_id":"12345"}`)
	root, err := necro.DecodeEvent(event)
	if err != nil {
		t.Fatal(err)
	}
	for _, meta := range [][]byte{nil, {}} {
		got, err := necro.DecodeWithMeta(event, meta)
		if err != nil || !got.Equal(root) || !reflect.DeepEqual(got.Meta(), necro.Metadata{Attempt: 1}) || got.Correlation() != validID {
			t.Errorf("DecodeWithMeta(event, %q) = %v %+v, %v; want the root %v", meta, got, got.Meta(), err, root)
		}
	}

	lineage := necro.Metadata{CorrelationID: otherID, CausationID: otherID, Depth: 2, Attempt: 3, Targets: []string{"billing"},
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	want, err := root.WithMeta(lineage)
	if err != nil {
		t.Fatal(err)
	}
	for _, meta := range []string{
		string(lineage.AppendJSON(nil)),
		`{"targets": ["billing"], "attempt": 3, "depth": 2, "causation_id": "` + strings.ToUpper(otherID) + `", "correlation_id": "` + otherID +
			`", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": null}`,
	} {
		got, err := necro.DecodeWithMeta(event, []byte(meta))
		if err != nil || !got.Equal(want) {
			t.Errorf("DecodeWithMeta(event, %s) = %v %+v, %v; want %v %+v", meta, got, got.Meta(), err, want, want.Meta())
		}
	}

	tests := []struct {
		name        string
		event, meta string
		field       string
		metaError   bool
	}{
		{"bad event", `{"id":"x","timestamp":"2025-01-15T10:30:45Z","event_type":"T"}`, `{"depth":1}`, "id", false},
		{"bad event, bad meta", `{}`, `{"depth":-1}`, "id", false},
		{"negative depth", string(event), `{"depth":-1}`, "depth", true},
		{"negative attempt", string(event), `{"attempt":-1}`, "attempt", true},
		{"bad correlation id", string(event), `{"correlation_id":"abc"}`, "correlation_id", true},
		{"blank target", string(event), `{"targets":[" "]}`, "targets", true},
		{"event key in meta", string(event), `{"id":"` + validID + `"}`, "id", true},
		{"repeated key", string(event), `{"depth":1,"depth":1}`, "depth", true},
		{"depth a string", string(event), `{"depth":"1"}`, "metadata", true},
		{"white space only", string(event), ` `, "metadata", true},
		{"null", string(event), `null`, "metadata", true},
		{"truncated", string(event), `{"depth":1`, "metadata", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := necro.DecodeWithMeta([]byte(tt.event), []byte(tt.meta))
			if !ev.IsZero() {
				t.Errorf("DecodeWithMeta(%s, %s) = %v, want the zero Event", tt.event, tt.meta, ev)
			}
			checkInvalid(t, err, tt.field)
			if err != nil && strings.HasPrefix(err.Error(), "meta: ") != tt.metaError {
				t.Errorf("DecodeWithMeta(%s, %s) = %q; want the prefix \"meta: \" %v", tt.event, tt.meta, err, tt.metaError)
			}
		})
	}
}

func TestDecodeWithMetaDoesNotKeepInput(t *testing.T) {
	event := wire(validID, "2025-01-15T10:30:45.123456+00:00", "TEST", `{"a":"b"}`)
	meta := necro.Metadata{CorrelationID: otherID, CausationID: validID, Depth: 1, Targets: []string{"billing"},
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "k=v"}.AppendJSON(nil)
	ev, err := necro.DecodeWithMeta(event, meta)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{event, meta} {
		for i := range b {
			b[i] = 'X'
		}
	}
	m := ev.Meta()
	if ev.ID() != validID || ev.Type() != "TEST" || string(ev.PayloadJSON()) != `{"a":"b"}` || m.CorrelationID != otherID ||
		m.CausationID != validID || m.Targets[0] != "billing" || !strings.HasPrefix(m.TraceParent, "00-") || m.TraceState != "k=v" {
		t.Errorf("after overwriting the input: %v %s %+v, want it unchanged", ev, ev.PayloadJSON(), m)
	}
}

func ExampleDecodeWithMeta() {
	// The two fields of the stream entry the Redis backend writes for a retried child event.
	event := []byte(`{"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"2025-01-15T10:30:45.123456+00:00",` +
		`"event_type":"ORDER_PLACED","payload":{"order_id":"12345"}}`)
	meta := []byte(`{"correlation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8","causation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8",` +
		`"depth":1,"attempt":2,"targets":["billing"]}`)
	ev, err := necro.DecodeWithMeta(event, meta)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Type(), ev.Correlation(), ev.Depth(), ev.Attempt(), ev.IsFor("billing"), ev.IsFor("audit"))

	// An entry without metadata holds a root event.
	root, _ := necro.DecodeWithMeta(event, nil)
	fmt.Println(root.Correlation() == root.ID(), root.Depth(), root.Attempt())

	_, err = necro.DecodeWithMeta(event, []byte(`{"depth":-1}`))
	fmt.Println(errors.Is(err, necro.ErrInvalidEvent), err)
	// Output:
	// ORDER_PLACED 6ba7b810-9dad-41d1-80b4-00c04fd430c8 1 2 true false
	// true 0 1
	// true meta: necro: invalid event: depth: must not be negative, got -1
}

func BenchmarkDecodeWithMeta(b *testing.B) {
	_, event, _ := wireBenchEvent(b)
	for _, bm := range []struct {
		name string
		meta []byte
	}{
		{"root", nil},
		{"child", benchMeta.AppendJSON(nil)},
		{"retry", necro.Metadata{CorrelationID: validID, CausationID: otherID, Depth: 2, Attempt: 3,
			Targets: []string{"billing", "audit"}}.AppendJSON(nil)},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(event) + len(bm.meta)))
			for b.Loop() {
				if _, err := necro.DecodeWithMeta(event, bm.meta); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(pyEvent))
	f.Add(wire(validID, "2025-01-15T10:30:45.123456+00:00", "ORDER_PLACED", `{"order_id":"12345","amount":99.99}`))
	f.Add([]byte(`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45", "event_type": "caf\u00e9", "payload": {"msg": "\ud83d\udd25", "n": 1e+20, "f": 3.0}}`))
	f.Add([]byte(`{"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"2025-01-15T10:30:45Z","event_type":"T"}`))
	f.Add([]byte(`{"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"9999-12-31T23:59:59-01:00","event_type":" \u0085T<>","payload":{"a":[{"b":null}]}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"550e8400-e29b-41d4-a716-44665544`))
	f.Add([]byte(`{"event_type":"X","payload":{},"foo":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{'{'})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := necro.DecodeEvent(data)
		if err != nil {
			if !errors.Is(err, necro.ErrInvalidEvent) {
				t.Fatalf("DecodeEvent(%q) = %v, which does not match ErrInvalidEvent", data, err)
			}
			return // rejecting input is fine; panicking is not
		}
		out, err := ev.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON() of %v decoded from %q = %v", ev, data, err)
		}
		again, err := necro.DecodeEvent(out)
		if err != nil || !again.Equal(ev) {
			t.Fatalf("round trip turned %q into %q: %v, %v", data, out, again, err)
		}
		if string(again.PayloadJSON()) != string(ev.PayloadJSON()) || again.PayloadSize() > necro.MaxPayloadBytes {
			t.Fatalf("round trip changed the payload %s into %s", ev.PayloadJSON(), again.PayloadJSON())
		}
		var p map[string]any
		if err := ev.DecodePayload(&p); err != nil || p == nil {
			t.Fatalf("DecodePayload() of %s = %v", ev.PayloadJSON(), err)
		}
	})
}

// wirePayload is the payload of the decoding benchmarks: about 100 bytes of JSON, as
// an order event carries it.
const wirePayload = `{"order_id":"ord-000123","customer":"alice","amount":149.5,"currency":"EUR","items":3,"note":"x"}`

// wireBenchEvent returns the event the decoding benchmarks read, in necro's compact
// wire form and as Python's json.dumps writes it.
func wireBenchEvent(b *testing.B) (ev necro.Event, compact, python []byte) {
	b.Helper()
	ev, err := necro.Draft{Type: "ORDER_PLACED", Timestamp: fixedTime, Payload: json.RawMessage(wirePayload)}.Build()
	if err != nil {
		b.Fatal(err)
	}
	python = []byte(`{"id": "` + ev.ID() + `", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "ORDER_PLACED", ` +
		`"payload": {"order_id": "ord-000123", "customer": "alice", "amount": 149.5, "currency": "EUR", "items": 3, "note": "x"}}`)
	return ev, ev.AppendJSON(nil), python
}

func BenchmarkDecodeEvent(b *testing.B) {
	_, compact, python := wireBenchEvent(b)
	for _, bm := range []struct {
		name string
		data []byte
	}{{"go", compact}, {"python", python}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.data)))
			for b.Loop() {
				if _, err := necro.DecodeEvent(bm.data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	ev, err := necro.NewEvent("ORDER_PLACED", benchPayload)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("MarshalJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ev.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = ev.AppendJSON(buf[:0])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
