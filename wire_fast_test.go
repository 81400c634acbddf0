package necro

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

const (
	fastID    = "550e8400-e29b-41d4-a716-446655440000"
	fastOther = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
	fastTS    = "2025-01-15T10:30:45.123456+00:00"
)

// sameEvent reports whether a and b hold exactly the same parts: the same id, type and
// payload text, the same time.Time value and the same metadata. It is stricter than
// Equal, which lets payloads differ in escapes.
func sameEvent(a, b Event) bool {
	if a.e == nil || b.e == nil {
		return a.e == b.e
	}
	return a.e.id == b.e.id && a.e.ts == b.e.ts && a.e.typ == b.e.typ &&
		bytes.Equal(a.e.payload, b.e.payload) && reflect.DeepEqual(a.e.meta, b.e.meta)
}

// fatalT is what the checks below need of a *testing.T or a *rapid.T.
type fatalT interface {
	Helper()
	Fatalf(format string, args ...any)
}

// sameResult fails unless two decodings gave the same event, or the same error text.
func sameResult(t fatalT, what string, data any, got Event, gotErr error, want Event, wantErr error) {
	t.Helper()
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("%s(%q) = %v, %v; the general decoder gives %v, %v", what, data, got, gotErr, want, wantErr)
	case gotErr != nil && gotErr.Error() != wantErr.Error():
		t.Fatalf("%s(%q) error = %q; the general decoder's is %q", what, data, gotErr, wantErr)
	case !sameEvent(got, want):
		t.Fatalf("%s(%q) = %s %v %q %s %+v; the general decoder gives %s %v %q %s %+v", what, data,
			got.ID(), got.Timestamp(), got.Type(), got.PayloadJSON(), got.Meta(),
			want.ID(), want.Timestamp(), want.Type(), want.PayloadJSON(), want.Meta())
	}
}

// pythonSpaced rewrites compact JSON text with the separators Python's json.dumps
// writes by default: a space after every comma and colon between tokens.
func pythonSpaced(compact []byte) []byte {
	var out []byte
	for i := 0; i < len(compact); i++ {
		c := compact[i]
		if c == '"' {
			end, _ := scanString(compact, i)
			out = append(out, compact[i:end]...)
			i = end - 1
			continue
		}
		out = append(out, c)
		if c == ',' || c == ':' {
			out = append(out, ' ')
		}
	}
	return out
}

// wireFastSeeds are event texts for the fuzz targets: the shapes the fast path takes,
// and near misses it must hand to the general decoder.
var wireFastSeeds = []string{
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"ORDER_PLACED","payload":{"order_id":"ord-000123","customer":"alice","amount":149.5,"currency":"EUR","items":3,"note":"x"}}`,
	`{"id": "` + fastID + `", "timestamp": "` + fastTS + `", "event_type": "ORDER_PLACED", "payload": {"order_id": "12345", "amount": 99.99}}`,
	`{"payload":{"a":[1,{"b":null}]},"event_type":"  T\u0085","timestamp":"2025-01-15T10:30:45Z","id":"550E8400-E29B-41D4-A716-446655440000"}`,
	`{"id":"` + fastID + `","timestamp":"2025-01-15T10:30:45","event_type":"T"}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":null}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":{"x":NaN}}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":{},"payload":{}}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":{}} x`,
	`{"id":"` + fastID + `","timestamp":"0000-01-01T00:00:00.000000+00:00","event_type":"T","payload":{}}`,
	`{"id":"` + fastID + `","timestamp":"2024-02-30T00:00:00.000000+00:00","event_type":"T","payload":{}}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":" ","payload":{}}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"a\"b","payload":{}}`,
	`{"\u0069d":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":{}}`,
	`{"id":"550e8400-e29b-11d4-a716-446655440000","timestamp":"` + fastTS + `","event_type":"T","payload":{}}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":{ "a" : [ 1 , 2 ] }}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":" ` + strings.Repeat("T", 255) + ` ","payload":{}}`,
	`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"` + strings.Repeat("T", 256) + `","payload":{}}`,
	`{}`, `{`, `[]`, "\xff", ``,
}

func FuzzDecodeEventFast(f *testing.F) {
	for _, s := range wireFastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeEventFast(t, data)
	})
}

