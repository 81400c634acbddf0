package necro

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// MarshalJSON writes the Python NecroStack wire shape: exactly the keys id, timestamp,
// event_type and payload, in that order, the timestamp as [TimestampLayout] and an
// empty payload as {}. Metadata is not part of it; see [Metadata].
func (ev Event) MarshalJSON() ([]byte, error) {
	if ev.e == nil {
		return nil, invalid("id", "zero Event cannot be encoded")
	}
	// 119 bytes of keys, id, timestamp and punctuation, and room for a few escapes.
	return ev.AppendJSON(make([]byte, 0, 128+len(ev.e.payload)+len(ev.e.typ))), nil
}

// AppendJSON appends the wire form of [Event.MarshalJSON] to b. Unlike MarshalJSON it
// does not check ev: the zero Event has no wire form and panics here.
func (ev Event) AppendJSON(b []byte) []byte {
	e := ev.e
	b = append(b, `{"id":"`...)
	b = append(b, e.id...)
	b = append(b, `","timestamp":"`...)
	b = e.ts.AppendFormat(b, TimestampLayout)
	b = append(b, `","event_type":`...)
	b = appendJSONString(b, e.typ)
	b = append(b, `,"payload":`...)
	b = append(b, e.payload...)
	return append(b, '}')
}

// UnmarshalJSON decodes the wire shape strictly, as [DecodeEvent] does.
func (ev *Event) UnmarshalJSON(data []byte) error {
	d, err := DecodeEvent(data)
	if err != nil {
		return err
	}
	*ev = d
	return nil
}

// DecodeEvent decodes and validates one event in the wire shape of [Event.MarshalJSON].
// It is strict: the text must be one JSON object; id, timestamp and event_type must be
// present; payload may be absent (an empty object) but not null; an unknown or repeated
// key is rejected by name. Timestamps may carry any fraction and "Z", an offset, or no
// offset (read as UTC). The error wraps [ErrInvalidEvent]. The result shares no memory
// with data.
//
// The texts the wire carries every day, [Event.AppendJSON]'s compact form and Python's
// json.dumps with its spaces, are read without encoding/json. Anything else, such as
// an escape in a key or in the id, timestamp or type, takes a slower path; both apply
// the same rules and give the same errors.
func DecodeEvent(data []byte) (Event, error) {
	if ev, ok := decodeEventFast(data); ok {
		return ev, nil
	}
	return decodeEventGeneral(data)
}

// decodeEventGeneral is DecodeEvent for any text: it holds the rules and writes the
// errors, and decodeEventFast must agree with it on whatever it accepts.
func decodeEventGeneral(data []byte) (Event, error) {
	fields, err := topLevelFields(data, "event", []string{"id", "timestamp", "event_type", "payload"})
	if err != nil {
		return Event{}, err
	}
	e := &event{meta: Metadata{Attempt: 1}}
	var s string
	if s, err = stringField(fields, "id"); err != nil {
		return Event{}, err
	}
	if e.id, err = parseID("id", s); err != nil {
		return Event{}, err
	}
	if s, err = stringField(fields, "timestamp"); err != nil {
		return Event{}, err
	}
	if e.ts, err = ParseTimestamp(s); err != nil {
		return Event{}, &ValidationError{Field: "timestamp", Reason: "not an ISO 8601 time", Err: err}
	}
	if err = checkTime(e.ts); err != nil {
		return Event{}, err
	}
	if s, err = stringField(fields, "event_type"); err != nil {
		return Event{}, err
	}
	if e.typ, err = cleanType(s); err != nil {
		return Event{}, err
	}
	raw, ok := fields["payload"]
	if !ok {
		raw = json.RawMessage("{}")
	}
	if e.payload, err = checkPayload(raw); err != nil {
		return Event{}, err
	}
	return Event{e}, nil
}

// topLevelFields splits a JSON object into its members, rejecting anything that is not
// one object, any key not in known, and any repeated key.
func topLevelFields(data []byte, what string, known []string) (map[string]json.RawMessage, error) {
	if _, err := scanJSON(data, maxJSONDepth); err != nil {
		return nil, &ValidationError{Field: what, Reason: "is not valid JSON", Err: err}
	}
	if data[firstNonSpace(data)] != '{' {
		return nil, invalid(what, fmt.Sprintf("must be a JSON object, got %s", jsonKind(data[firstNonSpace(data):])))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	_, _ = dec.Token() // the opening brace; scanJSON vouched for the syntax
	fields := make(map[string]json.RawMessage, len(known))
	for dec.More() {
		tok, _ := dec.Token()
		key, _ := tok.(string)
		if !slices.Contains(known, key) {
			return nil, invalid(key, fmt.Sprintf("unknown field %q in %s (extra fields not permitted)", clip(key), what))
		}
		if _, dup := fields[key]; dup {
			return nil, invalid(key, fmt.Sprintf("field %q appears twice", key))
		}
		var raw json.RawMessage
		_ = dec.Decode(&raw)
		fields[key] = raw
	}
	return fields, nil
}

func stringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		if name == "event_type" {
			return "", invalid(name, "must not be empty (field missing)")
		}
		return "", invalid(name, "missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid(name, fmt.Sprintf("must be a string, got %s", jsonKind(raw)))
	}
	return s, nil
}

// DecodeWithMeta decodes an event kept as two texts, as a store keeps it: event, the
// wire body as [DecodeEvent] reads it, and meta, the lineage as [DecodeMetadata] reads
// it, attached with the checks of [Event.WithMeta]. An empty meta gives the defaults of
// a root event, as DecodeEvent does. The error wraps [ErrInvalidEvent] and names the
// field at fault; for the metadata it starts with "meta: ". The result shares no memory
// with event or meta.
//
// It gives what DecodeEvent and WithMeta give one after the other, for less: the
// metadata is checked once and the event is not copied.
func DecodeWithMeta(event, meta []byte) (Event, error) {
	ev, err := DecodeEvent(event)
	if err != nil || len(meta) == 0 {
		return ev, err
	}
	m, err := DecodeMetadata(meta)
	if err != nil {
		return Event{}, fmt.Errorf("meta: %w", err)
	}
	// DecodeMetadata has run cleanMeta, the check WithMeta makes, and ev is our own
	// fresh copy: setting its metadata in place saves the clone WithMeta would make.
	ev.e.meta = m
	return ev, nil
}
