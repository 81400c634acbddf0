package telemetry

import (
	"context"
	"math/rand/v2"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// IDGenerator returns the span and trace id generator that makes an event without a
// trace context one trace: every organ and every worker that handles it starts its
// process span in the trace whose id derives from the event's id, and the children
// follow. Without it, such an event (enqueued by a producer that does not trace, as
// Python NecroStack's or a raw XADD) starts a trace of its own at each handling, and a
// root fanned out to four organs becomes four traces. The sampler sees the same trace
// id at every handling, so a trace-id ratio sampler keeps or drops all of them together.
//
// [Setup] installs it. A program that builds its own TracerProvider gives it with
// sdktrace.WithIDGenerator(telemetry.IDGenerator()); every other span gets random ids,
// as with the SDK's own generator.
func IDGenerator() sdktrace.IDGenerator { return rootIDs{} }

// rootTraceKey carries the trace id a root span is to have.
type rootTraceKey struct{}

// withRootTrace asks rootIDs for the trace id derived from eventID, for the root span
// started in the returned context.
func withRootTrace(ctx context.Context, eventID string) context.Context {
	return context.WithValue(ctx, rootTraceKey{}, rootTraceID(eventID))
}

// rootTraceID derives a trace id from an event id: two 64-bit FNV-1a hashes of it with
// different offsets, each through the splitmix64 finalizer so that every bit of the id
// reaches every bit of the result. Not the UUID's own bytes: their fixed version and
// variant bits would bias the ratio samplers, which read the trace id's low 8 bytes.
// It runs at every handling of an event without a trace context, so it is cheap
// (tens of nanoseconds) rather than cryptographic: the id is not a secret.
func rootTraceID(eventID string) trace.TraceID {
	hi, lo := fnv1a(0xcbf29ce484222325, eventID), fnv1a(0x84222325cbf29ce4, eventID)
	hi, lo = mix64(hi), mix64(lo^hi)
	var id trace.TraceID
	for i := range 8 {
		id[i], id[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
	}
	if !id.IsValid() { // all zero: not a valid trace id; a random one will do
		return trace.TraceID{}
	}
	return id
}

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

type rootIDs struct{}

// NewIDs returns the trace id asked for in ctx, or a random one, and a random span id.
func (rootIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if id, ok := ctx.Value(rootTraceKey{}).(trace.TraceID); ok && id.IsValid() {
		return id, randomSpanID()
	}
	var id trace.TraceID
	for !id.IsValid() {
		hi, lo := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i], id[8+i] = byte(hi>>(56-8*i)), byte(lo>>(56-8*i))
		}
	}
	return id, randomSpanID()
}

// NewSpanID returns a random span id.
func (rootIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return randomSpanID() }

func randomSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		v := rand.Uint64()
		for i := range 8 {
			id[i] = byte(v >> (56 - 8*i))
		}
	}
	return id
}
