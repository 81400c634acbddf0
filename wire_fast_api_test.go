package necro_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/necrostack/necro"
)

func TestDecodeEntry(t *testing.T) {
	event := wire(validID, "2025-01-15T10:30:45.123456+00:00", "ORDER_PLACED", `{"order_id":"12345"}`)
	root, err := necro.DecodeEvent(event)
	if err != nil {
		t.Fatal(err)
	}
	for _, meta := range [][]byte{nil, {}} {
		got, err := necro.DecodeEntry(event, meta)
		if err != nil || !got.Equal(root) || !reflect.DeepEqual(got.Meta(), necro.Metadata{Attempt: 1}) || got.Correlation() != validID {
			t.Errorf("DecodeEntry(event, %q) = %v %+v, %v; want the root %v", meta, got, got.Meta(), err, root)
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
		got, err := necro.DecodeEntry(event, []byte(meta))
		if err != nil || !got.Equal(want) {
			t.Errorf("DecodeEntry(event, %s) = %v %+v, %v; want %v %+v", meta, got, got.Meta(), err, want, want.Meta())
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
			ev, err := necro.DecodeEntry([]byte(tt.event), []byte(tt.meta))
			if !ev.IsZero() {
				t.Errorf("DecodeEntry(%s, %s) = %v, want the zero Event", tt.event, tt.meta, ev)
			}
			checkInvalid(t, err, tt.field)
			if err != nil && strings.HasPrefix(err.Error(), "meta: ") != tt.metaError {
				t.Errorf("DecodeEntry(%s, %s) = %q; want the prefix \"meta: \" %v", tt.event, tt.meta, err, tt.metaError)
			}
		})
	}
}

func TestDecodeEntryDoesNotKeepInput(t *testing.T) {
	event := wire(validID, "2025-01-15T10:30:45.123456+00:00", "TEST", `{"a":"b"}`)
	meta := necro.Metadata{CorrelationID: otherID, CausationID: validID, Depth: 1, Targets: []string{"billing"},
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "k=v"}.AppendJSON(nil)
	ev, err := necro.DecodeEntry(event, meta)
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

func ExampleDecodeEntry() {
	// The two fields of an entry the Redis backend wrote for a retried child event.
	event := []byte(`{"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"2025-01-15T10:30:45.123456+00:00",` +
		`"event_type":"ORDER_PLACED","payload":{"order_id":"12345"}}`)
	meta := []byte(`{"correlation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8","causation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8",` +
		`"depth":1,"attempt":2,"targets":["billing"]}`)
	ev, err := necro.DecodeEntry(event, meta)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Type(), ev.Correlation(), ev.Depth(), ev.Attempt(), ev.IsFor("billing"), ev.IsFor("audit"))

	// An entry without metadata holds a root event.
	root, _ := necro.DecodeEntry(event, nil)
	fmt.Println(root.Correlation() == root.ID(), root.Depth(), root.Attempt())

	_, err = necro.DecodeEntry(event, []byte(`{"depth":-1}`))
	fmt.Println(errors.Is(err, necro.ErrInvalidEvent), err)
	// Output:
	// ORDER_PLACED 6ba7b810-9dad-41d1-80b4-00c04fd430c8 1 2 true false
	// true 0 1
	// true meta: necro: invalid event: depth: must not be negative, got -1
}

func ExampleMetadata_AppendJSON() {
	m := necro.Metadata{CorrelationID: "550e8400-e29b-41d4-a716-446655440000", CausationID: "6ba7b810-9dad-41d1-80b4-00c04fd430c8",
		Depth: 1, Attempt: 1, TraceState: "vendor=<x>"}
	b := m.AppendJSON(nil)
	fmt.Println(string(b))
	viaMarshal, _ := json.Marshal(m)
	fmt.Println(string(viaMarshal) == string(b))
	back, err := necro.DecodeMetadata(b)
	fmt.Println(back.Depth, back.TraceState, err)
	// Output:
	// {"correlation_id":"550e8400-e29b-41d4-a716-446655440000","causation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8","depth":1,"attempt":1,"tracestate":"vendor=\u003cx\u003e"}
	// true
	// 1 vendor=<x> <nil>
}

// wireBenchMeta is the metadata of a child event as the Spine stamps it, traced.
var wireBenchMeta = necro.Metadata{CorrelationID: validID, CausationID: otherID, Depth: 2, Attempt: 1,
	TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

func BenchmarkDecodeEntry(b *testing.B) {
	_, event, _ := wireBenchEvent(b)
	for _, bm := range []struct {
		name string
		meta []byte
	}{
		{"root", nil},
		{"child", wireBenchMeta.AppendJSON(nil)},
		{"retry", necro.Metadata{CorrelationID: validID, CausationID: otherID, Depth: 2, Attempt: 3,
			Targets: []string{"billing", "audit"}}.AppendJSON(nil)},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(event) + len(bm.meta)))
			for b.Loop() {
				if _, err := necro.DecodeEntry(event, bm.meta); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func BenchmarkMetadataAppendJSON(b *testing.B) {
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = wireBenchMeta.AppendJSON(buf[:0])
		}
	})
	b.Run("MarshalJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wireBenchMeta.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
