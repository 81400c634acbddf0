package necro

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Metadata is the lineage an event carries beside its wire body. The Spine stamps it on
// every child: the correlation id of the root, the id of the parent, the depth in the
// causal chain, the attempt, and the W3C trace context. Python consumers never see it.
type Metadata struct {
	// CorrelationID is the id of the root event of this causal chain; empty on a root.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the id of the event whose handling emitted this one; empty on a root.
	CausationID string `json:"causation_id,omitempty"`
	// Depth counts the hops from the root: 0 for a root, parent's depth + 1 for a child.
	Depth int `json:"depth,omitempty"`
	// Attempt numbers the handling attempts of this copy: 1 the first time, n+1 on the
	// n-th retry. Zero reads as 1.
	Attempt int `json:"attempt,omitempty"`
	// Targets restricts a retried copy to the organs that failed on it; empty means every
	// organ that listens to the event's type.
	Targets []string `json:"targets,omitempty"`
	// TraceParent and TraceState carry the W3C trace context of the event's creation.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// Meta returns the event's lineage metadata; the Targets slice is a copy.
func (ev Event) Meta() Metadata {
	if ev.e == nil {
		return Metadata{Attempt: 1}
	}
	m := ev.e.meta
	m.Targets = slices.Clone(m.Targets)
	return m
}

// WithMeta returns a copy of the event whose metadata is m. The id, type, timestamp and
// payload are shared, not copied. The error wraps [ErrInvalidEvent].
func (ev Event) WithMeta(m Metadata) (Event, error) {
	if ev.e == nil {
		return Event{}, invalid("id", "zero Event")
	}
	m, err := cleanMeta(m)
	if err != nil {
		return Event{}, err
	}
	c := ev.e.clone()
	c.meta = m
	return Event{c}, nil
}

func (m Metadata) equal(o Metadata) bool {
	return m.CorrelationID == o.CorrelationID && m.CausationID == o.CausationID &&
		m.Depth == o.Depth && m.Attempt == o.Attempt && slices.Equal(m.Targets, o.Targets) &&
		m.TraceParent == o.TraceParent && m.TraceState == o.TraceState
}

// MarshalJSON writes the metadata as a JSON object with the lowercase keys of its tags,
// leaving out the fields that are zero or empty, as [Metadata.AppendJSON] does.
func (m Metadata) MarshalJSON() ([]byte, error) {
	// Room for every key, two numbers of 20 characters and the strings unescaped.
	n := 160 + len(m.CorrelationID) + len(m.CausationID) + len(m.TraceParent) + len(m.TraceState)
	for _, t := range m.Targets {
		n += len(t) + 3
	}
	return m.AppendJSON(make([]byte, 0, n)), nil
}

// AppendJSON appends the JSON text of [Metadata.MarshalJSON] to b: an object with the
// keys correlation_id, causation_id, depth, attempt, targets, traceparent and tracestate
// in that order, each left out when its field is zero or empty, strings escaped as
// json.Marshal escapes them. It does not validate m; [DecodeMetadata] does.
func (m Metadata) AppendJSON(b []byte) []byte {
	open := len(b)
	b = append(b, '{')
	if m.CorrelationID != "" {
		b = appendMarshaledString(appendMetaKey(b, open, "correlation_id"), m.CorrelationID)
	}
	if m.CausationID != "" {
		b = appendMarshaledString(appendMetaKey(b, open, "causation_id"), m.CausationID)
	}
	if m.Depth != 0 {
		b = strconv.AppendInt(appendMetaKey(b, open, "depth"), int64(m.Depth), 10)
	}
	if m.Attempt != 0 {
		b = strconv.AppendInt(appendMetaKey(b, open, "attempt"), int64(m.Attempt), 10)
	}
	if len(m.Targets) > 0 {
		b = append(appendMetaKey(b, open, "targets"), '[')
		for i, t := range m.Targets {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendMarshaledString(b, t)
		}
		b = append(b, ']')
	}
	if m.TraceParent != "" {
		b = appendMarshaledString(appendMetaKey(b, open, "traceparent"), m.TraceParent)
	}
	if m.TraceState != "" {
		b = appendMarshaledString(appendMetaKey(b, open, "tracestate"), m.TraceState)
	}
	return append(b, '}')
}

// appendMetaKey appends key and its colon to the object that starts at b[open], after a
// comma unless key is the object's first.
func appendMetaKey(b []byte, open int, key string) []byte {
	if len(b) > open+1 {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// DecodeMetadata decodes and validates metadata written by [Metadata.MarshalJSON] or
// [Metadata.AppendJSON]. Unknown or repeated keys are rejected by name; the error wraps
// [ErrInvalidEvent].
func DecodeMetadata(data []byte) (Metadata, error) {
	if m, ok := parseMetadataFast(data); ok {
		return cleanMeta(m)
	}
	return decodeMetadataGeneral(data)
}

// decodeMetadataGeneral is DecodeMetadata for any text: it holds the rules and writes the
// errors, and parseMetadataFast must agree with it on whatever it accepts.
func decodeMetadataGeneral(data []byte) (Metadata, error) {
	type plain Metadata
	var p plain
	if _, err := topLevelFields(data, "metadata", []string{"correlation_id", "causation_id", "depth",
		"attempt", "targets", "traceparent", "tracestate"}); err != nil {
		return Metadata{}, err
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return Metadata{}, &ValidationError{Field: "metadata", Reason: "wrong type", Err: err}
	}
	return cleanMeta(Metadata(p))
}

func cleanMeta(m Metadata) (Metadata, error) {
	var err error
	if m.CorrelationID != "" {
		if m.CorrelationID, err = parseID("correlation_id", m.CorrelationID); err != nil {
			return Metadata{}, err
		}
	}
	if m.CausationID != "" {
		if m.CausationID, err = parseID("causation_id", m.CausationID); err != nil {
			return Metadata{}, err
		}
	}
	if m.Depth < 0 {
		return Metadata{}, invalid("depth", fmt.Sprintf("must not be negative, got %d", m.Depth))
	}
	switch {
	case m.Attempt < 0:
		return Metadata{}, invalid("attempt", fmt.Sprintf("must not be negative, got %d", m.Attempt))
	case m.Attempt == 0:
		m.Attempt = 1
	}
	for _, t := range m.Targets {
		if strings.TrimSpace(t) == "" {
			return Metadata{}, invalid("targets", "must not hold a blank organ name")
		}
	}
	m.Targets = slices.Clip(slices.Clone(m.Targets))
	if len(m.Targets) == 0 {
		m.Targets = nil
	}
	return m, nil
}
