package necro

import (
	"bytes"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// MaxPayloadBytes bounds an event's payload. The measure is the length in bytes of the
// payload's compact JSON text as the event stores and sends it: UTF-8, no whitespace
// between tokens, non-ASCII characters as raw UTF-8 (a 🔥 counts 4 bytes), and the
// escapes the text already had kept as written.
const MaxPayloadBytes = 1_000_000

// MaxTypeBytes bounds an event's type: its length in bytes of UTF-8, after the white
// space around it is trimmed. A type names a route ("order.placed"), not data, and a
// worker keeps it where it cannot keep a payload: in per-type counters, metric
// attributes and every log line about the event. Without a bound, producers sending
// long, distinct types could grow a worker's memory and logs without end. 255 bytes is
// far more than any route name needs. Python NecroStack has no such bound: an event it
// accepts with a longer type is refused here (on Redis, dead-lettered as poison).
const MaxTypeBytes = 255

// maxPayloadDepth bounds how deep a payload may nest arrays and objects. Readers of the
// wire cannot go much deeper: encoding/json stops at 10,000 levels (the event's own
// object and any envelope around it included) and Python's json module at its
// recursion limit, near 1,000 by default.
const maxPayloadDepth = 1000

// TimestampLayout is how an event's timestamp travels on the wire: UTC, microseconds,
// and a "+00:00" offset, which Python's datetime.fromisoformat reads back unchanged.
const TimestampLayout = "2006-01-02T15:04:05.000000-07:00"

// An Event is an immutable, validated message: a UUID v4 id, a UTC timestamp at
// microsecond precision in years 1 to 9999, a non-blank type and a JSON-object payload
// of at most [MaxPayloadBytes] nested at most 1,000 levels deep, plus lineage [Metadata].
// The type is at most [MaxTypeBytes] long.
//
// Event is a small value that shares its contents: copying it is cheap and no method
// lets a caller change what another holder sees. The zero Event is not valid; it
// reports IsZero. Build events with [NewEvent] or [Draft.Build], or decode them with
// [DecodeEvent].
type Event struct{ e *event }

type event struct {
	idBuf   [36]byte // holds a generated id; see Draft.Build
	id      string
	ts      time.Time
	typ     string
	payload []byte // compact JSON object, never shared with callers
	meta    Metadata
}

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

// Correlation returns the correlation id of the chain: the root's id.
func (ev Event) Correlation() string {
	if ev.e == nil {
		return ""
	}
	if ev.e.meta.CorrelationID != "" {
		return ev.e.meta.CorrelationID
	}
	return ev.e.id
}

// A Draft holds the parts of an event before validation. Fields left zero take their
// defaults in [Draft.Build]: a fresh UUID v4, the current time, an empty payload,
// attempt 1.
type Draft struct {
	ID        string    // a UUID v4 in any case; stored lowercase. Empty means generate.
	Type      string    // trimmed of surrounding white space as Python's str.strip does; must not be blank or longer than MaxTypeBytes
	Timestamp time.Time // converted to UTC and truncated to microseconds; zero means now
	// Payload is nil (an empty object), a json.RawMessage holding a JSON object (a nil
	// one is an empty object), or any value that encoding/json turns into an object (a
	// map or a struct); a value that turns into null is an empty object too.
	Payload any
	Meta    Metadata
}

// NewEvent returns a new event of the given type with a fresh id and the current time.
// Payload is as for [Draft]. The error wraps [ErrInvalidEvent] and names the field.
func NewEvent(typ string, payload any) (Event, error) {
	return Draft{Type: typ, Payload: payload}.Build()
}

// Build validates the draft and returns the event. The error wraps [ErrInvalidEvent]
// and names the field at fault.
func (d Draft) Build() (Event, error) {
	e := &event{}
	var err error
	if d.ID == "" {
		newID(&e.idBuf)
		// The string shares the event's own buffer: one allocation less per event, and
		// safe because the buffer is never written again.
		e.id = unsafe.String(&e.idBuf[0], len(e.idBuf))
	} else if e.id, err = parseID("id", d.ID); err != nil {
		return Event{}, err
	}
	if e.typ, err = cleanType(d.Type); err != nil {
		return Event{}, err
	}
	if d.Timestamp.IsZero() {
		e.ts = time.Now().UTC().Truncate(time.Microsecond)
	} else {
		e.ts = d.Timestamp.UTC().Truncate(time.Microsecond)
	}
	if err = checkTime(e.ts); err != nil {
		return Event{}, err
	}
	if e.payload, err = encodePayload(d.Payload); err != nil {
		return Event{}, err
	}
	if e.meta, err = cleanMeta(d.Meta); err != nil {
		return Event{}, err
	}
	return Event{e}, nil
}

// ID returns the event's id: a lowercase canonical UUID v4.
func (ev Event) ID() string {
	if ev.e == nil {
		return ""
	}
	return ev.e.id
}

// Type returns the event's type.
func (ev Event) Type() string {
	if ev.e == nil {
		return ""
	}
	return ev.e.typ
}

// Timestamp returns when the event was created, in UTC at microsecond precision.
func (ev Event) Timestamp() time.Time {
	if ev.e == nil {
		return time.Time{}
	}
	return ev.e.ts
}

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

// Meta returns the event's lineage metadata; the Targets slice is a copy.
func (ev Event) Meta() Metadata {
	if ev.e == nil {
		return Metadata{Attempt: 1}
	}
	m := ev.e.meta
	m.Targets = slices.Clone(m.Targets)
	return m
}

// Attempt returns the event's attempt number, 1 for a first delivery.
func (ev Event) Attempt() int {
	if ev.e == nil {
		return 1
	}
	return ev.e.meta.Attempt
}

// Depth returns the event's depth in its causal chain, 0 for a root.
func (ev Event) Depth() int {
	if ev.e == nil {
		return 0
	}
	return ev.e.meta.Depth
}

// Targets reports whether organ may handle this event: true unless the event is a
// retried copy meant for other organs only.
func (ev Event) Targets(organ string) bool {
	if ev.e == nil || len(ev.e.meta.Targets) == 0 {
		return true
	}
	return slices.Contains(ev.e.meta.Targets, organ)
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

// IsZero reports whether ev is the zero Event, which no constructor returns.
func (ev Event) IsZero() bool { return ev.e == nil }

// Equal reports whether ev and o hold the same id, timestamp, type, payload and metadata.
// Payloads are the same when [Event.Payload] reads the same values from them, so texts
// that differ only in escapes or key order are equal: json.Marshal's "\u003c" for "<",
// or Python's "\u00e9" for "é". Numbers compare as written: 1 and 1.0 differ.
func (ev Event) Equal(o Event) bool {
	if ev.e == nil || o.e == nil {
		return ev.e == o.e
	}
	a, b := ev.e, o.e
	return a.id == b.id && a.ts.Equal(b.ts) && a.typ == b.typ &&
		a.meta.equal(b.meta) && samePayload(a.payload, b.payload)
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

func (m Metadata) equal(o Metadata) bool {
	return m.CorrelationID == o.CorrelationID && m.CausationID == o.CausationID &&
		m.Depth == o.Depth && m.Attempt == o.Attempt && slices.Equal(m.Targets, o.Targets) &&
		m.TraceParent == o.TraceParent && m.TraceState == o.TraceState
}

// String returns a short description without the payload.
func (ev Event) String() string {
	if ev.e == nil {
		return "Event{}"
	}
	return fmt.Sprintf("Event{%s %s %d payload bytes}", ev.e.typ, ev.e.id, len(ev.e.payload))
}

// LogValue keeps payloads out of logs: they can be large or private.
func (ev Event) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", ev.ID()), slog.String("type", ev.Type()),
		slog.Int("payload_bytes", ev.PayloadSize()))
}

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

// ParseTimestamp reads an ISO 8601 time as the wire allows it and returns it in UTC,
// truncated to microseconds. A time without an offset is read as UTC.
func ParseTimestamp(s string) (time.Time, error) {
	if t, ok := parseLayoutTimestamp(s); ok {
		return t, nil
	}
	return parseTimestampGeneral(s)
}

// parseTimestampGeneral is ParseTimestamp for any layout it allows.
func parseTimestampGeneral(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		var err2 error
		if t, err2 = time.Parse("2006-01-02T15:04:05.999999999", s); err2 != nil {
			return time.Time{}, err
		}
	}
	return t.UTC().Truncate(time.Microsecond), nil
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

// DecodeEntry decodes the two fields of a Redis stream entry that hold an event: event,
// the wire body as [DecodeEvent] reads it, and meta, the lineage as [DecodeMetadata]
// reads it, attached with the checks of [Event.WithMeta]. An empty meta gives the
// defaults of a root event, as DecodeEvent does. The error wraps [ErrInvalidEvent] and
// names the field at fault; for the metadata it starts with "meta: ". The result shares
// no memory with event or meta.
func DecodeEntry(event, meta []byte) (Event, error) {
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

// checkTime rejects a UTC time outside years 1 to 9999: [TimestampLayout] cannot write
// it so that it reads back, and Python's datetime cannot hold it.
func checkTime(t time.Time) error {
	if y := t.Year(); y < 1 || y > 9999 {
		return invalid("timestamp", fmt.Sprintf("year %d in UTC is outside 1 to 9999", y))
	}
	return nil
}

// isPythonSpace reports whether Python's str.strip removes r: Unicode white space, as
// for strings.TrimSpace, plus the separators U+001C to U+001F.
func isPythonSpace(r rune) bool { return unicode.IsSpace(r) || 0x1c <= r && r <= 0x1f }

func cleanType(s string) (string, error) {
	// Trim as Python does, or a type Go accepts could be one Python consumers reject.
	t := strings.TrimFunc(s, isPythonSpace)
	if t == "" {
		return "", invalid("event_type", "must not be empty")
	}
	if len(t) > MaxTypeBytes {
		return "", typeTooLong(t)
	}
	if !utf8.ValidString(t) {
		return "", invalid("event_type", "must be valid UTF-8")
	}
	return t, nil
}

// typeTooLong is the error for a type longer than MaxTypeBytes. It shows only the start
// of the type: repeating a long one would carry it into the logs all the same.
func typeTooLong(t string) error {
	return invalid("event_type", fmt.Sprintf("%d bytes, longer than the limit of %d (MaxTypeBytes): %q", len(t), MaxTypeBytes, clip(t)))
}

// parseID accepts a canonical UUID (8-4-4-4-12 hex digits, any case) of version 4 and
// RFC 4122 variant, and returns it lowercase.
func parseID(field, s string) (string, error) {
	var b [36]byte
	if err := lowerID(&b, field, s); err != nil {
		return "", err
	}
	return string(b[:]), nil
}

// lowerID checks s as parseID does and writes it to b in lowercase. It reads bytes as
// well as strings, so that a decoder can check an id in place, without a copy.
func lowerID[S string | []byte](b *[36]byte, field string, s S) error {
	// The usual id passes a quick check by table; any other string goes through the
	// loop below, which finds the first thing wrong for the error.
	if len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' {
		var bad byte
		for _, p := range idPos {
			hi, lo := lowerHex[s[p]], lowerHex[s[p+1]]
			bad |= hi | lo
			b[p], b[p+1] = hi, lo
		}
		b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
		if bad&0x80 == 0 && b[14] == '4' && (b[19] == '8' || b[19] == '9' || b[19] == 'a' || b[19] == 'b') {
			return nil
		}
	}
	if len(s) != 36 {
		return invalid(field, fmt.Sprintf("%q is not a UUID v4 (want 36 characters, got %d)", clip(string(s)), len(s)))
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return invalid(field, fmt.Sprintf("%q is not a UUID v4 (want hyphens at 9, 14, 19, 24)", string(s)))
			}
			b[i] = c
			continue
		}
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			c += 'a' - 'A'
		default:
			return invalid(field, fmt.Sprintf("%q is not a UUID v4 (%q is not a hex digit)", string(s), c))
		}
		b[i] = c
	}
	if b[14] != '4' {
		return invalid(field, fmt.Sprintf("%q is a version %c UUID, want a UUID v4", string(s), b[14]))
	}
	switch b[19] {
	case '8', '9', 'a', 'b':
	default:
		return invalid(field, fmt.Sprintf("%q is not a UUID v4 (variant must be 8, 9, a or b)", string(s)))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

const hexDigits = "0123456789abcdef"

// newID fills b with a random UUID v4 in canonical lowercase form. The random bits come
// from ChaCha8 generators seeded from crypto/rand, pooled per P: cryptographically
// strong like crypto/rand, without a system call per id.
func newID(b *[36]byte) {
	g := idSources.Get().(*rand.ChaCha8)
	hi, lo := g.Uint64(), g.Uint64()
	idSources.Put(g)
	formatUUIDv4(b, hi, lo)
}

// formatUUIDv4 writes the 128 bits hi, lo into b as a canonical lowercase UUID, with
// the version (4) and variant bits set over the bits given.
func formatUUIDv4(b *[36]byte, hi, lo uint64) {
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	for i := 0; i < 8; i++ {
		c := byte(hi >> (56 - 8*i))
		b[idPos[i]], b[idPos[i]+1] = hexDigits[c>>4], hexDigits[c&0x0f]
		c = byte(lo >> (56 - 8*i))
		b[idPos[i+8]], b[idPos[i+8]+1] = hexDigits[c>>4], hexDigits[c&0x0f]
	}
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
}

// idPos is where the two hex digits of each of a UUID's 16 bytes go.
var idPos = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// lowerHex maps each hex digit, in either case, to its lowercase form, and every other
// byte to 0x80, a value with a bit no digit has.
var lowerHex = func() (t [256]byte) {
	for c := range t {
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
			t[c] = byte(c)
		case 'A' <= c && c <= 'F':
			t[c] = byte(c) + 'a' - 'A'
		default:
			t[c] = 0x80
		}
	}
	return t
}()

var idSources = sync.Pool{New: func() any {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never returns an error (Go 1.24+)
	return rand.NewChaCha8(seed)
}}

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
