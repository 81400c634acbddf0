package necro_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/necrostack/necro"
)

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
	if !child.IsFor("billing") || child.IsFor("audit") || !root.IsFor("audit") {
		t.Error("IsFor(): want only billing for the child, anyone for the root")
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

// benchMeta is the metadata of a child event as the Spine stamps it, traced.
var benchMeta = necro.Metadata{CorrelationID: validID, CausationID: otherID, Depth: 2, Attempt: 1,
	TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

func BenchmarkMetadataAppendJSON(b *testing.B) {
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = benchMeta.AppendJSON(buf[:0])
		}
	})
	b.Run("MarshalJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := benchMeta.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
