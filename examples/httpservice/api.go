package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/telemetry"
)

const (
	maxBodyBytes = 64 << 10 // an order is a few dozen bytes
	maxQuantity  = 100
	// retryAfter is the Retry-After of a 503, in seconds: about how long the organs need
	// to make room in a full queue.
	retryAfter = "1"
)

// An api serves the orders endpoints: POST /orders turns a request into an order.placed
// event, GET /orders/{id} answers what the organs recorded.
type api struct {
	sp     *spine.Spine
	shop   *shop
	log    *slog.Logger
	tracer trace.Tracer
}

// routes adds the api's endpoints to mux.
func (a *api) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /orders", a.placeOrder)
	mux.HandleFunc("GET /orders/{id}", a.getOrder)
}

// accepted is the body of a 202.
type accepted struct {
	OrderID string `json:"order_id"`
	TraceID string `json:"trace_id,omitempty"` // when the order's trace is recorded
}

func (a *api) placeOrder(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body is over %d bytes", maxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "", "read body: "+err.Error())
		return
	}
	p, err := parsePlacement(body)
	if err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			writeError(w, http.StatusBadRequest, fe.Field, fe.Error())
		} else {
			writeError(w, http.StatusBadRequest, "", err.Error())
		}
		return
	}

	// The order's trace starts here, or goes on from the caller's traceparent header:
	// with tracing on, Setup has made the W3C propagator otel's global one (with tracing
	// off, the default reads nothing, and the span is a no-op). Emit's send span, and
	// every handling of the order after it, descend from this span.
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := a.tracer.Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	ev, err := necro.NewEvent(typeOrderPlaced, p)
	if err != nil { // cannot happen for a valid placement, but an error is not for ignoring
		a.fail(ctx, w, span, err)
		return
	}
	span.SetAttributes(attribute.String("order.id", ev.ID()))
	var traceID string
	if sc := span.SpanContext(); sc.IsSampled() {
		traceID = sc.TraceID().String()
	}
	// Lines logged with this ctx carry the order's ids, as the organs' lines do.
	ctx = telemetry.WithFlow(ctx, telemetry.Flow{Event: ev})

	// Recorded before Emit: once emitted, the organs may update it at any moment.
	a.shop.accept(ev.ID(), traceID, p)
	if err := a.sp.Emit(ctx, ev); err != nil {
		a.shop.forget(ev.ID())
		if errors.Is(err, backend.ErrQueueFull) {
			// Back-pressure: the organs are behind. Refusing now, with a hint of when to
			// come back, keeps the memory bounded and tells the client the order was not taken.
			span.SetStatus(codes.Error, "queue full")
			a.log.WarnContext(ctx, "order refused: queue full")
			w.Header().Set("Retry-After", retryAfter)
			writeError(w, http.StatusServiceUnavailable, "", "too many orders in progress; retry later")
			return
		}
		a.fail(ctx, w, span, fmt.Errorf("emit: %w", err))
		return
	}
	a.log.InfoContext(ctx, "order accepted", slog.String("order_id", ev.ID()), slog.String("sku", p.SKU),
		slog.Int("quantity", p.Quantity))
	w.Header().Set("Location", "/orders/"+ev.ID())
	writeJSON(w, http.StatusAccepted, accepted{OrderID: ev.ID(), TraceID: traceID})
}

// fail answers 500 for an error that is the service's, not the client's, and logs it.
func (a *api) fail(ctx context.Context, w http.ResponseWriter, span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	a.log.ErrorContext(ctx, "order not placed", slog.Any("err", err))
	writeError(w, http.StatusInternalServerError, "", "the order could not be placed")
}

func (a *api) getOrder(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	o, ok := a.shop.order(id)
	if !ok {
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("no order %q", id))
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// A fieldError says which field of the body is wrong, and how.
type fieldError struct {
	Field   string
	Problem string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Problem }

// parsePlacement reads and checks the body of POST /orders: a JSON object with exactly
// customer (a non-blank string), sku (a non-blank string) and quantity (a whole number
// from 1 to maxQuantity). Whether the SKU exists and is in stock is the inventory's
// business, not the API's: it answers with order.rejected.
func parsePlacement(body []byte) (placement, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return placement{}, errors.New(`body must be a JSON object: {"customer": "...", "sku": "...", "quantity": 1}`)
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if name != "customer" && name != "sku" && name != "quantity" {
			return placement{}, &fieldError{Field: name, Problem: "unknown field; an order has customer, sku and quantity"}
		}
	}
	var p placement
	var err error
	if p.Customer, err = nonBlank(fields, "customer"); err != nil {
		return placement{}, err
	}
	if p.SKU, err = nonBlank(fields, "sku"); err != nil {
		return placement{}, err
	}
	raw, ok := fields["quantity"]
	if !ok {
		return placement{}, &fieldError{Field: "quantity", Problem: "required"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	_ = dec.Decode(&v) // cannot fail: raw is one value of an object that decoded
	n, isNumber := v.(json.Number)
	q, err := n.Int64()
	if !isNumber || err != nil || q < 1 || q > maxQuantity {
		return placement{}, &fieldError{Field: "quantity", Problem: fmt.Sprintf("must be a whole number from 1 to %d, got %s", maxQuantity, raw)}
	}
	p.Quantity = int(q)
	return p, nil
}

// nonBlank returns the string field name, trimmed, or an error when it is missing, not
// a string, or blank.
func nonBlank(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", &fieldError{Field: name, Problem: "required"}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &fieldError{Field: name, Problem: fmt.Sprintf("must be a string, got %s", raw)}
	}
	if s = strings.TrimSpace(s); s == "" {
		return "", &fieldError{Field: name, Problem: "must not be blank"}
	}
	return s, nil
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a client gone away is not ours to report
}

// An apiError is the body of every error answer; Field names the body's field at fault.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, field, msg string) {
	writeJSON(w, status, apiError{Error: msg, Field: field})
}
