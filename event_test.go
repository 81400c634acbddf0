package necro_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/necrostack/necro"
)

const validID = "550e8400-e29b-41d4-a716-446655440000"

const otherID = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"

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

func TestZeroEvent(t *testing.T) {
	var ev necro.Event
	if !ev.IsZero() || ev.ID() != "" || ev.Type() != "" || !ev.Timestamp().IsZero() || ev.Correlation() != "" {
		t.Errorf("zero Event: IsZero %v, ID %q, Type %q, Timestamp %v", ev.IsZero(), ev.ID(), ev.Type(), ev.Timestamp())
	}
	if p := ev.Payload(); p == nil || len(p) != 0 || string(ev.PayloadJSON()) != "{}" || ev.PayloadSize() != 2 {
		t.Errorf("zero Event payload: %#v %s %d", p, ev.PayloadJSON(), ev.PayloadSize())
	}
	if ev.Attempt() != 1 || ev.Depth() != 0 || ev.Meta().Attempt != 1 || !ev.IsFor("any") {
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
