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
	// The walk stays in this function, rather than behind openObject and memberEnd as
	// in parseMetadataFast: the calls would cost every event read from a store.
	var f eventFields
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return Event{}, false
	}
	for {
		key, at, ok := memberKey(data, skipSpace(data, i+1))
		if !ok {
			return Event{}, false
		}
		var bit uint8
		switch string(key) {
		case "id":
			bit = idKey
			f.id, i, ok = plainString(data, at)
		case "timestamp":
			bit = timestampKey
			f.ts, i, ok = plainString(data, at)
		case "event_type":
			bit = typeKey
			f.typ, i, ok = plainString(data, at)
		case "payload":
			bit = payloadKey
			i, ok = f.readPayload(data, at)
		default:
			return Event{}, false // a key an event does not have
		}
		if !ok || f.seen&bit != 0 {
			return Event{}, false
		}
		f.seen |= bit
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
	if skipSpace(data, i+1) != len(data) || f.seen&requiredEventKeys != requiredEventKeys {
		return Event{}, false
	}
	return f.event()
}

// The keys of an event's wire body, a bit each, to catch a repeated one.
const (
	idKey uint8 = 1 << iota
	timestampKey
	typeKey
	payloadKey

	requiredEventKeys = idKey | timestampKey | typeKey
)

// eventFields are the members of an event's wire body as decodeEventFast reads them:
// slices of the text, not checked yet.
type eventFields struct {
	id, ts, typ, payload []byte
	spaced               bool // the payload holds white space between tokens
	seen                 uint8
}

// readPayload reads the payload object at data[at] and returns the offset just past
// it. Only an object can be a payload; scanValue checks its syntax and depth.
func (f *eventFields) readPayload(data []byte, at int) (end int, ok bool) {
	if at >= len(data) || data[at] != '{' {
		return at, false
	}
	end, spaced, err := scanValue(data, at, maxPayloadDepth)
	f.payload, f.spaced = data[at:end], spaced
	return end, err == nil
}

