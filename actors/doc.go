// Package actors runs organs as protoactor-go actors: one actor, with its own mailbox,
// per mounted organ, all children of one coordinator actor that supervises them.
//
// A [Host] owns the actor system. The coordinator hands every message it receives to a
// single handler function (the Spine's), so all coordinator state is touched by one
// goroutine at a time, the actor way. Organ actors handle a batch of [Item]s at a time,
// one event after another, and answer with [Done]. A panic inside Handle becomes a
// *necro.PanicError in the results, then re-panics so that protoactor escalates it to
// the coordinator, whose handler decides the restart ([Crashed], [Host.Restart]); the
// restarted actor is built from the mount's factory and announces itself with [Ready].
// Every Handle call gets a ctx with the handler deadline; a watchdog expires it, and a
// handler still running AbandonAfter later is reported as [Stuck] so that the handler
// can abandon it ([Host.Abandon]) and go on with a fresh actor.
//
// protoactor-go is used here and nowhere else in the module's API; its logs go to the
// logger of [Config].
package actors
