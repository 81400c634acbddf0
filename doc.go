// Package necro holds the shared words of the runtime: the immutable [Event] with its
// lineage [Metadata], the [Organ] that handles events, the [Mount] that places an organ
// in a Spine, and the sentinel errors every other package matches with errors.Is.
//
// The package starts no goroutines and does no I/O, so any package may import it.
// Dispatching lives in package spine, storage in package backend and its children,
// organ actors in package actors, and restart and retry policy in package supervision.
package necro
