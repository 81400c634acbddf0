// Package chaosapp is the test app of the chaos harness: two organs whose behaviour is
// written in the payload of the events they handle, a ledger of every Handle call, and
// [Expect], which says from a root event alone what a run must end with.
//
// Every event has type [EventType] and a [Directive] as payload. Organ [OrganWork]
// obeys it: succeed, fail, panic, sleep, hang past the handler timeout, emit children,
// emit too many, loop until the depth budget stops it, or kill its own process.
// Organ [OrganAudit] listens to the same events and always succeeds, so a run shows that
// one organ's failures leave the other's handling of the same event alone.
//
// The app's [App.Config] sets small budgets and timeouts ([MaxDepth], [MaxFanOut],
// [HandlerTimeout], [AbandonAfter], [MaxAttempts]) so that every fault resolves within
// seconds. With a ledger ([Options.Ledger]) each Handle call appends one JSON line
// ([LedgerLine]) with a single write to a file opened O_APPEND: a process killed with
// SIGKILL loses none of the lines it wrote, since they are in the page cache already.
// A harness reads the ledgers back with [ReadLedger] and compares what they show, and
// the dead letters, with [Expect].
//
// The cmd/necro-actors CLI mounts the app as "chaos": `necro-actors worker chaos
// --ledger FILE` serves it from Redis, `necro-actors run chaos` runs a built-in mix of
// directives in memory and checks the outcome against [Expect].
package chaosapp
