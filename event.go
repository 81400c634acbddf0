package necro

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// MaxTypeBytes bounds an event's type: its length in bytes of UTF-8, after the white
// space around it is trimmed. A type names a route ("order.placed"), not data, and a
// worker keeps it where it cannot keep a payload: in per-type counters, metric
// attributes and every log line about the event. Without a bound, producers sending
// long, distinct types could grow a worker's memory and logs without end. 255 bytes is
// far more than any route name needs. Python NecroStack has no such bound: an event it
// accepts with a longer type is refused here (on Redis, dead-lettered as poison).
const MaxTypeBytes = 255

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

// clone copies the event. A generated id lives in the event's own buffer; the copy's id
// must point into the copy's buffer, or every copy would keep the original alive.
func (e *event) clone() *event {
	c := *e
	if e.generatedID() {
		c.id = unsafe.String(&c.idBuf[0], len(c.idBuf))
	}
	return &c
}

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

// isPythonSpace reports whether Python's str.strip removes r: Unicode white space, as
// for strings.TrimSpace, plus the separators U+001C to U+001F.
func isPythonSpace(r rune) bool { return unicode.IsSpace(r) || 0x1c <= r && r <= 0x1f }

// typeTooLong is the error for a type longer than MaxTypeBytes. It shows only the start
// of the type: repeating a long one would carry it into the logs all the same.
func typeTooLong(t string) error {
	return invalid("event_type", fmt.Sprintf("%d bytes, longer than the limit of %d (MaxTypeBytes): %q", len(t), MaxTypeBytes, clip(t)))
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
