// Package backendtest holds the conformance suite of the [backend.Backend] contract:
// what every store promises the Spine about order, acks, redelivery, retries, dead
// letters, atomic settlement, closing, concurrent consumers and bounded queues.
//
// Each store's tests call [Run] with a factory; a new store passes the suite before
// the Spine may use it. The suite waits on real time (a store may live in another
// process, so a fake clock cannot reach it), but only for short, configured delays
// and with generous deadlines, so that it stays fast and does not flake on a loaded
// machine.
package backendtest
