package necro_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/necrostack/necro"
)

const validID = "550e8400-e29b-41d4-a716-446655440000"

var fixedTime = time.Date(2025, 1, 15, 10, 30, 45, 123456000, time.UTC)

// build builds d and fails the test when that is an error.
func build(t testing.TB, d necro.Draft) necro.Event {
	t.Helper()
	ev, err := d.Build()
	if err != nil {
		t.Fatalf("%+v.Build() = %v, want no error", d, err)
	}
	return ev
}

// newEvent calls NewEvent and fails the test when that is an error.
func newEvent(t testing.TB, typ string, payload any) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		t.Fatalf("NewEvent(%q, %.80v) = %v, want no error", typ, payload, err)
	}
	return ev
}

// checkInvalid asserts that err matches ErrInvalidEvent, is a *ValidationError for
// field, and that its text contains every one of texts.
func checkInvalid(t testing.TB, err error, field string, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("error = nil, want one wrapping ErrInvalidEvent for field %q", field)
	}
	if !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("errors.Is(%v, ErrInvalidEvent) = false, want true", err)
	}
	var ve *necro.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if field != "" && ve.Field != field {
		t.Errorf("ValidationError.Field = %q, want %q (error %v)", ve.Field, field, err)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", clip(err.Error()), s)
		}
	}
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// wire returns the wire JSON of an event with the given id, timestamp, type and
// payload text, in the compact Go shape.
func wire(id, ts, typ, payload string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"timestamp":%q,"event_type":%q,"payload":%s}`, id, ts, typ, payload)
}

// --- A1: JSON round trip --------------------------------------------------------------

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

func TestDraftTimestampRoundTripProperty(t *testing.T) {
	// Keep a day away from the ends of years 1..9999 so any zone offset stays inside.
	lo := time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(9999, 12, 30, 0, 0, 0, 0, time.UTC).Unix()
	rapid.Check(t, func(rt *rapid.T) {
		offset := rapid.IntRange(-14*60, 14*60).Draw(rt, "offset minutes")
		zone := time.FixedZone("z", offset*60)
		ts := time.Unix(rapid.Int64Range(lo, hi).Draw(rt, "unix"), rapid.Int64Range(0, 999_999_999).Draw(rt, "nanos")).In(zone)
		ev := build(t, necro.Draft{Type: "T", Timestamp: ts})
		want := ts.UTC().Truncate(time.Microsecond)
		if got := ev.Timestamp(); !got.Equal(want) || got.Location() != time.UTC {
			rt.Fatalf("Draft{Timestamp: %v}.Build().Timestamp() = %v, want %v in UTC", ts, got, want)
		}
		data, err := ev.MarshalJSON()
		if err != nil {
			rt.Fatal(err)
		}
		got, err := necro.DecodeEvent(data)
		if err != nil || !got.Equal(ev) {
			rt.Fatalf("DecodeEvent(%s) = %v, %v; want %v", data, got, err, ev)
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

// --- A2, A6-A10: ids --------------------------------------------------------------------

var canonicalUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewEventIDsAreUniqueLowercaseV4(t *testing.T) { // A2
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 20).Draw(rt, "n")
		seen := make(map[string]bool, n)
		for range n {
			id := newEvent(t, "TEST", nil).ID()
			if !canonicalUUID.MatchString(id) {
				rt.Fatalf("ID() = %q, want a lowercase canonical UUID v4", id)
			}
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
				rt.Fatalf("uuid.Parse(%q) = version %v variant %v, %v; want version 4, RFC 4122", id, u.Version(), u.Variant(), err)
			}
			if seen[id] {
				rt.Fatalf("id %s generated twice among %d events", id, n)
			}
			seen[id] = true
		}
	})
}

func TestDraftIDAccepted(t *testing.T) { // A6, A7
	tests := []struct{ in, want string }{
		{validID, validID},
		{strings.ToUpper(validID), validID},
		{"550E8400-e29b-41D4-A716-446655440000", validID},
		{"00000000-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000"},
		{"ffffffff-ffff-4fff-bfff-ffffffffffff", "ffffffff-ffff-4fff-bfff-ffffffffffff"},
	}
	for _, tt := range tests {
		if got := build(t, necro.Draft{ID: tt.in, Type: "TEST"}).ID(); got != tt.want {
			t.Errorf("Draft{ID: %q}.Build().ID() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDraftWithoutIDGeneratesOne(t *testing.T) {
	ev := build(t, necro.Draft{Type: "TEST"})
	if !canonicalUUID.MatchString(ev.ID()) {
		t.Errorf("Draft{}.Build().ID() = %q, want a fresh UUID v4", ev.ID())
	}
}

var badIDs = []struct{ name, id string }{ // A8, A10
	{"not a uuid", "not-a-uuid"},
	{"truncated", validID[:35]},
	{"extra suffix", validID + "0"},
	{"no hyphens", strings.ReplaceAll(validID, "-", "")},
	{"non-hex digit", "g50e8400-e29b-41d4-a716-446655440000"},
	{"blank", "   "},
	{"hyphen moved", "550e840-0e29b-41d4-a716-446655440000"},
	{"braces", "{" + validID[:34] + "}"},
	{"version 1", "550e8400-e29b-11d4-a716-446655440000"},
	{"version 7", "01890a5d-ac96-774b-bcce-b302099a8057"},
	{"nil uuid", "00000000-0000-0000-0000-000000000000"},
	{"variant 0", "550e8400-e29b-41d4-0716-446655440000"},
	{"variant c", "550e8400-e29b-41d4-c716-446655440000"},
}

func TestDraftBadIDRejected(t *testing.T) { // A8, A9, A10
	for _, tt := range badIDs {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := necro.Draft{ID: tt.id, Type: "TEST"}.Build()
			if !ev.IsZero() {
				t.Errorf("Draft{ID: %q}.Build() = %v, want the zero Event", tt.id, ev)
			}
			checkInvalid(t, err, "id", "id", "UUID")
		})
	}
}

func TestDecodeEventBadIDRejected(t *testing.T) { // A8, A9, A10 on the wire
	for _, tt := range append(badIDs, struct{ name, id string }{"empty", ""}) {
		t.Run(tt.name, func(t *testing.T) {
			_, err := necro.DecodeEvent(wire(tt.id, "2025-01-15T10:30:45.123456+00:00", "TEST", "{}"))
			checkInvalid(t, err, "id", "UUID")
		})
	}
}

// --- A3, A4, 1.K: event types ------------------------------------------------------------

func TestNewEventBlankTypeRejected(t *testing.T) { // A3, A4
	for _, typ := range []string{"", " ", "  ", "\t", "\n", "\r", "   \t\n", "\t\t\t",
		"\v\f", "\u00a0", "\u3000", "\x1c\x1d\x1e\x1f"} {
		ev, err := necro.NewEvent(typ, nil)
		if !ev.IsZero() {
			t.Errorf("NewEvent(%q) = %v, want the zero Event", typ, ev)
		}
		checkInvalid(t, err, "event_type", "event_type", "must not be empty")
	}
}

func TestNewEventBlankTypeRejectedProperty(t *testing.T) { // A3
	ws := rapid.SampledFrom([]string{" ", "\t", "\n", "\r", "\v", "\f", "\u0085", "\u00a0", "\u2028", "\u3000", "\x1c", "\x1f"})
	rapid.Check(t, func(rt *rapid.T) {
		typ := strings.Join(rapid.SliceOfN(ws, 0, 8).Draw(rt, "spaces"), "")
		if _, err := necro.NewEvent(typ, nil); !errors.Is(err, necro.ErrInvalidEvent) || !strings.Contains(err.Error(), "event_type") {
			rt.Fatalf("NewEvent(%q) = %v, want ErrInvalidEvent naming event_type", typ, err)
		}
	})
}

func TestNewEventTypeTrimmed(t *testing.T) { // 1.K first bullet
	tests := []struct{ in, want string }{
		{"ORDER_PLACED", "ORDER_PLACED"},
		{"  ORDER_PLACED\t\n", "ORDER_PLACED"},
		{"order placed", "order placed"},
		{"\x1corder\x1f", "order"}, // Python's str.strip() removes \x1c-\x1f too
		{"café ☕", "café ☕"},
		{"<&>", "<&>"},
	}
	for _, tt := range tests {
		if got := newEvent(t, tt.in, nil).Type(); got != tt.want {
			t.Errorf("NewEvent(%q).Type() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewEventInvalidUTF8TypeRejected(t *testing.T) {
	_, err := necro.NewEvent("bad\xff", nil)
	checkInvalid(t, err, "event_type", "UTF-8")
}

// A type longer than MaxTypeBytes is refused wherever it enters, built or decoded by
// either decoder, with an error that names the limit and does not repeat the whole
// type: a producer's 512 KiB types would otherwise live on in a worker's per-type
// bookkeeping and in every log line about them.
func TestTypeLengthLimit(t *testing.T) {
	const limit = necro.MaxTypeBytes
	atLimit := strings.Repeat("t", limit)
	tests := []struct {
		name, typ string
		ok        bool
	}{
		{"at the limit", atLimit, true},
		{"at the limit, spaces around", "  " + atLimit + "\n", true}, // measured after trimming
		{"one byte over", atLimit + "t", false},
		{"over in bytes, not in characters", strings.Repeat("é", limit/2+1), false},
		{"512 KiB", strings.Repeat("x", 512<<10), false},
	}
	for _, tt := range tests {
		text := wire(validID, "2025-01-15T10:30:45.123456+00:00", tt.typ, "{}")
		// An escape in a key sends the text to the general decoder instead of the fast one.
		escaped := bytes.Replace(text, []byte(`"id"`), []byte(`"\u0069d"`), 1)
		ways := []struct {
			how   string
			build func() (necro.Event, error)
		}{
			{"NewEvent", func() (necro.Event, error) { return necro.NewEvent(tt.typ, nil) }},
			{"Draft.Build", func() (necro.Event, error) { return necro.Draft{Type: tt.typ, ID: validID}.Build() }},
			{"DecodeEvent", func() (necro.Event, error) { return necro.DecodeEvent(text) }},
			{"DecodeEvent with an escape", func() (necro.Event, error) { return necro.DecodeEvent(escaped) }},
		}
		for _, w := range ways {
			t.Run(tt.name+"/"+w.how, func(t *testing.T) {
				ev, err := w.build()
				if tt.ok {
					if err != nil || ev.Type() != strings.TrimSpace(tt.typ) {
						t.Fatalf("type of %d bytes: %v, %v; want it accepted", len(tt.typ), clip(ev.Type()), err)
					}
					return
				}
				if !ev.IsZero() {
					t.Errorf("type of %d bytes accepted, want it refused", len(strings.TrimSpace(tt.typ)))
				}
				checkInvalid(t, err, "event_type", "event_type", "longer than", strconv.Itoa(limit))
				if err != nil && len(err.Error()) > 200 {
					t.Errorf("error of %d bytes %q repeats the type; want it clipped", len(err.Error()), clip(err.Error()))
				}
			})
		}
	}
}

// --- A11, A12: payload contents ------------------------------------------------------------

func TestNewEventNestedPayloadReadBack(t *testing.T) { // A11
	in := map[string]any{
		"user":  map[string]any{"name": "ada", "roles": []any{"admin", "dev"}, "address": map[string]any{"city": "London"}},
		"items": []any{map[string]any{"sku": "A1", "qty": json.Number("2")}, nil, true, "x"},
		"total": json.Number("99.99"),
		"empty": map[string]any{},
		"none":  nil,
	}
	ev := newEvent(t, "ORDER", in)
	if got := ev.Payload(); !reflect.DeepEqual(got, in) {
		t.Errorf("Payload() = %#v, want %#v", got, in)
	}
	var v struct {
		User struct {
			Name string
		}
		Total float64
	}
	if err := ev.DecodePayload(&v); err != nil || v.User.Name != "ada" || v.Total != 99.99 {
		t.Errorf("DecodePayload() = %+v, %v; want ada and 99.99", v, err)
	}
}

func TestNewEventEmptyPayload(t *testing.T) { // A12
	var nilMap map[string]any
	var nilStruct *struct{ A int }
	var nilRaw json.RawMessage
	tests := []struct {
		name    string
		payload any
	}{
		{"nil", nil},
		{"nil map", nilMap},
		{"empty map", map[string]any{}},
		{"empty struct", struct{}{}},
		{"nil struct pointer", nilStruct},
		{"nil raw message", nilRaw},
		{"raw {}", json.RawMessage(`{}`)},
		{"raw spaced", json.RawMessage(" {\n} ")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := newEvent(t, "TEST", tt.payload)
			if p := ev.Payload(); p == nil || len(p) != 0 {
				t.Errorf("Payload() = %#v, want an empty non-nil map", p)
			}
			if got := string(ev.PayloadJSON()); got != "{}" {
				t.Errorf("PayloadJSON() = %s, want {}", got)
			}
			if ev.PayloadSize() != 2 {
				t.Errorf("PayloadSize() = %d, want 2", ev.PayloadSize())
			}
			data, err := json.Marshal(ev)
			if err != nil || !bytes.HasSuffix(data, []byte(`,"payload":{}}`)) {
				t.Errorf("json.Marshal() = %s, %v; want it to end with \"payload\":{}", data, err)
			}
		})
	}
}

func TestNewEventStructPayload(t *testing.T) {
	type order struct {
		ID     string   `json:"order_id"`
		Amount float64  `json:"amount"`
		Tags   []string `json:"tags,omitempty"`
	}
	ev := newEvent(t, "ORDER", order{ID: "12345", Amount: 99.99})
	if got := string(ev.PayloadJSON()); got != `{"order_id":"12345","amount":99.99}` {
		t.Errorf("PayloadJSON() = %s", got)
	}
	var back order
	if err := ev.DecodePayload(&back); err != nil || back.ID != "12345" || back.Amount != 99.99 {
		t.Errorf("DecodePayload() = %+v, %v", back, err)
	}
}

func TestNewEventNonObjectPayloadRejected(t *testing.T) {
	tests := []struct {
		name    string
		payload any
	}{
		{"slice", []int{1, 2}},
		{"string", "text"},
		{"number", 42},
		{"bool", true},
		{"raw array", json.RawMessage(`[]`)},
		{"raw string", json.RawMessage(`"s"`)},
		{"raw number", json.RawMessage(`1`)},
		{"raw null", json.RawMessage(`null`)},
		{"raw true", json.RawMessage(` true `)},
		{"raw empty", json.RawMessage{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := necro.NewEvent("TEST", tt.payload)
			checkInvalid(t, err, "payload", "payload")
		})
	}
}

func TestNewEventInvalidRawPayloadRejected(t *testing.T) {
	for _, raw := range []string{`{`, `{"a":}`, `{"a":1,}`, `{"a":NaN}`, `{"a":Infinity}`, `{"a":-Infinity}`,
		`{'a':1}`, `{"a":1}x`, `{"a":1}{}`, "{\"a\":\"\xff\"}", `{"a":"\x"}`, "\ufeff{}"} {
		_, err := necro.NewEvent("TEST", json.RawMessage(raw))
		checkInvalid(t, err, "payload", "payload", "JSON")
	}
}

func TestNewEventRawPayloadCompacted(t *testing.T) {
	raw := json.RawMessage("{\n  \"a\": [1, 2.50, {\"b\" : \"x y\"}],\t\"c\": \"\\u00e9<\"\n}")
	ev := newEvent(t, "TEST", raw)
	want := `{"a":[1,2.50,{"b":"x y"}],"c":"\u00e9<"}`
	if got := string(ev.PayloadJSON()); got != want {
		t.Errorf("PayloadJSON() = %s, want %s", got, want)
	}
	if got := ev.Payload()["c"]; got != "é<" {
		t.Errorf("Payload()[c] = %q, want %q", got, "é<")
	}
}

// --- A13-A17: payload size -------------------------------------------------------------------

// sized returns {"k":"<n times s>"} as a map and as raw text.
func sized(key string, n int, s string) (map[string]any, json.RawMessage) {
	v := strings.Repeat(s, n)
	return map[string]any{key: v}, json.RawMessage(`{"` + key + `":"` + v + `"}`)
}

func TestPayloadSizeLimit(t *testing.T) { // A13-A17
	const max = necro.MaxPayloadBytes
	// {"k":"…"} is 8 bytes around the value.
	tests := []struct {
		name     string
		key      string
		n        int
		s        string
		wantSize int // 0: rejected
	}{
		{"A13 a megabyte and a thousand", "data", max + 1000, "x", 0},
		{"A14 a hundred under", "data", max - 100, "x", max - 100 + 11},
		{"A15 python at limit", "k", max - 10, "x", max - 2},
		{"A16 a megabyte of data", "data", max, "x", 0},
		{"exactly the limit", "k", max - 8, "x", max},
		{"one byte over", "k", max - 7, "x", 0},
		{"A17 emoji counted as utf-8 over", "k", 250_001, "🔥", 0},
		{"emoji exactly the limit", "k", (max - 8) / 4, "🔥", max},
		{"two-byte runes at the limit", "k", (max - 8) / 2, "é", max},
		{"two-byte runes just over", "k", (max-8)/2 + 1, "é", 0},
	}
	for _, tt := range tests {
		m, raw := sized(tt.key, tt.n, tt.s)
		for _, p := range []struct {
			kind    string
			payload any
		}{{"map", m}, {"raw", raw}} {
			t.Run(tt.name+"/"+p.kind, func(t *testing.T) {
				ev, err := necro.NewEvent("TEST", p.payload)
				if tt.wantSize == 0 {
					checkInvalid(t, err, "payload", "payload", "bytes", "exceeds maximum size")
					return
				}
				if err != nil {
					t.Fatalf("NewEvent(%d × %q) = %v, want accepted", tt.n, tt.s, err)
				}
				if ev.PayloadSize() != tt.wantSize {
					t.Errorf("PayloadSize() = %d, want %d", ev.PayloadSize(), tt.wantSize)
				}
			})
		}
	}
}

func TestPayloadSizeMeasuresCompactText(t *testing.T) { // A15: the limit applies to the compact encoding
	const max = necro.MaxPayloadBytes
	x := strings.Repeat("x", max-8)
	spaced := json.RawMessage(`{ "k" : "` + x + `" }`) // max+4 bytes as written, max compact
	ev, err := necro.NewEvent("TEST", spaced)
	if err != nil {
		t.Fatalf("NewEvent(%d spaced bytes, %d compact) = %v, want accepted", len(spaced), max, err)
	}
	if ev.PayloadSize() != max || !bytes.HasPrefix(ev.PayloadJSON(), []byte(`{"k":"xxx`)) {
		t.Errorf("PayloadSize() = %d, want %d with the spaces dropped", ev.PayloadSize(), max)
	}
	_, err = necro.NewEvent("TEST", json.RawMessage(`{ "k" : "`+x+`x" }`))
	checkInvalid(t, err, "payload", fmt.Sprint(max+1), "exceeds maximum size")
}

