package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/necrostack/necro"
)

// The event types of an order's flow. order.placed comes from POST /orders; the organs
// emit the rest.
const (
	typeOrderPlaced     = "order.placed"     // {customer, sku, quantity}; its id is the order id
	typeStockReserved   = "stock.reserved"   // {order_id, customer, sku, quantity, amount_cents}
	typeOrderRejected   = "order.rejected"   // {order_id, customer, reason}
	typePaymentCaptured = "payment.captured" // {order_id, customer, amount_cents, payment_id}
)

// The statuses an order goes through, and who sets them: the API accepts it, inventory
// reserves or rejects it, billing charges it, and the notifier confirms it once the
// customer has been told. Confirmed and rejected are final.
const (
	statusAccepted  = "accepted"
	statusReserved  = "reserved"
	statusPaid      = "paid"
	statusConfirmed = "confirmed"
	statusRejected  = "rejected"
)

// final reports whether an order in this status will not change any more.
func final(status string) bool { return status == statusConfirmed || status == statusRejected }

// An item is what the shop sells under one SKU.
type item struct {
	name       string
	priceCents int
	stock      int // units on hand when the service starts
}

// catalog is the shop. The monitors run out after three units, so orders for them are
// rejected sooner or later.
var catalog = map[string]item{
	"kbd-01": {name: "keyboard", priceCents: 4900, stock: 50},
	"mou-01": {name: "mouse", priceCents: 1900, stock: 100},
	"mon-27": {name: "27-inch monitor", priceCents: 18900, stock: 3},
}

// An order is what GET /orders/{id} answers: the order as the organs recorded it.
type order struct {
	ID          string `json:"order_id"`
	Status      string `json:"status"`
	Customer    string `json:"customer"`
	SKU         string `json:"sku"`
	Quantity    int    `json:"quantity"`
	AmountCents int    `json:"amount_cents,omitempty"`
	PaymentID   string `json:"payment_id,omitempty"`
	Reason      string `json:"reason,omitempty"`   // why it was rejected
	TraceID     string `json:"trace_id,omitempty"` // when tracing is on
}

