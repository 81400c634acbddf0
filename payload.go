package necro

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// MaxPayloadBytes bounds an event's payload. The measure is the length in bytes of the
// payload's compact JSON text as the event stores and sends it: UTF-8, no whitespace
// between tokens, non-ASCII characters as raw UTF-8 (a 🔥 counts 4 bytes), and the
// escapes the text already had kept as written.
const MaxPayloadBytes = 1_000_000

// maxPayloadDepth bounds how deep a payload may nest arrays and objects. Readers of the
// wire cannot go much deeper: encoding/json stops at 10,000 levels (the event's own
// object and any envelope around it included) and Python's json module at its
// recursion limit, near 1,000 by default.
const maxPayloadDepth = 1000

// Payload returns a fresh copy of the payload, decoded with numbers as json.Number so
// that no digit is lost. Changing the map changes nothing in the event.
func (ev Event) Payload() map[string]any {
	m := map[string]any{}
	if ev.e == nil {
		return m
	}
	_ = decodeNumbers(ev.e.payload, &m) // cannot fail: the payload was validated when the event was built
	return m
}

// PayloadJSON returns a copy of the payload's compact JSON text.
func (ev Event) PayloadJSON() json.RawMessage {
	if ev.e == nil {
		return json.RawMessage("{}")
	}
	return bytes.Clone(ev.e.payload)
}

// PayloadSize returns the payload's size as [MaxPayloadBytes] measures it.
func (ev Event) PayloadSize() int {
	if ev.e == nil {
		return 2
	}
	return len(ev.e.payload)
}

// DecodePayload unmarshals the payload into v, as json.Unmarshal does.
func (ev Event) DecodePayload(v any) error {
	if ev.e == nil {
		return json.Unmarshal([]byte("{}"), v)
	}
	return json.Unmarshal(ev.e.payload, v)
}

// samePayload reports whether two payload texts hold the same JSON values.
func samePayload(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	// Slow path, for texts written differently: json.Marshal escapes <, > and & in the
	// payload of an Event it encodes, and Python escapes every non-ASCII character.
	var x, y any
	return decodeNumbers(a, &x) == nil && decodeNumbers(b, &y) == nil && reflect.DeepEqual(x, y)
}

// decodeNumbers unmarshals data into v as json.Unmarshal does, but with numbers as
// json.Number, so that no digit is lost.
func decodeNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// encodePayload turns a Draft's payload into compact, validated JSON-object text that
// no caller shares.
func encodePayload(p any) ([]byte, error) {
	switch v := p.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		if v == nil {
			return []byte("{}"), nil
		}
		out, err := checkPayload(v)
		if err == nil && len(v) > 0 && &out[0] == &v[0] {
			out = bytes.Clone(out) // the caller keeps v; the event must not share it
		}
		return out, err
	case map[string]any:
		if v == nil {
			return []byte("{}"), nil
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, &ValidationError{Field: "payload", Reason: "is not JSON-serializable", Err: err}
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(out) == 0 || out[0] != '{' {
		if string(out) == "null" {
			return []byte("{}"), nil
		}
		return nil, invalid("payload", fmt.Sprintf("must be a JSON object, got %s", jsonKind(out)))
	}
	if len(out) > MaxPayloadBytes {
		return nil, tooLarge(len(out))
	}
	// Nesting n levels deep takes 2n bytes, so only longer texts need the depth check.
	if len(out) > 2*maxPayloadDepth {
		if _, err := scanJSON(out, maxPayloadDepth); err != nil {
			return nil, payloadSyntax(err)
		}
	}
	return out, nil
}

func payloadSyntax(err error) error {
	if _, deep := err.(*depthError); deep {
		return &ValidationError{Field: "payload", Reason: "is nested too deep", Err: err}
	}
	return &ValidationError{Field: "payload", Reason: "is not valid JSON", Err: err}
}

// checkPayload validates raw JSON text as a payload and returns it compact. It returns
// raw itself when raw is already compact.
func checkPayload(raw []byte) ([]byte, error) {
	spaced, err := scanJSON(raw, maxPayloadDepth)
	if err != nil {
		return nil, payloadSyntax(err)
	}
	if raw[firstNonSpace(raw)] != '{' {
		return nil, invalid("payload", fmt.Sprintf("must be a JSON object, got %s", jsonKind(raw[firstNonSpace(raw):])))
	}
	out := raw
	if spaced {
		var buf bytes.Buffer
		buf.Grow(len(raw))
		_ = json.Compact(&buf, raw) // cannot fail: scanJSON accepted raw
		out = buf.Bytes()
	}
	if len(out) > MaxPayloadBytes {
		return nil, tooLarge(len(out))
	}
	return out, nil
}

func tooLarge(n int) error {
	return invalid("payload", fmt.Sprintf("%d bytes exceeds maximum size of %d bytes (compact JSON, UTF-8)", n, MaxPayloadBytes))
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if !isSpace(c) {
			return i
		}
	}
	return 0
}

func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