func TestPayloadSizeKeepsEscapesAsWritten(t *testing.T) { // A17: the measure is the text's own bytes
	raw := newEvent(t, "TEST", json.RawMessage(`{"k":"\ud83d\udd25"}`))
	native := newEvent(t, "TEST", map[string]any{"k": "🔥"})
	if raw.PayloadSize() != 20 || native.PayloadSize() != 12 {
		t.Errorf("PayloadSize() = %d (escaped) and %d (UTF-8), want 20 and 12", raw.PayloadSize(), native.PayloadSize())
	}
	if !raw.Equal(build(t, necro.Draft{ID: raw.ID(), Timestamp: raw.Timestamp(), Type: "TEST", Payload: map[string]any{"k": "🔥"}})) {
		t.Error("events whose payloads differ only in escapes are not Equal")
	}
}

func TestDecodeEventPayloadSizeLimit(t *testing.T) {
	const max = necro.MaxPayloadBytes
	_, raw := sized("k", max-8, "x")
	if _, err := necro.DecodeEvent(wire(validID, "2025-01-15T10:30:45Z", "T", string(raw))); err != nil {
		t.Errorf("DecodeEvent(payload of %d bytes) = %v, want accepted", max, err)
	}
	_, raw = sized("k", max-7, "x")
	_, err := necro.DecodeEvent(wire(validID, "2025-01-15T10:30:45Z", "T", string(raw)))
	checkInvalid(t, err, "payload", "exceeds maximum size")
}

