package necro

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// The fast decoders below read the shapes the wire carries every day without going
// through encoding/json. Each reports false for whatever it does not handle, valid or
// not, and its caller then runs the general decoder, which holds the rules and writes
// the errors. So a fast decoder only ever accepts text the general one accepts, gives
// the same result for it, and changes no error; the differential fuzz tests in
// wire_fast_test.go hold them to that.

// decodeEventFast decodes data when it is one JSON object with the keys id, timestamp,
// event_type and, optionally, payload, each once and in any order, where the keys and
// the three strings hold no escapes and any white space may stand between tokens: the
// compact text of [Event.AppendJSON] and the spaced text of Python's json.dumps. It
// reports false for anything else, and for an event that breaks a rule.
func decodeEventFast(data []byte) (Event, bool) {
	// Checked once for the whole text, so that scanValue need not check the payload.
	if !utf8.Valid(data) {
		return Event{}, false
	}
	var (
		id, ts, typ, payload []byte
		seen                 uint8 // a bit per key, to catch a repeated one
		spaced, ok           bool
	)
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return Event{}, false
	}
	for {
		var key []byte
		if key, i, ok = plainString(data, skipSpace(data, i+1)); !ok {
			return Event{}, false
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
			return Event{}, false
		}
		i = skipSpace(data, i+1)
		var bit uint8
		switch string(key) {
		case "id":
			bit = 1
			id, i, ok = plainString(data, i)
		case "timestamp":
			bit = 2
			ts, i, ok = plainString(data, i)
		case "event_type":
			bit = 4
			typ, i, ok = plainString(data, i)
		case "payload":
			bit = 8
			// Only an object can be a payload; scanValue checks its syntax and depth.
			if ok = i < len(data) && data[i] == '{'; ok {
				var end int
				var err error
				end, spaced, err = scanValue(data, i, maxPayloadDepth)
				payload, i, ok = data[i:end], end, err == nil
			}
		}
		if !ok || bit == 0 || seen&bit != 0 {
			return Event{}, false
		}
		seen |= bit
		if i = skipSpace(data, i); i >= len(data) {
			return Event{}, false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return Event{}, false
		}
	}
	if skipSpace(data, i+1) != len(data) || seen&7 != 7 {
		return Event{}, false
	}

	var idBuf [36]byte
	if lowerID(&idBuf, "id", id) != nil {
		return Event{}, false
	}
	t, ok := parseLayoutTimestamp(ts)
	if !ok {
		var err error
		if t, err = parseTimestampGeneral(string(ts)); err != nil {
			return Event{}, false
		}
	}
	if checkTime(t) != nil {
		return Event{}, false
	}
	// As cleanType does; the text is valid UTF-8 and the string has no escapes, so it
	// reads the same as the string encoding/json would decode.
	typ = bytes.TrimFunc(typ, isPythonSpace)
	if len(typ) == 0 || len(typ) > MaxTypeBytes {
		return Event{}, false
	}
	var p []byte
	switch {
	case seen&8 == 0:
		p = []byte("{}")
	case spaced:
		if p = appendCompact(make([]byte, 0, len(payload)), payload); len(p) > MaxPayloadBytes {
			return Event{}, false
		}
	case len(payload) > MaxPayloadBytes:
		return Event{}, false
	default:
		p = make([]byte, len(payload))
		copy(p, payload)
	}
	// One allocation holds the id and the type. An id kept apart from its event keeps
	// the type alive too, which is a few bytes; the payload has its own allocation.
	var sb strings.Builder
	sb.Grow(len(idBuf) + len(typ))
	sb.Write(idBuf[:])
	sb.Write(typ)
	s := sb.String()
	return Event{&event{id: s[:36], ts: t, typ: s[36:], payload: p, meta: Metadata{Attempt: 1}}}, true
}

