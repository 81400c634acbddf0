package necro

import (
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"unsafe"
)

// parseID accepts a canonical UUID (8-4-4-4-12 hex digits, any case) of version 4 and
// RFC 4122 variant, and returns it lowercase: s itself when it is lowercase already.
func parseID(field, s string) (string, error) {
	var b [36]byte
	if err := lowerID(&b, field, s); err != nil {
		return "", err
	}
	if string(b[:]) == s {
		return s, nil // already lowercase: strings are immutable, so sharing s saves a copy
	}
	return string(b[:]), nil
}

// lowerID checks s as parseID does and writes it to b in lowercase. It reads bytes as
// well as strings, so that a decoder can check an id in place, without a copy.
func lowerID[S string | []byte](b *[36]byte, field string, s S) error {
	// The usual id passes a quick check by table; any other string goes to idError,
	// which finds the first thing wrong for the error.
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
	return idError(field, string(s))
}

// idError says what keeps s from being a canonical UUID v4: the length, then the first
// character out of place, then the version, then the variant. s must be a string that
// lowerID's quick check refused.
func idError(field, s string) error {
	if len(s) != 36 {
		return invalid(field, fmt.Sprintf("%q is not a UUID v4 (want 36 characters, got %d)", clip(s), len(s)))
	}
	for i := 0; i < 36; i++ {
		switch c := s[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return invalid(field, fmt.Sprintf("%q is not a UUID v4 (want hyphens at 9, 14, 19, 24)", s))
			}
		case lowerHex[c]&0x80 != 0:
			return invalid(field, fmt.Sprintf("%q is not a UUID v4 (%q is not a hex digit)", s, c))
		}
	}
	if v := lowerHex[s[14]]; v != '4' {
		return invalid(field, fmt.Sprintf("%q is a version %c UUID, want a UUID v4", s, v))
	}
	return invalid(field, fmt.Sprintf("%q is not a UUID v4 (variant must be 8, 9, a or b)", s))
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

var idSources = sync.Pool{New: func() any {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never returns an error (Go 1.24+)
	return rand.NewChaCha8(seed)
}}

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

// DeriveID returns the id the Spine gives the index-th event (from 0) that organ emits
// while handling the event parentID: a UUID v4 computed from those three values alone.
// A handle that is repeated, because its worker crashed before settling or because the
// event was delivered twice, therefore emits children with the same ids, and a consumer
// can drop the duplicates by id. The id is a hash, not a random number: it is unique as
// long as (parentID, organ, index) is.
func DeriveID(parentID, organ string, index int) string {
	var b [36]byte
	deriveID(&b, parentID, organ, index)
	return string(b[:])
}

func deriveID(b *[36]byte, parentID, organ string, index int) {
	// Length-prefixed fields, so that ("ab", "c") and ("a", "bc") never collide.
	buf := make([]byte, 0, 128) // on the stack for the usual 36-byte id and short organ name
	buf = binary.AppendUvarint(buf, uint64(len(parentID)))
	buf = append(buf, parentID...)
	buf = binary.AppendUvarint(buf, uint64(len(organ)))
	buf = append(buf, organ...)
	buf = binary.AppendUvarint(buf, uint64(index))
	sum := sha256.Sum256(buf)
	formatUUIDv4(b, binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:16]))
}

// generatedID reports whether the event's id lives in its own buffer: one that
// Draft.Build generated rather than one a caller or a decoder supplied.
func (e *event) generatedID() bool {
	return len(e.id) == len(e.idBuf) && unsafe.StringData(e.id) == &e.idBuf[0]
}