// checkDecodeEventFast fails unless decodeEventFast and DecodeEvent agree with the
// general decoder about data, and the fast path takes the event's wire forms.
func checkDecodeEventFast(t fatalT, data []byte) {
	t.Helper()
	want, wantErr := decodeEventGeneral(data)
	if got, ok := decodeEventFast(data); ok {
		sameResult(t, "decodeEventFast", data, got, nil, want, wantErr)
	}
	got, err := DecodeEvent(data)
	sameResult(t, "DecodeEvent", data, got, err, want, wantErr)
	if wantErr != nil {
		return
	}
	// The fast path must take what necro and Python write for this event, unless the
	// type needs escapes, and decode it as the general decoder does.
	compact := want.AppendJSON(nil)
	python := pythonSpaced(compact)
	plainType := bytes.Equal(appendJSONString(nil, want.Type()), append(append([]byte{'"'}, want.Type()...), '"'))
	for _, text := range [][]byte{compact, python} {
		again, ok := decodeEventFast(text)
		if !ok && plainType {
			t.Fatalf("decodeEventFast(%q) reported false for an event the general decoder accepts", text)
		}
		if ok {
			reread, err := decodeEventGeneral(text)
			sameResult(t, "decodeEventFast", text, again, nil, reread, err)
			if !sameEvent(again, want) {
				t.Fatalf("decodeEventFast(%q) = %v, want %v decoded from %q", text, again, want, data)
			}
		}
	}
}

// TestDecodeEventFastMatchesGeneral runs the differential check of FuzzDecodeEventFast
// on events drawn near the shapes the fast path takes: keys in any order, missing or
// repeated, white space anywhere, ids, times and types good and bad, any JSON payload.
func TestDecodeEventFastMatchesGeneral(t *testing.T) {
	ws := rapid.SampledFrom([]string{"", "", "", " ", "\n  ", "\t", "\r\n"})
	goodID := rapid.StringMatching(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}`)
	id := rapid.OneOf(goodID, goodID, goodID, rapid.StringMatching(`[0-9a-gA-G-]{34,37}`))
	goodTS := rapid.StringMatching(`[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}\+00:00`)
	ts := rapid.OneOf(goodTS, goodTS,
		rapid.StringMatching(`[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?`))
	typ := rapid.OneOf(rapid.StringMatching(`[A-Za-z_.]{1,12}`), rapid.StringMatching(`[A-Za-z_.]{1,12}`), rapid.String(),
		rapid.StringOf(rapid.SampledFrom([]rune(" \t\x1c\u0085\u00a0aZ\"\\<é"))),
		rapid.StringMatching(` ?[a-zé]{126,256} ?`)) // about the length limit, in bytes or characters
	rapid.Check(t, func(rt *rapid.T) {
		value := map[string]string{
			"id":         quoteJSON(id.Draw(rt, "id")),
			"timestamp":  quoteJSON(ts.Draw(rt, "timestamp")),
			"event_type": quoteJSON(typ.Draw(rt, "type")),
			"payload":    genJSON(rt, 3),
		}
		if rapid.IntRange(0, 3).Draw(rt, "payload kind") > 0 {
			value["payload"] = "{" + ws.Draw(rt, "ws") + `"k"` + ws.Draw(rt, "ws") + ":" + genJSON(rt, 3) + "}"
		}
		// Mostly the keys an event has; now and then one missing, unknown or repeated.
		keys := rapid.Permutation([]string{"id", "timestamp", "event_type", "payload"}).Draw(rt, "keys")
		switch rapid.IntRange(0, 9).Draw(rt, "keys kind") {
		case 0:
			keys = keys[1:]
		case 1:
			keys = append(keys, "extra")
		case 2:
			keys = append(keys, keys[0])
		case 3, 4:
			keys = slices.DeleteFunc(keys, func(k string) bool { return k == "payload" })
		}
		var b strings.Builder
		b.WriteString(ws.Draw(rt, "ws") + "{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(ws.Draw(rt, "ws") + ",")
			}
			v, ok := value[k]
			if !ok {
				v = "1"
			}
			b.WriteString(ws.Draw(rt, "ws") + quoteJSON(k) + ws.Draw(rt, "ws") + ":" + ws.Draw(rt, "ws") + v)
		}
		b.WriteString(ws.Draw(rt, "ws") + "}" + ws.Draw(rt, "ws"))
		checkDecodeEventFast(rt, []byte(b.String()))
	})
}

// quoteJSON returns s as a JSON string, with the escapes json.Marshal writes.
func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func FuzzDecodeWithMeta(f *testing.F) {
	metas := []string{
		``,
		`{"correlation_id":"` + fastID + `","causation_id":"` + fastOther + `","depth":2,"attempt":3,"targets":["a","b"],"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"k=v"}`,
		`{"attempt":1}`,
		`{}`,
		`{ "depth" : 1 , "targets" : [ ] }`,
		`{"depth":-1}`,
		`{"depth":1.0}`,
		`{"attempt":01}`,
		`{"depth":1234567890123456789}`,
		`{"targets":["a",""]}`,
		`{"targets":["a",null]}`,
		`{"traceparent":null}`,
		`{"correlation_id":"ABC"}`,
		`{"Depth":1}`,
		`{"depth":1,"depth":1}`,
		`{"tracestate":"\u00e9"}`,
		`[`,
	}
	for i, s := range wireFastSeeds {
		f.Add([]byte(s), []byte(metas[i%len(metas)]))
	}
	for _, m := range metas {
		f.Add([]byte(wireFastSeeds[0]), []byte(m))
	}
	f.Fuzz(func(t *testing.T, data, meta []byte) {
		// The metadata's fast path, against the general decoder.
		if len(meta) > 0 {
			want, wantErr := decodeMetadataGeneral(meta)
			if m, ok := parseMetadataFast(meta); ok {
				got, err := cleanMeta(m)
				if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() || !reflect.DeepEqual(got, want) {
					t.Fatalf("parseMetadataFast(%q) then cleanMeta = %+v, %v; the general decoder gives %+v, %v", meta, got, err, want, wantErr)
				}
			}
		}

		// DecodeWithMeta, against the general decoders and WithMeta.
		want, wantErr := decodeEventGeneral(data)
		if wantErr == nil && len(meta) > 0 {
			m, err := decodeMetadataGeneral(meta)
			if err != nil {
				want, wantErr = Event{}, errors.New("meta: "+err.Error())
			} else if want, wantErr = want.WithMeta(m); wantErr != nil {
				t.Fatalf("WithMeta(%+v) = %v for metadata decodeMetadataGeneral accepted", m, wantErr)
			}
		}
		got, err := DecodeWithMeta(data, meta)
		sameResult(t, "DecodeWithMeta", [2]string{string(data), string(meta)}, got, err, want, wantErr)
		if err != nil {
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("DecodeWithMeta(%q, %q) = %v, which does not match ErrInvalidEvent", data, meta, err)
			}
			return
		}
		// What the Redis backend writes back must decode to the same event.
		m := got.Meta()
		again, err := DecodeWithMeta(got.AppendJSON(nil), m.AppendJSON(nil))
		if err != nil || !sameEvent(again, got) {
			t.Fatalf("round trip of %v (%+v) gave %v (%+v), %v", got, m, again, again.Meta(), err)
		}
	})
}

