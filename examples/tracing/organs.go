package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/necrostack/necro"
)

// The event types of the checkout flow.
const (
	typeOrderPlaced       = "order.placed"
	typePaymentCaptured   = "payment.captured"
	typeShipmentScheduled = "shipment.scheduled"
)

// An order is the payload of order.placed, and the first fields of the events that
// follow from it.
type order struct {
	OrderID  string  `json:"order_id"`
	Customer string  `json:"customer"`
	Items    int     `json:"items,omitempty"`
	Total    float64 `json:"total,omitempty"`
	Card     string  `json:"card,omitempty"` // the last four digits
}

// sampleOrders are the orders the program checks out, one trace each. The card
// processor cannot handle mallory's card, so that order's payment fails on every
// attempt and is dead-lettered.
var sampleOrders = []order{
	{OrderID: "A-1001", Customer: "ada", Items: 2, Total: 42.50, Card: "4242"},
	{OrderID: "A-1002", Customer: "grace", Items: 1, Total: 19.99, Card: "5555"},
	{OrderID: "A-1003", Customer: "mallory", Items: 3, Total: 310.00, Card: "0119"},
}

// errGatewayUnavailable is what the card processor answers for a card it cannot
// handle right now. It is not permanent: the Spine retries it.
var errGatewayUnavailable = errors.New("card processor unavailable")

// A payments organ charges the card of each order.placed and emits payment.captured.
// The charge is a call to a card processor, so it gets a client span of its own: made
// from the Handle ctx, it is a child of the organ's process span.
type payments struct {
	log    *slog.Logger
	tracer trace.Tracer
}

func (p *payments) handle(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var o order
	if err := ev.DecodePayload(&o); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode order: %w", err))
	}
	paymentID, err := p.charge(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("charge order %s: %w", o.OrderID, err)
	}
	p.log.InfoContext(ctx, "payment captured", slog.String("order_id", o.OrderID), slog.String("payment_id", paymentID),
		slog.Float64("amount", o.Total))
	captured, err := necro.NewEvent(typePaymentCaptured, map[string]any{
		"order_id": o.OrderID, "customer": o.Customer, "items": o.Items, "payment_id": paymentID, "amount": o.Total})
	return []necro.Event{captured}, err
}

// charge stands for the call to the card processor: it takes a few milliseconds and
// fails for cards ending in 0119.
func (p *payments) charge(ctx context.Context, o order) (paymentID string, err error) {
	ctx, span := p.tracer.Start(ctx, "charge card", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("order.id", o.OrderID), attribute.Float64("order.total", o.Total)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if err := pause(ctx, 3*time.Millisecond); err != nil {
		return "", err
	}
	if o.Card == "0119" {
		return "", errGatewayUnavailable
	}
	return "PAY-" + o.OrderID, nil
}

// A shipping organ books a shipment for each payment.captured and emits
// shipment.scheduled.
type shipping struct{ log *slog.Logger }

func (s *shipping) handle(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var o order
	if err := ev.DecodePayload(&o); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode payment: %w", err))
	}
	if err := pause(ctx, time.Millisecond); err != nil {
		return nil, err
	}
	shipmentID := "SHP-" + strings.TrimPrefix(o.OrderID, "A-")
	s.log.InfoContext(ctx, "shipment scheduled", slog.String("order_id", o.OrderID), slog.String("shipment_id", shipmentID))
	scheduled, err := necro.NewEvent(typeShipmentScheduled, map[string]any{
		"order_id": o.OrderID, "customer": o.Customer, "shipment_id": shipmentID})
	return []necro.Event{scheduled}, err
}

// A notifier tells the customer about each shipment.scheduled, and remembers what it
// told whom, by the flow's correlation id, for the report. Its state outlives restarts,
// so it is mounted as a plain Organ; the mutex makes it safe beside a timed-out call.
type notifier struct {
	log *slog.Logger

	mu      sync.Mutex
	notices map[string]notice // by correlation id
}

// A notice is what the notifier sent for one order.
type notice struct {
	Customer   string `json:"customer"`
	ShipmentID string `json:"shipment_id"`
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{log: log, notices: map[string]notice{}}
}

func (n *notifier) handle(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var nt notice
	if err := ev.DecodePayload(&nt); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode shipment: %w", err))
	}
	n.mu.Lock()
	n.notices[ev.Correlation()] = nt
	n.mu.Unlock()
	n.log.InfoContext(ctx, "customer notified", slog.String("customer", nt.Customer), slog.String("shipment_id", nt.ShipmentID))
	return nil, nil
}

// noticeFor returns what the notifier sent in the flow with the correlation id, if
// anything.
func (n *notifier) noticeFor(correlation string) (notice, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	nt, ok := n.notices[correlation]
	return nt, ok
}

// pause waits d, as a call to another service would, or until ctx is done.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
