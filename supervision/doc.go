// Package supervision decides what happens after a failure: whether an event is retried
// and after how long ([RetryPolicy]), whether a crashed organ actor is restarted or
// quarantined ([OneForOne]), and how many times an (event, organ) pair has failed in
// this process ([RetryTracker]).
//
// Package actors asks [OneForOne] what to do when an organ's actor crashes, and package
// spine asks [RetryPolicy] what to do when a Handle call fails; both run these checks on
// their hot paths. The decisions are pure functions of (policy, history, now, seed): they
// read no clock, draw no random numbers, start no goroutines and, once a [History] has
// its ring, allocate nothing. Jitter comes from a seed the caller passes, usually
// [Seed] of the event id, so the same failure always gets the same delay and tests can
// predict it. [RetryTracker] is the one piece with state: a bounded, concurrency-safe
// count that reads the clock to expire entries, still without a goroutine of its own.
//
// Every policy is a plain struct whose zero value is ready to use; each field documents
// its default, and Validate reports settings that break a rule with an error wrapping
// [ErrInvalidPolicy]. The package imports only the standard library, the root package
// and golang-lru.
package supervision