func TestDecodeEventFastTakesWireShapes(t *testing.T) {
	ev, err := Draft{ID: fastID, Type: "ORDER_PLACED", Timestamp: time.Date(2025, 1, 15, 10, 30, 45, 123456000, time.UTC),
		Payload: json.RawMessage(`{"order_id":"ord-000123","amount":149.5,"items":[1,2],"note":"caf\u00e9 <&>"}`)}.Build()
	if err != nil {
		t.Fatal(err)
	}
	compact := ev.AppendJSON(nil)
	for _, data := range [][]byte{
		compact,
		pythonSpaced(compact),
		[]byte(strings.ReplaceAll(string(pythonSpaced(compact)), ": ", ":\n\t ")),
		[]byte(` {"payload":{"order_id":"ord-000123","amount":149.5,"items":[1,2],"note":"caf\u00e9 <&>"},"event_type":" ORDER_PLACED ",` +
			`"id":"550E8400-E29B-41D4-A716-446655440000","timestamp":"2025-01-15T10:30:45.123456Z"} `),
	} {
		got, ok := decodeEventFast(data)
		if !ok || !sameEvent(got, ev) {
			t.Errorf("decodeEventFast(%s) = %v, %v; want %v", data, got, ok, ev)
		}
	}
	for _, data := range []string{
		`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"caf\u00e9","payload":{}}`,
		`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":{},"extra":1}`,
		`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":[]}`,
		`{"id":"` + fastID + `","timestamp":"` + fastTS + `","payload":{}}`,
		`{"\u0069d":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T"}`,
		`{"id":"` + fastID + `","timestamp":"` + fastTS + `","event_type":"T","payload":{"n":NaN}}`,
	} {
		if got, ok := decodeEventFast([]byte(data)); ok {
			t.Errorf("decodeEventFast(%s) = %v, want false: the general decoder handles it", data, got)
		}
	}
}

func TestDecodeEventFastAllocs(t *testing.T) {
	data := []byte(wireFastSeeds[0])
	if _, ok := decodeEventFast(data); !ok {
		t.Fatalf("decodeEventFast(%s) reported false", data)
	}
	// The event, its id and type, and its payload.
	if allocs := testing.AllocsPerRun(100, func() { _, _ = DecodeEvent(data) }); allocs > 3 {
		t.Errorf("DecodeEvent(%s) allocates %v times, want at most 3", data, allocs)
	}
}

