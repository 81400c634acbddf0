// Package telemetry makes every flow through necro visible: OpenTelemetry traces and
// metrics, and JSON logs that carry the same ids.
//
// A [Recorder] is what the Spine and the organ actors report to. A nil *Recorder is a
// valid recorder that does nothing, which is the default: tracing and metrics cost
// nothing until a program asks for them, with [Setup] (from the standard OTEL_*
// environment variables) or with [New] (from providers the program brings).
//
// Traces follow the OpenTelemetry messaging conventions. A producer's send span is the
// creation context of the events it enqueues; the W3C traceparent and tracestate of that
// context ride in the event's metadata ([necro.TraceContext]), so they survive a Redis
// stream, retries, dead letters and replay. Each (event, organ) handling is a
// "process <type>" span whose parent is the event's creation context, and the events an
// organ emits are created in that span: one root event and all its descendants are one
// trace, across organs, processes and Redis.
//
// Logs: [NewLogHandler] wraps a slog.Handler so that every record logged inside a flow
// carries trace_id, span_id, correlation_id, event_id, event_type and organ.
//
// Only this package imports otel; the rest of necro calls its small API, so its types
// stay out of their exported APIs.
package telemetry