// --- A18: nesting ------------------------------------------------------------------------

// nested returns {"level":0,"child":{"level":1,…{"level":depth-1}}}, depth objects deep.
func nested(depth int) map[string]any {
	m := map[string]any{"level": depth - 1}
	for i := depth - 2; i >= 0; i-- {
		m = map[string]any{"level": i, "child": m}
	}
	return m
}

func TestNewEventDeeplyNestedPayload(t *testing.T) { // A18
	in := nested(101)
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, payload := range []any{in, json.RawMessage(raw)} {
		ev := newEvent(t, "DEEP", payload)
		p := ev.Payload()
		child := p["child"].(map[string]any)["child"].(map[string]any)
		if child["level"] != json.Number("2") {
			t.Errorf("Payload()[child][child][level] = %#v, want 2", child["level"])
		}
		data, _ := ev.MarshalJSON()
		if back, err := necro.DecodeEvent(data); err != nil || !back.Equal(ev) {
			t.Errorf("DecodeEvent(MarshalJSON()) = %v, %v; want %v", back, err, ev)
		}
	}
}

func TestNewEventTooDeepPayload(t *testing.T) {
	// Whatever is accepted must read back: through Payload, and inside an event on the
	// wire, which encoding/json and Python's json decode with bounded nesting.
	for _, depth := range []int{1000, 1001, 9999, 10000, 10001, 20000} {
		raw := json.RawMessage(strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1))
		for _, payload := range []any{raw, nestedAny(depth)} {
			ev, err := necro.NewEvent("DEEP", payload)
			if err != nil {
				checkInvalid(t, err, "payload", "deep")
				continue
			}
			if len(ev.Payload()) == 0 {
				t.Errorf("depth %d (%T): Payload() is empty, the payload was lost", depth, payload)
			}
			data, _ := ev.MarshalJSON()
			if back, err := necro.DecodeEvent(data); err != nil || !back.Equal(ev) {
				t.Errorf("depth %d (%T): DecodeEvent(MarshalJSON()) = %v, %v; want %v", depth, payload, back, clip(fmt.Sprint(err)), ev)
			}
		}
	}
	if _, err := necro.NewEvent("DEEP", nestedAny(1000)); err != nil {
		t.Errorf("NewEvent(payload 1000 deep) = %v, want accepted", err)
	}
	if _, err := necro.NewEvent("DEEP", nestedAny(1001)); !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("NewEvent(payload 1001 deep) = %v, want ErrInvalidEvent", err)
	}
}