// A placement is the payload of order.placed: the fields of POST /orders.
type placement struct {
	Customer string `json:"customer"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// A shop holds the state the organs share: the stock and the orders. The organs run on
// actors of their own, concurrently with each other and with the HTTP handlers, so the
// state is behind a mutex. It lives in memory for the example's sake; a real service
// keeps it in its database.
type shop struct {
	log            *slog.Logger
	paymentLatency time.Duration // how long the stand-in payment provider takes

	mu     sync.Mutex        // guards stock and orders
	stock  map[string]int    // units on hand, by SKU
	orders map[string]*order // by order id
}

func newShop(log *slog.Logger, paymentLatency time.Duration) *shop {
	s := &shop{log: log, paymentLatency: paymentLatency, stock: map[string]int{}, orders: map[string]*order{}}
	for sku, it := range catalog {
		s.stock[sku] = it.stock
	}
	return s
}

// mounts returns the organs in the order they see an event. None keeps state of its own,
// so each is one Organ reused across restarts.
func (s *shop) mounts() []necro.Mount {
	return []necro.Mount{
		{Name: "inventory", Organ: necro.NewOrgan([]string{typeOrderPlaced}, s.reserve)},
		{Name: "billing", Organ: necro.NewOrgan([]string{typeStockReserved}, s.charge)},
		{Name: "notifier", Organ: necro.NewOrgan([]string{typePaymentCaptured, typeOrderRejected}, s.notify)},
	}
}

// accept records an order the API is about to emit.
func (s *shop) accept(id, traceID string, p placement) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orders[id] = &order{ID: id, Status: statusAccepted, Customer: p.Customer, SKU: p.SKU, Quantity: p.Quantity, TraceID: traceID}
}

// forget drops an order the queue refused: it was never placed.
func (s *shop) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.orders, id)
}

// order returns a copy of the order with this id.
func (s *shop) order(id string) (order, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[id]
	if !ok {
		return order{}, false
	}
	return *o, true
}

// orderByID returns the order with this id, recording it when this process has not seen
// it: with Redis, another instance may have accepted it. The caller holds s.mu.
func (s *shop) orderByID(id string) *order {
	o, ok := s.orders[id]
	if !ok {
		o = &order{ID: id, Status: statusAccepted}
		s.orders[id] = o
	}
	return o
}

// reserve is the inventory organ: it takes the order's units off the stock and emits
// stock.reserved, or emits order.rejected for an unknown SKU or too little stock.
func (s *shop) reserve(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var p placement
	if err := ev.DecodePayload(&p); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode order: %w", err)) // a retry cannot fix it
	}
	id := ev.ID() // the order id the API answered with
	amount, reason := s.take(id, p)
	if reason != "" {
		s.log.InfoContext(ctx, "order rejected", slog.String("order_id", id), slog.String("reason", reason))
		rejected, err := necro.NewEvent(typeOrderRejected, map[string]any{
			"order_id": id, "customer": p.Customer, "reason": reason})
		return []necro.Event{rejected}, err
	}
	s.log.InfoContext(ctx, "stock reserved", slog.String("order_id", id), slog.String("sku", p.SKU),
		slog.Int("quantity", p.Quantity))
	reserved, err := necro.NewEvent(typeStockReserved, map[string]any{
		"order_id": id, "customer": p.Customer, "sku": p.SKU, "quantity": p.Quantity, "amount_cents": amount})
	return []necro.Event{reserved}, err
}

// take reserves the order's units and returns the amount to charge, or the reason the
// order is rejected. Delivery is at least once, so the same order may come twice (after
// a crash, say): it then answers as the first time and takes nothing more.
func (s *shop) take(id string, p placement) (amountCents int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orderByID(id)
	o.Customer, o.SKU, o.Quantity = p.Customer, p.SKU, p.Quantity
	if o.Status != statusAccepted { // handled before
		return o.AmountCents, o.Reason
	}
	it, known := catalog[p.SKU]
	switch {
	case !known:
		o.Status, o.Reason = statusRejected, fmt.Sprintf("unknown sku %q", p.SKU)
	case s.stock[p.SKU] < p.Quantity:
		o.Status, o.Reason = statusRejected, fmt.Sprintf("out of stock: %d %s left, %d wanted", s.stock[p.SKU], it.name, p.Quantity)
	default:
		s.stock[p.SKU] -= p.Quantity
		o.Status, o.AmountCents = statusReserved, it.priceCents*p.Quantity
	}
	return o.AmountCents, o.Reason
}

// A reservation is the payload of stock.reserved.
type reservation struct {
	OrderID     string `json:"order_id"`
	Customer    string `json:"customer"`
	AmountCents int    `json:"amount_cents"`
}

// charge is the billing organ: it charges the customer for reserved stock and emits
// payment.captured.
func (s *shop) charge(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var r reservation
	if err := ev.DecodePayload(&r); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode reservation: %w", err))
	}
	// A stand-in for the call to the payment provider, which takes a while and gives up
	// when ctx ends (the handler timeout, or a shutdown past its deadline). The payment id
	// comes from the order id, as an idempotency key would: charging the same order
	// again charges it once.
	if s.paymentLatency > 0 {
		select {
		case <-time.After(s.paymentLatency):
		case <-ctx.Done():
			return nil, fmt.Errorf("charge order %s: %w", r.OrderID, context.Cause(ctx))
		}
	}
	paymentID := "pay_" + r.OrderID
	s.mu.Lock()
	o := s.orderByID(r.OrderID)
	if o.Status == statusReserved {
		o.Status, o.PaymentID = statusPaid, paymentID
	}
	s.mu.Unlock()
	s.log.InfoContext(ctx, "payment captured", slog.String("order_id", r.OrderID), slog.String("payment_id", paymentID),
		slog.Int("amount_cents", r.AmountCents))
	captured, err := necro.NewEvent(typePaymentCaptured, map[string]any{
		"order_id": r.OrderID, "customer": r.Customer, "amount_cents": r.AmountCents, "payment_id": paymentID})
	return []necro.Event{captured}, err
}

// An outcome is the part of payment.captured and order.rejected the notifier reads.
type outcome struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Reason   string `json:"reason"`
}

// notify is the notifier organ: it tells the customer what became of the order (here, a
// log line) and marks a paid order confirmed.
func (s *shop) notify(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var o outcome
	if err := ev.DecodePayload(&o); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode outcome: %w", err))
	}
	status := statusRejected
	if ev.Type() == typePaymentCaptured {
		status = statusConfirmed
	}
	s.mu.Lock()
	rec := s.orderByID(o.OrderID)
	rec.Status = status
	if o.Reason != "" {
		rec.Reason = o.Reason
	}
	s.mu.Unlock()
	s.log.InfoContext(ctx, "customer notified", slog.String("order_id", o.OrderID), slog.String("customer", o.Customer),
		slog.String("status", status))
	return nil, nil
}

// counts returns how many orders are in each status.
func (s *shop) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[string]int{}
	for _, o := range s.orders {
		n[o.Status]++
	}
	return n
}

// unfinished returns how many orders are not in a final status yet.
func (s *shop) unfinished() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, o := range s.orders {
		if !final(o.Status) {
			n++
		}
	}
	return n
}
