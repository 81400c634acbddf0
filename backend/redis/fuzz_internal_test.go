package redis

import (
	"strings"
	"testing"
)

// FuzzDecodeEntry feeds arbitrary event and meta fields to decodeEntry, the decoder of
// every stream entry read from Redis. Rejecting input is fine, panicking is not; an
// entry it accepts must come back equal after the store writes it again.
func FuzzDecodeEntry(f *testing.F) {
	const python = `{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "ORDER_PLACED", "payload": {"order_id": "12345", "amount": 99.99}}`
	seeds := []struct{ event, meta string }{
		{python, ""},
		{`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "GREETING", "payload": {"name": "Jos\u00e9", "mood": "\ud83d\udd25", "tags": ["caf\u00e9", 1, 2.5, true, null]}}`, ""},
		{`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45+00:00", "event_type": "TICK", "payload": {}}`, ""},
		{`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T16:00:45.123456+05:30", "event_type": "TICK", "payload": {}}`, ""},
		{`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456", "event_type": "TICK", "payload": {}}`, ""},
		{`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "PING"}`, ""},
		{`{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "M", "payload": {"a": 3.0, "b": 1e+20, "n": 123456789012345678901234567890}}`, ""},
		{`{"id":"550e8400-e29b-41d4-a716-446655440000","timestamp":"2025-01-15T10:30:45.123456+00:00","event_type":"CHILD","payload":{"x":"<&>"}}`,
			`{"correlation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8","causation_id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8","depth":1,"attempt":2,"targets":["Organ"],"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`},
		{python, `{"attempt":1}`},
		{python, `{}`},
		{python, `{"depth": `},
		{strings.Replace(python, `"12345"`, "NaN", 1), ""},
		{strings.Replace(python, `{"order_id": "12345", "amount": 99.99}`, "null", 1), ""},
		{strings.Replace(python, `"payload"`, `"trace_id": "abc", "payload"`, 1), ""},
		{"[1, 2]", ""},
		{"{}", "{}"},
		{python[:60], ""},
		{strings.Replace(python, "ORDER_PLACED", strings.Repeat("T", 256), 1), ""},
		{"\xff", "\x00"},
	}
	for _, s := range seeds {
		f.Add(s.event, s.meta)
	}
	f.Fuzz(func(t *testing.T, event, meta string) {
		ev, err := decodeEntry(map[string]any{"event": event, "meta": meta})
		if err != nil {
			return // rejecting input is fine; panicking is not
		}
		wire, m := string(ev.AppendJSON(nil)), string(appendMeta(nil, ev))
		again, err := decodeEntry(map[string]any{"event": wire, "meta": m})
		if err != nil || !again.Equal(ev) {
			t.Fatalf("event %q meta %q decoded as %v meta %+v;\nwritten again as %q meta %q, that decodes as %v meta %+v (%v)",
				event, meta, ev, ev.Meta(), wire, m, again, again.Meta(), err)
		}
		if rewire := string(again.AppendJSON(nil)); rewire != wire {
			t.Fatalf("event %q: written as %q, then as %q: the wire form is not stable", event, wire, rewire)
		}
	})
}

// FuzzParseReceipt checks that parseReceipt never panics on any text, that what it
// accepts rebuilds to the same receipt, and that every receipt the store makes parses
// back to its parts.
func FuzzParseReceipt(f *testing.F) {
	for _, s := range []string{"1736937045123-0#1", "0-1#2", "1-1#0", "1-1#-1", "1-1#", "#1", "nonsense", "1-1#1#2",
		"1-1#99999999999999999999", "1-1# 1", "1-1#+1", ""} {
		f.Add(s, "1736937045123-0", 1)
	}
	f.Fuzz(func(t *testing.T, r, id string, n int) {
		if gotID, gotN, ok := parseReceipt(r); ok {
			if gotN < 1 || strings.Contains(gotID, "#") || !strings.HasPrefix(r, gotID+"#") {
				t.Fatalf("parseReceipt(%q) = %q, %d, true", r, gotID, gotN)
			}
			if entryID(r) != gotID {
				t.Fatalf("entryID(%q) = %q, want %q", r, entryID(r), gotID)
			}
		} else if entryID(r) != r {
			t.Fatalf("entryID(%q) = %q, want the text itself for a non-receipt", r, entryID(r))
		}
		if n < 1 || strings.Contains(id, "#") { // stream entry ids never hold a #
			return
		}
		rc := receipt(id, n)
		if gotID, gotN, ok := parseReceipt(rc); !ok || gotID != id || gotN != n {
			t.Fatalf("parseReceipt(receipt(%q, %d) = %q) = %q, %d, %v", id, n, rc, gotID, gotN, ok)
		}
	})
}
