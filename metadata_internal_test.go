package necro

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// anyString draws any string, valid UTF-8 or not, leaning towards the characters
// json.Marshal escapes.
var anyString = rapid.OneOf(
	rapid.String(),
	rapid.StringOf(rapid.SampledFrom([]rune("aé\"\\<>&\b\f\n\r\t\x00\x1f\x7f\u2028\u2029\ufffd🔥"))),
	rapid.Map(rapid.SliceOf(rapid.Byte()), func(b []byte) string { return string(b) }),
)

func TestMetadataAppendJSONMatchesMarshal(t *testing.T) {
	type plain Metadata // encoding/json's own encoding, which MarshalJSON used to return
	rapid.Check(t, func(rt *rapid.T) {
		m := Metadata{
			CorrelationID: anyString.Draw(rt, "correlation"),
			CausationID:   anyString.Draw(rt, "causation"),
			Depth:         rapid.OneOf(rapid.Just(0), rapid.Int()).Draw(rt, "depth"),
			Attempt:       rapid.OneOf(rapid.Just(0), rapid.Just(1), rapid.Int()).Draw(rt, "attempt"),
			TraceParent:   anyString.Draw(rt, "traceparent"),
			TraceState:    anyString.Draw(rt, "tracestate"),
		}
		switch rapid.IntRange(0, 2).Draw(rt, "targets kind") {
		case 1:
			m.Targets = []string{}
		case 2:
			m.Targets = rapid.SliceOfN(anyString, 1, 4).Draw(rt, "targets")
		}
		want, err := json.Marshal(plain(m))
		if err != nil {
			rt.Fatal(err)
		}
		if got := m.AppendJSON([]byte("x")); string(got) != "x"+string(want) {
			rt.Fatalf("AppendJSON(x) of %#v =\n%s\nwant\nx%s", m, got, want)
		}
		if got, err := m.MarshalJSON(); err != nil || !bytes.Equal(got, want) {
			rt.Fatalf("MarshalJSON() of %#v = %s, %v; want %s", m, got, err, want)
		}
		if got, err := json.Marshal(m); err != nil || !bytes.Equal(got, want) {
			rt.Fatalf("json.Marshal(%#v) = %s, %v; want %s", m, got, err, want)
		}
	})
}

func TestMetadataAppendJSONRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := validMetadata(rt)
		want, err := cleanMeta(m)
		if err != nil {
			rt.Fatalf("cleanMeta(%+v) = %v", m, err)
		}
		data := m.AppendJSON(nil)
		if got, err := DecodeMetadata(data); err != nil || !reflect.DeepEqual(got, want) {
			rt.Fatalf("DecodeMetadata(%s) = %+v, %v; want %+v", data, got, err, want)
		}
		if got, err := decodeMetadataGeneral(data); err != nil || !reflect.DeepEqual(got, want) {
			rt.Fatalf("decodeMetadataGeneral(%s) = %+v, %v; want %+v", data, got, err, want)
		}
	})
}
