package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/necrostack/necro"
)

// The event types of the pipeline.
const (
	typeSubmitted       = "order.submitted"
	typeValidated       = "order.validated"
	typeRejected        = "order.rejected"
	typeQueued          = "order.queued"
	typeFilled          = "order.filled"
	typePartiallyFilled = "order.partially_filled"
	typeTradeExecuted   = "trade.executed"
	typeTradeSettled    = "trade.settled"
)

// allTypes lists every type the pipeline emits; the audit organ listens to them all.
var allTypes = []string{typeSubmitted, typeValidated, typeRejected, typeQueued, typeFilled,
	typePartiallyFilled, typeTradeExecuted, typeTradeSettled}

const (
	buy    = "BUY"
	sell   = "SELL"
	limit  = "LIMIT"
	market = "MARKET"

	maxQuantity = 10_000
	maxPrice    = 100_000
	feeRate     = 0.0001
)

// knownSymbols are the symbols the exchange lists.
var knownSymbols = map[string]bool{"AAPL": true, "GOOGL": true, "MSFT": true, "AMZN": true,
	"TSLA": true, "NVDA": true, "META": true}

// restrictedTraders cannot settle: a trade of theirs fails permanently and is dead-lettered.
var restrictedTraders = map[string]bool{"trader_bad_1": true, "trader_bad_2": true}

// An order is the payload of order.validated, and the first fields of every later
// event about the order. OrderID is the id of the order.submitted event; Seq is the
// order's place in the file, from 1.
type order struct {
	OrderID  string  `json:"order_id"`
	Seq      int     `json:"seq"`
	TraderID string  `json:"trader_id"`
	Symbol   string  `json:"symbol,omitempty"`
	Side     string  `json:"side,omitempty"`
	Type     string  `json:"order_type,omitempty"`
	Quantity int     `json:"quantity,omitempty"`
	Price    float64 `json:"price,omitempty"` // LIMIT orders only
}

// An outcome is the payload of the terminal events of an order: order.rejected,
// order.queued, order.filled and order.partially_filled.
type outcome struct {
	order
	Reason    string  `json:"reason,omitempty"` // why it was rejected
	Fills     []fill  `json:"fills,omitempty"`
	Filled    int     `json:"filled_quantity,omitempty"`
	Remaining int     `json:"remaining_quantity,omitempty"` // partially filled only
	AvgPrice  float64 `json:"avg_price,omitempty"`
	Rested    bool    `json:"rested,omitempty"` // the unfilled rest of a LIMIT order waits in the book
}

type fill struct {
	Price    float64 `json:"price"`
	Quantity int     `json:"quantity"`
}

// A trade is the payload of trade.executed. TradeID is the incoming order's id and the
// fill's number, so matching the same order again would name the same trades.
type trade struct {
	TradeID     string  `json:"trade_id"`
	Symbol      string  `json:"symbol"`
	Price       float64 `json:"price"`
	Quantity    int     `json:"quantity"`
	BuyerID     string  `json:"buyer_id"`
	BuyerOrder  string  `json:"buyer_order"`
	SellerID    string  `json:"seller_id"`
	SellerOrder string  `json:"seller_order"`
}

// A settlement is the payload of trade.settled.
type settlement struct {
	trade
	TotalValue float64 `json:"total_value"`
	Fee        float64 `json:"settlement_fee"`
}

// validate handles order.submitted ({"seq": n, "order": {...}}) with the rules of the
// seed's ValidateOrder, and emits order.validated, or order.rejected whose reason names
// every rule the order breaks, joined by "; ". It never fails: a bad order is an
// outcome, not an error.
func validate(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	// Payload keeps numbers as json.Number, so 100 and 100.0 stay apart as in Python.
	p := ev.Payload()
	o := order{OrderID: ev.ID(), TraderID: "unknown"}
	if n, ok := p["seq"].(json.Number); ok {
		seq, _ := n.Int64() // we wrote it ourselves in process; 0 would only blur the report
		o.Seq = int(seq)
	}
	var problems []string
	if fields, ok := p["order"].(map[string]any); ok {
		problems = check(fields, &o)
	} else {
		problems = []string{"order must be a JSON object"}
	}
	if len(problems) > 0 {
		rej, err := necro.NewEvent(typeRejected, outcome{order: order{OrderID: o.OrderID, Seq: o.Seq, TraderID: o.TraderID},
			Reason: strings.Join(problems, "; ")})
		return []necro.Event{rej}, err
	}
	ok, err := necro.NewEvent(typeValidated, o)
	return []necro.Event{ok}, err
}