// parseMetadataFast reads data when it is one JSON object with only the keys of
// [Metadata], each once and in any order, where the keys and strings hold no escapes,
// the numbers are integers of at most 18 digits and no value is null, with any white
// space between tokens: the text [Metadata.AppendJSON] writes. It reports false for
// anything else. The result is not validated yet: the caller runs cleanMeta, as the
// general decoder does.
func parseMetadataFast(data []byte) (Metadata, bool) {
	if !utf8.Valid(data) {
		return Metadata{}, false
	}
	// The strings are slices of one copy of the text, made when the first string is
	// read: one allocation for all of them. cleanMeta copies the ids again, so only the
	// trace context and the targets keep the copy alive, and it is as small as the text.
	var text string
	stringAt := func(i int) (string, int, bool) {
		s, next, ok := plainString(data, i)
		if !ok {
			return "", i, false
		}
		if text == "" {
			text = string(data)
		}
		return text[next-1-len(s) : next-1], next, true // s ends at the quote at next-1
	}
	var (
		m    Metadata
		seen uint8
		ok   bool
	)
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return Metadata{}, false
	}
	if i = skipSpace(data, i+1); i < len(data) && data[i] == '}' {
		return m, skipSpace(data, i+1) == len(data)
	}
	for {
		var key []byte
		if key, i, ok = plainString(data, skipSpace(data, i)); !ok {
			return Metadata{}, false
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
			return Metadata{}, false
		}
		i = skipSpace(data, i+1)
		var bit uint8
		switch string(key) {
		case "correlation_id":
			bit = 1
			m.CorrelationID, i, ok = stringAt(i)
		case "causation_id":
			bit = 2
			m.CausationID, i, ok = stringAt(i)
		case "depth":
			bit = 4
			m.Depth, i, ok = plainInt(data, i)
		case "attempt":
			bit = 8
			m.Attempt, i, ok = plainInt(data, i)
		case "targets":
			bit = 16
			if ok = i < len(data) && data[i] == '['; !ok {
				break
			}
			if i = skipSpace(data, i+1); i < len(data) && data[i] == ']' {
				i++
				break
			}
			for {
				var t string
				if t, i, ok = stringAt(i); !ok {
					break
				}
				m.Targets = append(m.Targets, t)
				if i = skipSpace(data, i); i < len(data) && data[i] == ',' {
					i = skipSpace(data, i+1)
					continue
				}
				if ok = i < len(data) && data[i] == ']'; ok {
					i++
				}
				break
			}
		case "traceparent":
			bit = 32
			m.TraceParent, i, ok = stringAt(i)
		case "tracestate":
			bit = 64
			m.TraceState, i, ok = stringAt(i)
		}
		if !ok || bit == 0 || seen&bit != 0 {
			return Metadata{}, false
		}
		seen |= bit
		if i = skipSpace(data, i); i >= len(data) {
			return Metadata{}, false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return Metadata{}, false
		}
		i++
	}
	return m, skipSpace(data, i+1) == len(data)
}

// skipSpace returns the offset of the first byte at or after i that is not JSON white
// space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i] when it holds no escapes, and returns its
// contents and the offset after its closing quote. It reports false for anything else:
// no string there, an escape, a control character or the end of the text. b must be
// valid UTF-8.
func plainString(b []byte, i int) (s []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	j := skipPlain(b, i+1)
	if j >= len(b) || b[j] != '"' {
		return nil, i, false
	}
	return b[i+1 : j], j + 1, true
}

// plainInt reads the JSON number at b[i] when it is an integer of at most 18 digits
// that an int holds, and returns it and the offset after it. It reports false for
// anything else, including a fraction or an exponent after the digits, and leading
// zeros, which JSON does not allow.
func plainInt(b []byte, i int) (n, end int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var v int64 // 18 digits fit; an int may be narrower
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	switch digits := i - start; {
	case digits == 0 || digits > 18:
		return 0, i, false
	case b[start] == '0' && digits > 1:
		return 0, i, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, i, false
	}
	if neg {
		v = -v
	}
	if int64(int(v)) != v { // encoding/json rejects a number its int cannot hold
		return 0, i, false
	}
	return int(v), i, true
}