// nestedAny returns {"a":{"a":…{}}}, depth objects deep.
func nestedAny(depth int) map[string]any {
	m := map[string]any{}
	for range depth - 1 {
		m = map[string]any{"a": m}
	}
	return m
}

// --- A19: values JSON cannot hold -----------------------------------------------------

func TestNewEventNonSerializablePayloadRejected(t *testing.T) { // A19
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	tests := []struct {
		name    string
		payload any
	}{
		{"func", map[string]any{"f": func() {}}},
		{"chan", map[string]any{"c": make(chan int)}},
		{"complex128", map[string]any{"z": complex(1, 2)}},
		{"NaN", map[string]any{"x": math.NaN()}},
		{"+Inf", map[string]any{"x": math.Inf(1)}},
		{"-Inf", map[string]any{"x": math.Inf(-1)}},
		{"NaN in a slice", map[string]any{"xs": []any{1.0, math.NaN()}}},
		{"func in a nested map", map[string]any{"m": map[string]any{"f": func() {}}}},
		{"cycle", cyclic},
		{"bad json.Number", map[string]any{"n": json.Number("1x")}},
		{"func value", func() {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := necro.NewEvent("TEST", tt.payload)
			checkInvalid(t, err, "payload", "payload", "JSON-serializable")
		})
	}
}

