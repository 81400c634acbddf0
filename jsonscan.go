package necro

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxJSONDepth is the deepest nesting of arrays and objects encoding/json reads; text
// nested deeper is rejected by its decoder, json.Valid and json.Compact alike.
const maxJSONDepth = 10000

// scanJSON checks that b is exactly one JSON value in valid UTF-8, nested at most
// maxDepth arrays and objects deep, and reports whether it holds white space between
// tokens (so that a compact copy would be shorter). With maxDepth = maxJSONDepth it
// accepts what json.Valid accepts, less invalid UTF-8. It is iterative, so deep
// nesting cannot exhaust the stack.
func scanJSON(b []byte, maxDepth int) (spaced bool, err error) {
	if !utf8.Valid(b) {
		return false, errors.New("invalid UTF-8")
	}
	i, spaced, err := scanValue(b, 0, maxDepth)
	if err != nil {
		return spaced, err
	}
	for i < len(b) && isSpace(b[i]) {
		i++
		spaced = true
	}
	if i != len(b) {
		return spaced, fmt.Errorf("invalid character %q after top-level value at offset %d", b[i], i)
	}
	return spaced, nil
}

// scanValue checks the syntax of the one JSON value that starts at b[i], after any
// white space, and returns the offset just past its end. It reports white space
// before the value or between its tokens as scanJSON does, and checks nesting the same
// way, but not UTF-8: the caller checks that once for the whole text.
func scanValue(b []byte, i, maxDepth int) (end int, spaced bool, err error) {
	var buf [64]byte // nesting of the usual payload fits without allocating
	stack := buf[:0] // the open arrays and objects, by their opening bracket
	state := wantValue
	// Stop right after the value, before any white space that follows it.
	for state != wantAfter || len(stack) > 0 {
		if i, spaced = skipSpaces(b, i, spaced); i >= len(b) {
			return i, spaced, errors.New("unexpected end of JSON input")
		}
		switch c := b[i]; state {
		case wantValue:
			switch c {
			case '{', '[':
				if len(stack) == maxDepth {
					return i, spaced, &depthError{maxDepth}
				}
				stack = append(stack, c)
				i, spaced = skipSpaces(b, i+1, spaced)
				state = wantMember(c)
				if byteAt(b, i) == c+2 { // '}' is '{'+2 and ']' is '['+2: empty
					i++
					stack = stack[:len(stack)-1]
					state = wantAfter
				}
			case '"':
				if i, err = scanString(b, i); err != nil {
					return i, spaced, err
				}
				state = wantAfter
			case 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				if isNumberStart(c) {
					i, err = scanNumber(b, i)
				} else {
					i, err = scanLiteral(b, i)
				}
				if err != nil {
					return i, spaced, err
				}
				state = wantAfter
			default:
				return i, spaced, fmt.Errorf("invalid character %q at offset %d", c, i)
			}
		case wantKey:
			if c != '"' {
				return i, spaced, fmt.Errorf("invalid character %q at offset %d, want an object key", c, i)
			}
			if i, err = scanString(b, i); err != nil {
				return i, spaced, err
			}
			if i, spaced = skipSpaces(b, i, spaced); byteAt(b, i) != ':' {
				return i, spaced, fmt.Errorf("missing ':' after object key at offset %d", i)
			}
			i++
			state = wantValue
		case wantAfter:
			top := stack[len(stack)-1]
			switch c {
			case ',':
				i++
				state = wantMember(top)
			case top + 2:
				i++
				stack = stack[:len(stack)-1]
			default:
				return i, spaced, fmt.Errorf("invalid character %q at offset %d, want ',' or %q", c, i, top+2)
			}
		}
	}
	return i, spaced, nil
}

// The states of scanValue: what it reads next.
const (
	wantValue = iota // a value: the whole text's, an array element, a member's
	wantKey          // an object member's key and colon
	wantAfter        // a comma or the closing bracket after a value
)

// wantMember returns the state that reads a member of the array or object open opened:
// a key in an object, a value in an array.
func wantMember(open byte) int {
	if open == '{' {
		return wantKey
	}
	return wantValue
}

// skipSpaces returns the offset of the first byte at or after i that is not JSON white
// space, and spaced, set when it skipped any.
func skipSpaces(b []byte, i int, spaced bool) (int, bool) {
	for i < len(b) && isSpace(b[i]) {
		i++
		spaced = true
	}
	return i, spaced
}

// isNumberStart reports whether a value that starts with c is a number.
func isNumberStart(c byte) bool { return c == '-' || '0' <= c && c <= '9' }

// byteAt returns b[i], or 0 past the end of b.
func byteAt(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

// A depthError reports JSON nested deeper than a scan allows.
type depthError struct{ max int }

func (e *depthError) Error() string {
	return fmt.Sprintf("nested more than %d arrays and objects deep", e.max)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// plainStringByte marks the bytes a JSON string may hold as they are: everything but
// the quote, the backslash and control characters.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipPlain returns the offset of the first byte at or after i that a JSON string
// cannot hold as it is (a quote, a backslash or a control character), or len(b).
func skipPlain(b []byte, i int) int {
	// Eight bytes at a time first: a word holds such a byte if and only if one of its
	// bytes is below 0x20 or equal to '"' or '\\', which the usual bit tricks test
	// without a branch per byte. A word that may hold one goes to the loop below.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		quote, backslash := w^(ones*'"'), w^(ones*'\\')
		if ((w-ones*0x20)&^w|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0 {
			break
		}
	}
	for i < len(b) && plainStringByte[b[i]] {
		i++
	}
	return i
}

func scanString(b []byte, i int) (int, error) {
	start := i
	i++ // opening quote
	for i < len(b) {
		i = skipPlain(b, i)
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return i, errors.New("unexpected end of JSON input in string escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, errors.New("unexpected end of JSON input in \\u escape")
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return i, fmt.Errorf("invalid \\u escape at offset %d", i)
					}
				}
				i += 6
			default:
				return i, fmt.Errorf("invalid escape %q at offset %d", b[i+1], i)
			}
		case c < 0x20:
			return i, fmt.Errorf("control character %#x in string at offset %d", c, i)
		default:
			i++
		}
	}
	return start, errors.New("unexpected end of JSON input in string")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanLiteral checks the literal true, false or null, whichever b[i] starts, at b[i].
func scanLiteral(b []byte, i int) (int, error) {
	lit := "null"
	switch b[i] {
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	}
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, fmt.Errorf("invalid literal at offset %d, want %s", i, lit)
	}
	return i + len(lit), nil
}

func scanNumber(b []byte, i int) (int, error) {
	start := i
	digits := func() int {
		n := 0
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return i, fmt.Errorf("invalid number at offset %d", start)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return i, fmt.Errorf("invalid number at offset %d: no digits after '.'", start)
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, fmt.Errorf("invalid number at offset %d: no digits in exponent", start)
		}
	}
	return i, nil
}
