// Package actors runs organs as protoactor-go actors: one actor, with its own mailbox,
// per mounted organ, all children of one coordinator actor that supervises them.
//
// The coordinator's behaviour is a [Coordinator], the Spine's: a [Host] runs it on the
// coordinator's goroutine, one message at a time, calling the method for the message's
// kind, so the Coordinator's state needs no lock. Each call gets the host's [Control],
// which holds what only that goroutine may do: dispatch work, restart, abandon, set a
// timer. Anyone may post the Coordinator's own messages with [Host.Send].
//
// Organ actors handle a batch of [Item]s at a time, one event after another, and answer
// with [Done]. A panic inside Handle becomes a *necro.PanicError in the results, then
// re-panics so that protoactor escalates it to the coordinator, whose Coordinator
// decides the restart ([Coordinator.Crashed], [Control.Restart]); the restarted actor is
// built from the mount's factory and announces itself ([Coordinator.Ready]). Every
// Handle call gets a ctx with the handler deadline; a watchdog ends it, and a call still
// running AbandonAfter later is reported [Stuck] so that the Coordinator can abandon it
// ([Control.Abandon]) and go on with a fresh actor.
//
// With tracing on, each Handle call runs inside a process span that the organ actor
// starts with the call; its [Result] carries the span, still open, to the Coordinator,
// which ends it once it knows what became of the event.
//
// protoactor-go is used here and nowhere else in the module, and none of its types is
// in this package's API; its logs go to the logger of [Config].
package actors