// --- A20, A21: immutability ------------------------------------------------------------------

func TestEventPayloadDeeplyImmutable(t *testing.T) { // A20, A21
	in := map[string]any{
		"user": map[string]any{"name": "ada", "tags": []any{"x", "y"}},
		"n":    json.Number("1"),
	}
	want, _ := json.Marshal(in)
	ev := newEvent(t, "TEST", in)
	check := func(after string) {
		t.Helper()
		if got := ev.PayloadJSON(); string(got) != string(want) {
			t.Errorf("after %s: PayloadJSON() = %s, want %s", after, got, want)
		}
	}

	in["user"].(map[string]any)["name"] = "eve"
	in["user"].(map[string]any)["tags"].([]any)[0] = "changed"
	in["extra"] = true
	check("changing the map given to NewEvent")

	p := ev.Payload()
	p["user"].(map[string]any)["name"] = "mallory"
	p["user"].(map[string]any)["tags"].([]any)[1] = "z"
	p["user"].(map[string]any)["new"] = 1
	delete(p, "n")
	check("changing the map Payload returned")

	pj := ev.PayloadJSON()
	copy(pj, "XXXXXXXX")
	check("changing the bytes PayloadJSON returned")
}

func TestEventRawPayloadNotShared(t *testing.T) { // A20, A21
	for _, raw := range []json.RawMessage{json.RawMessage(`{"a":[1,2]}`), json.RawMessage(`{ "a" : [1, 2] }`)} {
		ev := newEvent(t, "TEST", raw)
		copy(raw, `{"b":[3,4]`)
		if got := string(ev.PayloadJSON()); got != `{"a":[1,2]}` {
			t.Errorf("after changing the raw message given: PayloadJSON() = %s, want {\"a\":[1,2]}", got)
		}
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

func TestEventMetaTargetsImmutable(t *testing.T) { // A20, A21 for metadata
	targets := []string{"billing", "audit"}
	ev := build(t, necro.Draft{Type: "TEST", Meta: necro.Metadata{Targets: targets}})
	targets[0] = "changed"
	m := ev.Meta()
	m.Targets[1] = "changed"
	_ = append(m.Targets[:1], "appended")
	if got := ev.Meta().Targets; !reflect.DeepEqual(got, []string{"billing", "audit"}) {
		t.Errorf("Meta().Targets = %q after changing copies, want [billing audit]", got)
	}
	child, err := ev.WithMeta(necro.Metadata{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	targets[1] = "changed too"
	if got := child.Meta().Targets; !reflect.DeepEqual(got, []string{"changed", "audit"}) {
		t.Errorf("WithMeta(...).Meta().Targets = %q, want [changed audit]", got)
	}
}

// --- A5 and the strict decoder ---------------------------------------------------------------

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

// --- §2: what the Go writer produces -----------------------------------------------------------

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

func TestDraftTimestampOutsidePythonRangeRejected(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600)),
	} {
		_, err := necro.Draft{Type: "T", Timestamp: ts}.Build()
		checkInvalid(t, err, "timestamp", "timestamp")
	}
}

func TestNewEventTimestampIsNowInUTCMicroseconds(t *testing.T) {
	before := time.Now().Truncate(time.Microsecond)
	ts := newEvent(t, "T", nil).Timestamp()
	after := time.Now()
	if ts.Before(before) || ts.After(after) || ts.Location() != time.UTC || ts.Nanosecond()%1000 != 0 {
		t.Errorf("Timestamp() = %v, want UTC µs between %v and %v", ts, before, after)
	}
}

func TestParseTimestamp(t *testing.T) {
	want := time.Date(2025, 1, 15, 10, 30, 45, 123456000, time.UTC)
	for _, s := range []string{
		"2025-01-15T10:30:45.123456+00:00", "2025-01-15T10:30:45.123456Z", "2025-01-15T10:30:45.123456",
		"2025-01-15T10:30:45.1234569Z", "2025-01-15T05:30:45.123456-05:00",
	} {
		if got, err := necro.ParseTimestamp(s); err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTimestamp(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "2025-01-15", "10:30:45", "2025-01-15 10:30:45+00:00x", "now"} {
		if _, err := necro.ParseTimestamp(s); err == nil {
			t.Errorf("ParseTimestamp(%q) = nil error, want one", s)
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

func TestZeroEvent(t *testing.T) {
	var ev necro.Event
	if !ev.IsZero() || ev.ID() != "" || ev.Type() != "" || !ev.Timestamp().IsZero() || ev.Correlation() != "" {
		t.Errorf("zero Event: IsZero %v, ID %q, Type %q, Timestamp %v", ev.IsZero(), ev.ID(), ev.Type(), ev.Timestamp())
	}
	if p := ev.Payload(); p == nil || len(p) != 0 || string(ev.PayloadJSON()) != "{}" || ev.PayloadSize() != 2 {
		t.Errorf("zero Event payload: %#v %s %d", p, ev.PayloadJSON(), ev.PayloadSize())
	}
	if ev.Attempt() != 1 || ev.Depth() != 0 || ev.Meta().Attempt != 1 || !ev.IsFor("any") || !ev.IsForAll() {
		t.Errorf("zero Event meta: attempt %d, depth %d", ev.Attempt(), ev.Depth())
	}
	if _, err := ev.WithMeta(necro.Metadata{}); !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("Event{}.WithMeta() = %v, want ErrInvalidEvent", err)
	}
	if !ev.Equal(necro.Event{}) || ev.Equal(newEvent(t, "T", nil)) || newEvent(t, "T", nil).Equal(ev) {
		t.Error("zero Event compares Equal wrongly")
	}
	if ev.String() != "Event{}" {
		t.Errorf("String() = %q", ev.String())
	}
	var v map[string]any
	if err := ev.DecodePayload(&v); err != nil || len(v) != 0 {
		t.Errorf("DecodePayload() = %v, %v", v, err)
	}
}

func TestEventEqual(t *testing.T) {
	d := necro.Draft{ID: validID, Timestamp: fixedTime, Type: "T", Payload: map[string]any{"a": "<>", "b": json.Number("1")}}
	ev := build(t, d)
	same := []necro.Draft{
		d,
		{ID: strings.ToUpper(validID), Timestamp: fixedTime.In(time.FixedZone("", 3600)).Add(999), Type: " T ", Payload: d.Payload},
		{ID: validID, Timestamp: fixedTime, Type: "T", Payload: json.RawMessage(`{"b":1,"a":"\u003c\u003e"}`)},
		{ID: validID, Timestamp: fixedTime, Type: "T", Payload: d.Payload, Meta: necro.Metadata{Attempt: 1}},
	}
	for _, o := range same {
		if other := build(t, o); !ev.Equal(other) || !other.Equal(ev) {
			t.Errorf("%v (%s) not Equal to %v (%s)", ev, ev.PayloadJSON(), other, other.PayloadJSON())
		}
	}
	differ := []necro.Draft{
		{Timestamp: fixedTime, Type: "T", Payload: d.Payload},
		{ID: validID, Timestamp: fixedTime.Add(time.Microsecond), Type: "T", Payload: d.Payload},
		{ID: validID, Timestamp: fixedTime, Type: "U", Payload: d.Payload},
		{ID: validID, Timestamp: fixedTime, Type: "T", Payload: map[string]any{"a": "<>", "b": json.Number("2")}},
		{ID: validID, Timestamp: fixedTime, Type: "T", Payload: map[string]any{"a": "<>", "b": json.Number("1.0")}},
		{ID: validID, Timestamp: fixedTime, Type: "T", Payload: map[string]any{"a": "<>"}},
		{ID: validID, Timestamp: fixedTime, Type: "T", Payload: d.Payload, Meta: necro.Metadata{Attempt: 2}},
		{ID: validID, Timestamp: fixedTime, Type: "T", Payload: d.Payload, Meta: necro.Metadata{Targets: []string{"x"}}},
	}
	for _, o := range differ {
		if other := build(t, o); ev.Equal(other) || other.Equal(ev) {
			t.Errorf("%v (%s, %+v) Equal to %v (%s, %+v)", ev, ev.PayloadJSON(), ev.Meta(), other, other.PayloadJSON(), other.Meta())
		}
	}
}

func TestEventStringAndLogValueLeavePayloadOut(t *testing.T) {
	ev := build(t, necro.Draft{ID: validID, Type: "LOGIN", Payload: map[string]any{"password": "hunter2"}})
	if s := ev.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, validID) || !strings.Contains(s, "LOGIN") {
		t.Errorf("String() = %q, want id and type without the payload", s)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("got", slog.Any("event", ev))
	if out := buf.String(); strings.Contains(out, "hunter2") || !strings.Contains(out, "event.id="+validID) ||
		!strings.Contains(out, "event.type=LOGIN") || !strings.Contains(out, "event.payload_bytes=22") {
		t.Errorf("log line = %q, want id, type and payload_bytes=22 without the payload", out)
	}
}

// --- Metadata ---------------------------------------------------------------------------------

const otherID = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"

func TestEventWithMeta(t *testing.T) {
	root := build(t, necro.Draft{ID: validID, Timestamp: fixedTime, Type: "ROOT"})
	if root.Correlation() != validID || root.Attempt() != 1 || root.Depth() != 0 {
		t.Errorf("root: Correlation %s, Attempt %d, Depth %d; want its own id, 1, 0", root.Correlation(), root.Attempt(), root.Depth())
	}
	child, err := root.WithMeta(necro.Metadata{CorrelationID: strings.ToUpper(otherID), CausationID: validID,
		Depth: 3, Attempt: 2, Targets: []string{"billing"}, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	if err != nil {
		t.Fatal(err)
	}
	if child.Correlation() != otherID || child.Meta().CausationID != validID || child.Depth() != 3 || child.Attempt() != 2 {
		t.Errorf("WithMeta() meta = %+v", child.Meta())
	}
	if !child.IsFor("billing") || child.IsFor("audit") || child.IsForAll() || !root.IsFor("audit") || !root.IsForAll() {
		t.Error("IsFor(), IsForAll(): want only billing for the child, anyone for the root")
	}
	if child.ID() != root.ID() || child.Type() != root.Type() || !child.Timestamp().Equal(root.Timestamp()) || child.Equal(root) {
		t.Errorf("WithMeta() changed the body or kept the meta: %v vs %v", child, root)
	}
	if root.Meta().Attempt != 1 || root.Meta().Targets != nil {
		t.Errorf("WithMeta changed the original: %+v", root.Meta())
	}
	if data, _ := child.MarshalJSON(); bytes.Contains(data, []byte("billing")) || bytes.Contains(data, []byte(otherID)) {
		t.Errorf("MarshalJSON() = %s, want no metadata on the wire", data)
	}
}

func TestInvalidMetaRejected(t *testing.T) {
	ev := newEvent(t, "T", nil)
	tests := []struct {
		name  string
		meta  necro.Metadata
		field string
	}{
		{"bad correlation id", necro.Metadata{CorrelationID: "x"}, "correlation_id"},
		{"v1 causation id", necro.Metadata{CausationID: "550e8400-e29b-11d4-a716-446655440000"}, "causation_id"},
		{"negative depth", necro.Metadata{Depth: -1}, "depth"},
		{"negative attempt", necro.Metadata{Attempt: -2}, "attempt"},
		{"blank target", necro.Metadata{Targets: []string{"a", " "}}, "targets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ev.WithMeta(tt.meta)
			checkInvalid(t, err, tt.field)
			_, err = necro.Draft{Type: "T", Meta: tt.meta}.Build()
			checkInvalid(t, err, tt.field)
		})
	}
}

func TestMetadataJSONRoundTrip(t *testing.T) {
	tests := []struct {
		in       necro.Metadata
		wantJSON string
		want     necro.Metadata
	}{
		{necro.Metadata{}, `{}`, necro.Metadata{Attempt: 1}},
		{necro.Metadata{Attempt: 1}, `{"attempt":1}`, necro.Metadata{Attempt: 1}},
		{
			necro.Metadata{CorrelationID: validID, CausationID: otherID, Depth: 2, Attempt: 3, Targets: []string{"a", "b"},
				TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "k=v"},
			`{"correlation_id":"` + validID + `","causation_id":"` + otherID + `","depth":2,"attempt":3,"targets":["a","b"],` +
				`"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"k=v"}`,
			necro.Metadata{CorrelationID: validID, CausationID: otherID, Depth: 2, Attempt: 3, Targets: []string{"a", "b"},
				TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "k=v"},
		},
	}
	for _, tt := range tests {
		data, err := json.Marshal(tt.in)
		if err != nil || string(data) != tt.wantJSON {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tt.in, data, err, tt.wantJSON)
		}
		got, err := necro.DecodeMetadata(data)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("DecodeMetadata(%s) = %+v, %v; want %+v", data, got, err, tt.want)
		}
	}
}

func TestDecodeMetadataNormalizes(t *testing.T) {
	got, err := necro.DecodeMetadata([]byte(` {"correlation_id": "` + strings.ToUpper(validID) + `", "targets": [], "attempt": 0, "traceparent": null} `))
	want := necro.Metadata{CorrelationID: validID, Attempt: 1}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeMetadata() = %+v, %v; want %+v", got, err, want)
	}
}

func TestDecodeMetadataRejects(t *testing.T) {
	tests := []struct {
		name, data, field string
	}{
		{"unknown key", `{"depth":1,"foo":2}`, "foo"},
		{"key in another case", `{"Depth":1}`, "Depth"},
		{"event key", `{"id":"` + validID + `"}`, "id"},
		{"negative depth", `{"depth":-1}`, "depth"},
		{"negative attempt", `{"attempt":-1}`, "attempt"},
		{"bad correlation id", `{"correlation_id":"abc"}`, "correlation_id"},
		{"v7 causation id", `{"causation_id":"01890a5d-ac96-774b-bcce-b302099a8057"}`, "causation_id"},
		{"blank target", `{"targets":["a",""]}`, "targets"},
		{"depth string", `{"depth":"1"}`, "metadata"},
		{"depth float", `{"depth":1.5}`, "metadata"},
		{"depth too big", `{"depth":1e999}`, "metadata"},
		{"targets string", `{"targets":"a"}`, "metadata"},
		{"duplicate key", `{"depth":1,"depth":2}`, "depth"},
		{"array", `[]`, "metadata"},
		{"null", `null`, "metadata"},
		{"empty", ``, "metadata"},
		{"trailing garbage", `{} {}`, "metadata"},
		{"truncated", `{"depth":1`, "metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := necro.DecodeMetadata([]byte(tt.data))
			checkInvalid(t, err, tt.field, tt.field)
		})
	}
}

// --- Fuzz tests ------------------------------------------------------------------------------

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

func FuzzDecodeMetadata(f *testing.F) {
	f.Add([]byte(`{"correlation_id":"550e8400-e29b-41d4-a716-446655440000","causation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8","depth":2,"attempt":3,"targets":["a","b"],"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"k=v"}`))
	f.Add([]byte(`{"attempt": 1, "targets": []}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"depth":-1}`))
	f.Add([]byte(`{"depth":1`))
	f.Add([]byte(`{"Depth":1}`))
	f.Add([]byte{'['})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := necro.DecodeMetadata(data)
		if err != nil {
			if !errors.Is(err, necro.ErrInvalidEvent) {
				t.Fatalf("DecodeMetadata(%q) = %v, which does not match ErrInvalidEvent", data, err)
			}
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) = %v", m, err)
		}
		again, err := necro.DecodeMetadata(out)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip turned %q into %s: %+v, %v; want %+v", data, out, again, err, m)
		}
		if _, err := newEvent(t, "T", nil).WithMeta(m); err != nil {
			t.Fatalf("WithMeta(%+v) = %v for metadata DecodeMetadata accepted", m, err)
		}
	})
}

