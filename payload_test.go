package necro_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/necrostack/necro"
)

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
