package necro

import (
	"crypto/sha256"
	"encoding/binary"
	"unsafe"
)

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

// EmittedBy returns ev stamped as the index-th event organ emitted while handling parent:
// the lineage of [Event.ChildOf] and, when ev's id was generated (by [NewEvent] or a
// [Draft] without an ID), the id [DeriveID] gives. An id the caller chose is kept. The
// Spine calls it on every event an organ emits.
func (ev Event) EmittedBy(parent Event, organ string, index int) Event {
	c := ev.ChildOf(parent) // a fresh copy, unless ev or parent is the zero Event
	if c.e == nil || parent.e == nil || !c.e.generatedID() {
		return c
	}
	deriveID(&c.e.idBuf, parent.e.id, organ, index)
	return c
}

// generatedID reports whether the event's id lives in its own buffer: one that
// Draft.Build generated rather than one a caller or a decoder supplied.
func (e *event) generatedID() bool {
	return len(e.id) == len(e.idBuf) && unsafe.StringData(e.id) == &e.idBuf[0]
}