func FuzzNewEventRawPayload(f *testing.F) {
	f.Add([]byte(`{"order_id":"12345","amount":99.99}`))
	f.Add([]byte(`{ "a" : [1, 2.0, {"b": "\u00e9"}] }`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"a":`))
	f.Add([]byte(`[]`))
	f.Add([]byte{'"'})
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := necro.NewEvent("T", json.RawMessage(raw))
		if err != nil {
			if !errors.Is(err, necro.ErrInvalidEvent) {
				t.Fatalf("NewEvent(%q) = %v, which does not match ErrInvalidEvent", raw, err)
			}
			return
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil || !bytes.Equal(compact.Bytes(), ev.PayloadJSON()) {
			t.Fatalf("PayloadJSON() = %s, want json.Compact(%q) = %s (%v)", ev.PayloadJSON(), raw, compact.Bytes(), err)
		}
		data, _ := ev.MarshalJSON()
		if again, err := necro.DecodeEvent(data); err != nil || !again.Equal(ev) {
			t.Fatalf("round trip turned %s into %v, %v", data, again, err)
		}
	})
}

// --- Benchmarks ------------------------------------------------------------------------------

// benchPayload is a typical small payload: about 100 bytes of JSON.
var benchPayload = map[string]any{
	"order_id": "ord-2025-000123", "customer": "c-98765", "amount": 129.95,
	"currency": "EUR", "items": []any{"sku-1", "sku-2", "sku-3"},
}

func BenchmarkNewEvent(b *testing.B) {
	raw, err := json.Marshal(benchPayload)
	if err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name    string
		payload any
	}{
		{"nil", nil},
		{"map", benchPayload},
		{fmt.Sprintf("raw%dB", len(raw)), json.RawMessage(raw)},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := necro.NewEvent("ORDER_PLACED", bm.payload); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
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
