// Package necro holds the shared words of the runtime: the immutable [Event] with its
// lineage [Metadata], the [Organ] that handles events, the [Mount] that places an organ
// in a Spine, and the sentinel errors every other package matches with errors.Is.
//
// It also holds the event's wire form, the JSON object Python NecroStack reads and
// writes: [Event.MarshalJSON] and [Event.AppendJSON] write it, [DecodeEvent] reads it,
// strictly, and [DecodeWithMeta] reads it with the lineage a store keeps beside it. The
// decoders live here, next to Event, because only code inside the package can build an
// Event from what it has just checked: a decoder outside would build events through
// [Draft.Build], which checks them again and costs one more allocation per event read
// from a store.
//
// The package starts no goroutines and does no I/O, so any package may import it.
// Dispatching lives in package spine, storage in package backend and its children,
// organ actors in package actors, and restart and retry policy in package supervision.
package necro