// event checks the fields as DecodeEvent does and builds the event. It reports false
// for an event that breaks a rule: the general decoder then writes the error.
func (f *eventFields) event() (Event, bool) {
	var idBuf [36]byte
	if lowerID(&idBuf, "id", f.id) != nil {
		return Event{}, false
	}
	t, ok := parseLayoutTimestamp(f.ts)
	if !ok {
		var err error
		if t, err = parseTimestampGeneral(string(f.ts)); err != nil {
			return Event{}, false
		}
	}
	if checkTime(t) != nil {
		return Event{}, false
	}
	// As cleanType does; the text is valid UTF-8 and the string has no escapes, so it
	// reads the same as the string encoding/json would decode.
	typ := bytes.TrimFunc(f.typ, isPythonSpace)
	if len(typ) == 0 || len(typ) > MaxTypeBytes {
		return Event{}, false
	}
	p, ok := f.compactPayload()
	if !ok {
		return Event{}, false
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

// compactPayload returns a compact copy of the payload, {} when the text has none. It
// reports false for a payload over MaxPayloadBytes.
func (f *eventFields) compactPayload() ([]byte, bool) {
	switch {
	case f.seen&payloadKey == 0:
		return []byte("{}"), true
	case f.spaced:
		p := appendCompact(make([]byte, 0, len(f.payload)), f.payload)
		return p, len(p) <= MaxPayloadBytes
	case len(f.payload) > MaxPayloadBytes:
		return nil, false
	}
	p := make([]byte, len(f.payload))
	copy(p, f.payload)
	return p, true
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
	f := metadataFields{data: data}
	i, more, ok := openObject(data)
	for more && ok {
		var key []byte
		if key, i, ok = memberKey(data, i); !ok {
			break
		}
		if i, ok = f.read(key, i); !ok {
			break
		}
		i, more, ok = memberEnd(data, i)
	}
	return f.m, ok
}

// The keys of a metadata object, a bit each, to catch a repeated one.
const (
	correlationKey uint8 = 1 << iota
	causationKey
	depthKey
	attemptKey
	targetsKey
	traceParentKey
	traceStateKey
)

// metadataFields collects the members of a metadata object for parseMetadataFast.
type metadataFields struct {
	data []byte
	// text is one copy of data, made when the first string is read: the strings of m
	// are slices of it, one allocation for all of them. cleanMeta keeps an id that is
	// lowercase already, so the event's lineage keeps the copy alive, and it is as small
	// as the text.
	text string
	m    Metadata
	seen uint8
}

// read reads the value of key at data[at] and returns the offset just past it.
func (f *metadataFields) read(key []byte, at int) (end int, ok bool) {
	var bit uint8
	switch string(key) {
	case "correlation_id":
		bit = correlationKey
		f.m.CorrelationID, end, ok = f.stringAt(at)
	case "causation_id":
		bit = causationKey
		f.m.CausationID, end, ok = f.stringAt(at)
	case "depth":
		bit = depthKey
		f.m.Depth, end, ok = plainInt(f.data, at)
	case "attempt":
		bit = attemptKey
		f.m.Attempt, end, ok = plainInt(f.data, at)
	case "targets":
		bit = targetsKey
		f.m.Targets, end, ok = f.targetsAt(at)
	case "traceparent":
		bit = traceParentKey
		f.m.TraceParent, end, ok = f.stringAt(at)
	case "tracestate":
		bit = traceStateKey
		f.m.TraceState, end, ok = f.stringAt(at)
	}
	if !ok || f.seen&bit != 0 {
		return at, false
	}
	f.seen |= bit
	return end, true
}

// stringAt reads the string at data[i] as plainString does, as a slice of text.
func (f *metadataFields) stringAt(i int) (s string, end int, ok bool) {
	b, end, ok := plainString(f.data, i)
	if !ok {
		return "", i, false
	}
	if f.text == "" {
		f.text = string(f.data)
	}
	return f.text[end-1-len(b) : end-1], end, true // b ends at the quote at end-1
}

// targetsAt reads the array of strings at data[i]. An empty array gives nil, as
// cleanMeta makes of it.
func (f *metadataFields) targetsAt(i int) (targets []string, end int, ok bool) {
	data := f.data
	if i >= len(data) || data[i] != '[' {
		return nil, i, false
	}
	if i = skipSpace(data, i+1); i < len(data) && data[i] == ']' {
		return nil, i + 1, true
	}
	for {
		var t string
		if t, i, ok = f.stringAt(i); !ok {
			return nil, i, false
		}
		targets = append(targets, t)
		if i = skipSpace(data, i); i >= len(data) {
			return nil, i, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return targets, i + 1, true
		default:
			return nil, i, false
		}
	}
}

// openObject, memberKey and memberEnd walk the JSON object that is all of data, white
// space around it allowed, for a decoder that reads each member's value itself:
//
//	i, more, ok := openObject(data)
//	for more && ok {
//		key, at, ok := memberKey(data, i) // then read the value at data[at]
//		i, more, ok = memberEnd(data, end) // end: the offset just past the value
//	}
//
// ok is false when data is not such an object, and keys must hold no escapes.

// openObject reads the opening brace; more reports a member after it.
func openObject(data []byte) (i int, more, ok bool) {
	i = skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return i, false, false
	}
	if i = skipSpace(data, i+1); i < len(data) && data[i] == '}' {
		return i, false, skipSpace(data, i+1) == len(data) // {}
	}
	return i, true, true
}

// memberKey reads the key at data[i] and the colon after it, and returns the offset
// of the value.
func memberKey(data []byte, i int) (key []byte, at int, ok bool) {
	key, i, ok = plainString(data, i)
	if !ok {
		return nil, i, false
	}
	if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
		return nil, i, false
	}
	return key, skipSpace(data, i+1), true
}

// memberEnd reads what follows a value that ends at data[i]: a comma and another
// member, or the closing brace and the end of the text.
func memberEnd(data []byte, i int) (next int, more, ok bool) {
	if i = skipSpace(data, i); i >= len(data) {
		return i, false, false
	}
	switch data[i] {
	case ',':
		return skipSpace(data, i+1), true, true
	case '}':
		return i, false, skipSpace(data, i+1) == len(data)
	}
	return i, false, false
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
