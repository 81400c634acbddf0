// Package spine dispatches events from a backend to the organs mounted for their type.
//
// A [Spine] is an actor fed by a fetcher goroutine that pulls batches from a
// [backend.Backend], never more than the free room in the Spine's window. The Spine
// actor's state and behaviour are this package's; package actors runs it as the
// coordinator of the organ actors, and the two speak through typed calls (see
// actors.Coordinator). The Spine numbers each delivery in queue order and hands it to
// every organ that listens to its type, in mount order; organs run in parallel, each on
// its own actor.
// A reorder buffer commits deliveries strictly in the order they were numbered, so for
// any window size the organs see events, and the queue receives children, in the same
// order as a one-event-at-a-time loop would produce. Committing a delivery stamps
// lineage on its children and settles the delivery together with its children, its
// retries and its dead letters in one [backend.Backend.Settle] call, on a committer
// goroutine.
//
// Delivery is at least once. Failure is per (event, organ): only the organ that failed
// is retried, by a copy of the event targeted at it, with exponential backoff; after the
// last attempt the [HandlerFailureMode] decides. Budgets guarantee termination: a
// bounded [Spine.Run] dispatches at most MaxSteps events, every chain is cut at
// MaxDepth, and one Handle call may emit at most MaxFanOut children.
package spine