// check fills o from the fields of a submitted order and returns the rules they break.
func check(fields map[string]any, o *order) []string {
	var problems []string
	if s, _ := fields["trader_id"].(string); strings.TrimSpace(s) != "" {
		o.TraderID = strings.TrimSpace(s)
	} else {
		problems = append(problems, "trader_id is required")
	}
	o.Symbol = upper(fields["symbol"])
	if !knownSymbols[o.Symbol] {
		problems = append(problems, "unknown symbol "+show(fields["symbol"]))
	}
	o.Side = upper(fields["side"])
	if o.Side != buy && o.Side != sell {
		problems = append(problems, "side must be BUY or SELL, got "+show(fields["side"]))
	}
	o.Type = upper(fields["order_type"])
	if o.Type != limit && o.Type != market {
		problems = append(problems, "order_type must be LIMIT or MARKET, got "+show(fields["order_type"]))
	}
	q, ok := wholeNumber(fields["quantity"])
	if !ok || q < 1 || q > maxQuantity {
		problems = append(problems, fmt.Sprintf("quantity must be a whole number from 1 to %d, got %s", maxQuantity, show(fields["quantity"])))
	}
	o.Quantity = q
	if o.Type == limit {
		price, ok := number(fields["price"])
		if !ok || price <= 0 || price > maxPrice {
			problems = append(problems, fmt.Sprintf("LIMIT price must be a number above 0 and at most %d, got %s", maxPrice, show(fields["price"])))
		}
		o.Price = price
	}
	return problems
}

// wholeNumber accepts what Python's isinstance(v, int) accepts from JSON: a number
// written without '.', 'e' or 'E'. 100.0 and true are not whole numbers.
func wholeNumber(v any) (int, bool) {
	n, ok := v.(json.Number)
	if !ok || strings.ContainsAny(n.String(), ".eE") {
		return 0, false
	}
	i, err := strconv.Atoi(n.String())
	return i, err == nil
}

// number accepts any finite JSON number.
func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64() // ±Inf comes with an error
	return f, err == nil
}

func upper(v any) string {
	s, _ := v.(string)
	return strings.ToUpper(strings.TrimSpace(s))
}

