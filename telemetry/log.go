package telemetry

import (
	"context"
	"io"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro"
)

// A Flow says which event, and which organ, the code holding a ctx works for. The
// organ actors put one in every Handle ctx; [NewLogHandler] reads it.
type Flow struct {
	Event necro.Event
	Organ string // empty outside a handler: in the Spine's own work on the event
}

type flowKey struct{}

// WithFlow returns ctx carrying f.
func WithFlow(ctx context.Context, f Flow) context.Context {
	return context.WithValue(ctx, flowKey{}, f)
}

// FlowFrom returns the flow ctx carries, if any.
func FlowFrom(ctx context.Context) (Flow, bool) {
	f, ok := ctx.Value(flowKey{}).(Flow)
	return f, ok
}

// IsFlowKey reports whether key is the context key of a Flow. A context type that
// carries its flow in its own fields (the organ actors' Handle ctx, which must not
// allocate per call) answers Value(key) with its Flow when IsFlowKey(key).
func IsFlowKey(key any) bool {
	_, ok := key.(flowKey)
	return ok
}

// NewLogHandler wraps h so that every record logged with a ctx inside a flow carries
// trace_id and span_id (of the ctx's span, or else of the event's creation context),
// correlation_id, event_id, event_type and organ. A record that already has one of
// these keys keeps its own. Payloads are never added.
func NewLogHandler(h slog.Handler) slog.Handler { return &logHandler{h: h} }

// NewJSONLogger returns a logger writing JSON lines to w at level, through
// [NewLogHandler]. A nil level means Info.
func NewJSONLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	if level == nil {
		level = slog.LevelInfo
	}
	return slog.New(NewLogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})))
}

type logHandler struct {
	h slog.Handler
	// Once WithGroup was called, attributes added to a record land in the group. To keep
	// the flow's ids at the top level, such a handler remembers the handler before its
	// first group and what was done since, and replays that over the ids.
	base slog.Handler
	ops  []func(slog.Handler) slog.Handler
}

func (l *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := &logHandler{h: l.h.WithAttrs(attrs), base: l.base, ops: l.ops}
	if c.base != nil {
		c.ops = append(slices.Clip(l.ops), func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
	}
	return c
}

func (l *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	c := &logHandler{h: l.h.WithGroup(name), base: l.base, ops: l.ops}
	if c.base == nil {
		c.base = l.h
	}
	c.ops = append(slices.Clip(c.ops), func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
	return c
}

func (l *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return l.h.Handle(ctx, r)
	}
	add := flowAttrs(ctx)
	if len(add) == 0 {
		return l.h.Handle(ctx, r)
	}
	have := map[string]bool{}
	r.Attrs(func(a slog.Attr) bool {
		have[a.Key] = true
		return true
	})
	keep := add[:0]
	for _, a := range add {
		if !have[a.Key] {
			keep = append(keep, a)
		}
	}
	if l.base == nil {
		r = r.Clone()
		r.AddAttrs(keep...)
		return l.h.Handle(ctx, r)
	}
	h := l.base.WithAttrs(keep)
	for _, op := range l.ops {
		h = op(h)
	}
	return h.Handle(ctx, r)
}

// flowAttrs returns the ids of the flow ctx is in.
func flowAttrs(ctx context.Context) []slog.Attr {
	var out []slog.Attr
	sc := trace.SpanContextFromContext(ctx)
	f, inFlow := FlowFrom(ctx)
	if !sc.IsValid() && inFlow {
		// No span (tracing off, or an unsampled trace): the creation context still names
		// the trace the event belongs to.
		if tc := f.Event.TraceContext(); !tc.IsZero() {
			sc = trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier{&tc}))
		}
	}
	if sc.IsValid() {
		out = append(out, slog.String(KeyTraceID, sc.TraceID().String()), slog.String(KeySpanID, sc.SpanID().String()))
	}
	if inFlow && !f.Event.IsZero() {
		out = append(out, slog.String(KeyCorrelationID, f.Event.Correlation()), slog.String(KeyEventID, f.Event.ID()),
			slog.String(KeyEventType, f.Event.Type()))
	}
	if inFlow && f.Organ != "" {
		out = append(out, slog.String(KeyOrgan, f.Organ))
	}
	return out
}