func TestParseMetadataFastTakesAppendJSON(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := validMetadata(rt)
		data := m.AppendJSON(nil)
		got, ok := parseMetadataFast(data)
		if !ok {
			rt.Fatalf("parseMetadataFast(%s) reported false", data)
		}
		clean, err := cleanMeta(got)
		want, _ := cleanMeta(m)
		if err != nil || !reflect.DeepEqual(clean, want) {
			rt.Fatalf("parseMetadataFast(%s) = %+v, %v; want %+v", data, clean, err, want)
		}
		if spaced := pythonSpaced(data); !bytes.Equal(spaced, data) {
			if again, ok := parseMetadataFast(spaced); !ok || !reflect.DeepEqual(again, got) {
				rt.Fatalf("parseMetadataFast(%s) = %+v, %v; want %+v", spaced, again, ok, got)
			}
		}
	})
}

// validMetadata draws metadata that cleanMeta accepts, in the forms the Spine stamps.
func validMetadata(rt *rapid.T) Metadata {
	id := rapid.StringMatching(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}`)
	var m Metadata
	if rapid.Bool().Draw(rt, "child") {
		m.CorrelationID, m.CausationID = id.Draw(rt, "correlation"), id.Draw(rt, "causation")
		m.Depth = rapid.IntRange(1, math.MaxInt32).Draw(rt, "depth")
	}
	m.Attempt = rapid.IntRange(0, 1000).Draw(rt, "attempt")
	m.Targets = rapid.SliceOfN(rapid.StringMatching(`[a-z][a-z0-9_.-]{0,15}`), 0, 4).Draw(rt, "targets")
	if rapid.Bool().Draw(rt, "traced") {
		m.TraceParent = rapid.StringMatching(`00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]`).Draw(rt, "traceparent")
		m.TraceState = rapid.StringMatching(`([a-z]{1,8}=[a-z0-9]{1,8}(,[a-z]{1,8}=[a-z0-9]{1,8}){0,2})?`).Draw(rt, "tracestate")
	}
	return m
}

// TestParseMetadataFastMatchesGeneral checks parseMetadataFast against the general
// decoder on metadata drawn near the shape it takes, as FuzzDecodeWithMeta does.
func TestParseMetadataFastMatchesGeneral(t *testing.T) {
	ws := rapid.SampledFrom([]string{"", "", "", " ", "\n  ", "\t"})
	id := rapid.StringMatching(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	number := rapid.StringMatching(`-?(0|[1-9][0-9]{0,19})(\.[0-9])?([eE][0-9])?|0[0-9]`)
	word := rapid.StringMatching(`[ a-z0-9=,<&\\é-]{0,12}`)
	rapid.Check(t, func(rt *rapid.T) {
		value := func(key string) string {
			switch rapid.IntRange(0, 9).Draw(rt, "value kind") {
			case 0:
				return "null"
			case 1:
				return genJSON(rt, 2)
			}
			switch key {
			case "correlation_id", "causation_id":
				return quoteJSON(id.Draw(rt, key))
			case "depth", "attempt":
				return number.Draw(rt, key)
			case "targets":
				parts := rapid.SliceOfN(word, 0, 3).Draw(rt, key)
				for i, p := range parts {
					parts[i] = ws.Draw(rt, "ws") + quoteJSON(p) + ws.Draw(rt, "ws")
				}
				return "[" + strings.Join(parts, ",") + "]"
			}
			return quoteJSON(word.Draw(rt, key))
		}
		keys := rapid.Permutation([]string{"correlation_id", "causation_id", "depth", "attempt", "targets", "traceparent", "tracestate"}).Draw(rt, "keys")
		keys = keys[:rapid.IntRange(0, len(keys)).Draw(rt, "key count")]
		switch rapid.IntRange(0, 9).Draw(rt, "keys kind") {
		case 0:
			keys = append(keys, "Depth")
		case 1:
			if len(keys) > 0 {
				keys = append(keys, keys[0])
			}
		}
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = ws.Draw(rt, "ws") + quoteJSON(k) + ws.Draw(rt, "ws") + ":" + ws.Draw(rt, "ws") + value(k) + ws.Draw(rt, "ws")
		}
		data := []byte(ws.Draw(rt, "ws") + "{" + strings.Join(parts, ",") + "}" + ws.Draw(rt, "ws"))
		want, wantErr := decodeMetadataGeneral(data)
		if m, ok := parseMetadataFast(data); ok {
			got, err := cleanMeta(m)
			if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() || !reflect.DeepEqual(got, want) {
				rt.Fatalf("parseMetadataFast(%s) then cleanMeta = %+v, %v; the general decoder gives %+v, %v", data, got, err, want, wantErr)
			}
		}
		got, err := DecodeMetadata(data)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() || !reflect.DeepEqual(got, want) {
			rt.Fatalf("DecodeMetadata(%s) = %+v, %v; the general decoder gives %+v, %v", data, got, err, want, wantErr)
		}
	})
}