// show writes a field's value as it appeared in the JSON, or "nothing" when it is missing.
func show(v any) string {
	if v == nil {
		return "nothing"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// A matchingEngine is the match organ: one price-time order book per symbol, as in the
// seed's MatchingEngine. It is stateful, so it is mounted with a Factory: its actor
// calls Handle one event at a time, so the books need no lock, and a restart begins
// from a fresh, empty engine.
type matchingEngine struct {
	books map[string]*book
}

// A book holds the resting orders of one symbol, best first: bids by falling price,
// asks by rising price, and orders at the same price in arrival order.
type book struct {
	bids, asks []restingOrder
}

type restingOrder struct {
	OrderID   string
	TraderID  string
	Price     float64
	Remaining int
}

func newMatchingEngine() *matchingEngine {
	return &matchingEngine{books: map[string]*book{}}
}

// ListensTo implements necro.Organ.
func (m *matchingEngine) ListensTo() []string { return []string{typeValidated} }

// Handle matches one validated order against the other side of its symbol's book. Each
// fill is at the resting order's price and emits trade.executed; then comes the order's
// terminal event: order.filled, order.partially_filled (a LIMIT rest goes into the book,
// a MARKET rest is dropped), order.queued for an unfilled LIMIT, or order.rejected
// "no liquidity" for an unfilled MARKET.
func (m *matchingEngine) Handle(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	var o order
	if err := ev.DecodePayload(&o); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode order: %w", err))
	}
	if o.Quantity < 1 || (o.Side != buy && o.Side != sell) || (o.Type != limit && o.Type != market) {
		return nil, necro.Permanent(errors.New("order.validated holds an order that breaks the rules"))
	}
	b := m.books[o.Symbol]
	if b == nil {
		b = &book{}
		m.books[o.Symbol] = b
	}
	opposite := &b.asks
	if o.Side == sell {
		opposite = &b.bids
	}

	// Plan the fills and build every event before the book changes: a Handle that fails
	// leaves the book as it was, so a retry cannot fill an order twice.
	var fills []fill
	left := o.Quantity
	for _, r := range *opposite {
		if left == 0 || !crosses(o, r.Price) {
			break
		}
		q := min(left, r.Remaining)
		fills = append(fills, fill{Price: r.Price, Quantity: q})
		left -= q
	}
	out := make([]necro.Event, 0, len(fills)+1)
	for i, f := range fills {
		r := (*opposite)[i]
		t := trade{TradeID: fmt.Sprintf("%s/%d", o.OrderID, i+1), Symbol: o.Symbol, Price: f.Price, Quantity: f.Quantity,
			BuyerID: o.TraderID, BuyerOrder: o.OrderID, SellerID: r.TraderID, SellerOrder: r.OrderID}
		if o.Side == sell {
			t.BuyerID, t.BuyerOrder, t.SellerID, t.SellerOrder = r.TraderID, r.OrderID, o.TraderID, o.OrderID
		}
		tev, err := necro.NewEvent(typeTradeExecuted, t)
		if err != nil {
			return nil, err
		}
		out = append(out, tev)
	}
	res := outcome{order: o, Fills: fills, Filled: o.Quantity - left}
	if len(fills) > 0 {
		var value float64
		for _, f := range fills {
			value += f.Price * float64(f.Quantity)
		}
		res.AvgPrice = value / float64(res.Filled)
	}
	var typ string
	switch {
	case left == 0:
		typ = typeFilled
	case len(fills) > 0:
		typ, res.Remaining, res.Rested = typePartiallyFilled, left, o.Type == limit
	case o.Type == limit:
		typ = typeQueued
	default:
		typ, res.Reason = typeRejected, "no liquidity for MARKET order"
	}
	tev, err := necro.NewEvent(typ, res)
	if err != nil {
		return nil, err
	}
	out = append(out, tev)

	for i, f := range fills {
		(*opposite)[i].Remaining -= f.Quantity
	}
	*opposite = slices.DeleteFunc(*opposite, func(r restingOrder) bool { return r.Remaining == 0 })
	if left > 0 && o.Type == limit {
		b.rest(o, left)
	}
	return out, nil
}

// crosses reports whether an incoming order may trade at a resting order's price.
func crosses(o order, price float64) bool {
	switch {
	case o.Type == market:
		return true
	case o.Side == buy:
		return price <= o.Price
	default:
		return price >= o.Price
	}
}

// rest puts the unfilled quantity of a LIMIT order into the book, behind every order at
// the same or a better price.
func (b *book) rest(o order, quantity int) {
	side, ahead := &b.bids, func(p float64) bool { return p >= o.Price }
	if o.Side == sell {
		side, ahead = &b.asks, func(p float64) bool { return p <= o.Price }
	}
	i := 0
	for i < len(*side) && ahead((*side)[i].Price) {
		i++
	}
	*side = slices.Insert(*side, i, restingOrder{OrderID: o.OrderID, TraderID: o.TraderID, Price: o.Price, Remaining: quantity})
}

// A symbolBook is a copy of one symbol's book, for the report.
type symbolBook struct {
	Symbol     string
	Bids, Asks []restingOrder
}

// snapshot copies the books, sorted by symbol.
func (m *matchingEngine) snapshot() []symbolBook {
	var out []symbolBook
	for _, sym := range slices.Sorted(maps.Keys(m.books)) {
		b := m.books[sym]
		out = append(out, symbolBook{Symbol: sym, Bids: slices.Clone(b.bids), Asks: slices.Clone(b.asks)})
	}
	return out
}

// An engineRef is the match organ's Factory. It remembers the engine it made last so
// that the report can show the books once the run is over. The Spine calls the factory
// when it checks the mount, when the organ's actor starts and after every restart, so
// the last engine made is the one that handled the last events.
type engineRef struct {
	mu     sync.Mutex
	latest *matchingEngine
}

func (r *engineRef) newOrgan() necro.Organ {
	e := newMatchingEngine()
	r.mu.Lock()
	r.latest = e
	r.mu.Unlock()
	return e
}

// books returns a copy of the latest engine's books. Call it only after Run returned,
// when no Handle call is running.
func (r *engineRef) books() []symbolBook {
	r.mu.Lock()
	e := r.latest
	r.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.snapshot()
}

// settle handles trade.executed and emits trade.settled with the total value and a fee
// of round(total × 0.0001, 2). A trade with a restricted trader fails with
// necro.Permanent: retrying cannot help, so the Spine dead-letters it at once.
func settle(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	var t trade
	if err := ev.DecodePayload(&t); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode trade: %w", err))
	}
	switch {
	case restrictedTraders[t.BuyerID]:
		return nil, necro.Permanent(fmt.Errorf("settlement failed: %s has insufficient funds", t.BuyerID))
	case restrictedTraders[t.SellerID]:
		return nil, necro.Permanent(fmt.Errorf("settlement failed: %s has restricted account", t.SellerID))
	}
	total := t.Price * float64(t.Quantity)
	done, err := necro.NewEvent(typeTradeSettled, settlement{trade: t, TotalValue: total, Fee: roundCents(total * feeRate)})
	return []necro.Event{done}, err
}

// roundCents rounds x to two decimals as Python's round(x, 2) does: from x's exact
// binary value, halves to even. strconv rounds the same way.
func roundCents(x float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 2, 64), 64) // cannot fail: FormatFloat wrote a number
	return r
}

// A journal is the audit organ: it counts the events of each type it sees and keeps
// them, in the order it saw them, for the report. It stands for a store outside the
// organ, so it is mounted as a plain Organ whose state outlives restarts; the mutex
// makes it safe when a timed-out call is still running beside a fresh one.
type journal struct {
	mu     sync.Mutex
	counts map[string]int
	events []necro.Event
}

func newJournal() *journal { return &journal{counts: map[string]int{}} }

func (j *journal) handle(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.counts[ev.Type()]++
	j.events = append(j.events, ev)
	return nil, nil
}

// seen returns copies of the counts and the events.
func (j *journal) seen() (map[string]int, []necro.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return maps.Clone(j.counts), slices.Clone(j.events)
}
