// Package redis is the durable store: Redis Streams with a consumer group, so that any
// number of worker processes, on any number of machines, share the work of one stream.
// It implements the [backend.Backend] contract and speaks the wire format of Python
// NecroStack, so Python and Go producers and consumers can share a stream.
//
// # Layout in Redis
//
//   - the stream (default necrostack:events): one entry per event, with the field
//     event holding {"id","timestamp","event_type","payload"} exactly as Python writes
//     it and the field meta holding necro's lineage, which Python ignores;
//   - the consumer group (default necrostack), created on demand from id 0;
//   - the dead-letter stream (default <stream>:dlq) with the fields original_id, event,
//     reason and failed_at that Python writes, plus necro's organ, attempts, error,
//     meta and receipt, and size for a poison entry;
//   - a sorted set <stream>:delayed holding retries that are not due yet;
//   - short-lived keys <stream>:enqueue:<token>, one per chunk of an Enqueue whose
//     reply may have been lost, so that sending the chunk again applies it once.
//
// # Guarantees
//
// Delivery is at least once. Settle runs one Lua script per batch: for each delivery
// it acknowledges the entry — XACK's answer says whether it was still pending; if not,
// nothing is written — and adds the children, the due retries and the dead letters. A
// script is atomic, so a crash never leaves a parent acknowledged without its children. The Spine derives the ids of children from their
// parent ([necro.DeriveID]), so a handle repeated after a crash emits the same ids.
//
// A worker that dies holding deliveries leaves them pending; after [Config.ClaimAfter]
// another worker claims them (XPENDING, then XCLAIM). A live worker refreshes its own pending
// entries, so slow but healthy work is never stolen. Entries deleted while pending are
// dead-lettered with the reason, never dropped silently. The delivery count is not a
// failure count: failures are counted by the Spine's retries, so a crash-looping worker
// does not dead-letter healthy events ([Config.MaxDeliveries] is off by default).
//
// [Backend.Enqueue] is all or none up to [EnqueueChunkEvents] events and
// [EnqueueChunkBytes] bytes; a larger call is written chunk after chunk, so that no
// script holds Redis for long, and one that fails part-way says how many events went
// in ([backend.EnqueueError]).
//
// An entry that cannot be decoded (not JSON, the wrong shape, an invalid id, too large,
// unknown fields) goes to the dead-letter stream at once, with a reason that names the
// problem, the first [Config.PoisonKeepBytes] of its text and its size; it never sits
// pending. An entry larger than [Config.MaxEntryBytes] is dead-lettered inside Redis
// and never taken into the worker, and a Pull hands out at most [Config.MaxPullBytes]:
// new entries come from a plain XREADGROUP whose reply is checked as it arrives and cut
// short at an entry or a total over the bounds, and the entries of a cut read, like
// claimed ones, are read again by a Lua script that measures each.
//
// Acknowledged entries are trimmed (XTRIM MINID) below the oldest entry that some
// group has not acknowledged, so the stream stays small under steady load without ever
// losing an entry another group still needs.
//
// # Redis settings
//
// Redis must not evict keys (maxmemory-policy noeviction) and should persist every
// write (appendonly yes, appendfsync always or everysec); [Open] logs a warning when it
// finds otherwise. A URL may be redis:// or rediss:// (TLS) and carry an ACL user and a
// password; the password never appears in errors or logs.
package redis
