package telemetry

// Log attribute keys shared by every package of necro, so that one flow's lines can be
// found with the same names wherever they were logged.
const (
	KeyEventID       = "event_id"
	KeyEventType     = "event_type"
	KeyOrgan         = "organ"
	KeyCorrelationID = "correlation_id"
	KeyTraceID       = "trace_id"
	KeySpanID        = "span_id"
)

// Span attribute keys. The messaging ones are the OpenTelemetry semantic conventions';
// the necro ones say what the conventions have no word for.
const (
	attrSystem         = "messaging.system"
	attrDestination    = "messaging.destination.name"
	attrOperationType  = "messaging.operation.type"
	attrOperationName  = "messaging.operation.name"
	attrMessageID      = "messaging.message.id"
	attrConversationID = "messaging.message.conversation_id"
	attrGroup          = "messaging.consumer.group.name"
	attrBatchCount     = "messaging.batch.message_count"
	attrErrorType      = "error.type"

	attrOrgan     = "necro.organ"
	attrAttempt   = "necro.attempt"
	attrDepth     = "necro.depth"
	attrEventType = "necro.event.type"
	attrCausation = "necro.causation_id"
	attrChildren  = "necro.children"
	attrOutcome   = "necro.outcome"
	attrReason    = "necro.reason"
	attrDelay     = "necro.retry.delay_ms"
)
