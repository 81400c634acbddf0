package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/necrostack/necro"
)

// The seed's event types.
const (
	orderSubmitted     = "ORDER_SUBMITTED"
	orderValidated     = "ORDER_VALIDATED"
	orderRejected      = "ORDER_REJECTED"
	orderFilled        = "ORDER_FILLED"
	orderPartialFill   = "ORDER_PARTIAL_FILL"
	orderQueued        = "ORDER_QUEUED"
	tradeExecuted      = "TRADE_EXECUTED"
	settlementComplete = "SETTLEMENT_COMPLETE"
	riskAlert          = "RISK_ALERT"
)

// The seed's rules and limits.
const (
	buySide     = "BUY"
	sellSide    = "SELL"
	limitOrder  = "LIMIT"
	marketOrder = "MARKET"

	maxQuantity = 10_000
	maxPrice    = 100_000.0

	settlementFeeRate = 0.0001 // one basis point
	timeoutRate       = 0.05   // the clearing house's transient failures

	maxPositionValue = 1_000_000.0
	maxDailyVolume   = 50_000
)

// validSymbols are the symbols the exchange lists.
var validSymbols = map[string]bool{"AAPL": true, "GOOGL": true, "MSFT": true, "AMZN": true,
	"TSLA": true, "NVDA": true, "META": true}

// problematicTraders cannot settle: every trade of theirs fails permanently.
var problematicTraders = map[string]bool{"trader_bad_1": true, "trader_bad_2": true}

// validatedOrder is the payload of ORDER_VALIDATED. OrderID is the id of the
// ORDER_SUBMITTED event; Price is null for a MARKET order.
type validatedOrder struct {
	OrderID     string   `json:"order_id"`
	TraderID    string   `json:"trader_id"`
	Symbol      string   `json:"symbol"`
	Side        string   `json:"side"`
	OrderType   string   `json:"order_type"`
	Quantity    int      `json:"quantity"`
	Price       *float64 `json:"price"`
	ValidatedAt string   `json:"validated_at"`
}

// rejectedOrder is the payload of ORDER_REJECTED.
type rejectedOrder struct {
	OrderID    string `json:"order_id"`
	TraderID   string `json:"trader_id"`
	Reason     string `json:"reason"`
	RejectedAt string `json:"rejected_at"`
}

// fill is one trade of an incoming order, as ORDER_FILLED and ORDER_PARTIAL_FILL list it.
type fill struct {
	TradeID           string  `json:"trade_id"`
	Quantity          int     `json:"quantity"`
	Price             float64 `json:"price"`
	CounterpartyID    string  `json:"counterparty_id"`
	CounterpartyOrder string  `json:"counterparty_order"`
}

// filledOrder is the payload of ORDER_FILLED.
type filledOrder struct {
	OrderID  string  `json:"order_id"`
	TraderID string  `json:"trader_id"`
	Symbol   string  `json:"symbol"`
	Side     string  `json:"side"`
	Quantity int     `json:"quantity"`
	Fills    []fill  `json:"fills"`
	AvgPrice float64 `json:"avg_price"`
	FilledAt string  `json:"filled_at"`
}

// partialFill is the payload of ORDER_PARTIAL_FILL.
type partialFill struct {
	OrderID           string `json:"order_id"`
	TraderID          string `json:"trader_id"`
	Symbol            string `json:"symbol"`
	Side              string `json:"side"`
	OriginalQuantity  int    `json:"original_quantity"`
	FilledQuantity    int    `json:"filled_quantity"`
	RemainingQuantity int    `json:"remaining_quantity"`
	Fills             []fill `json:"fills"`
	FilledAt          string `json:"filled_at"`
}

// queuedOrder is the payload of ORDER_QUEUED.
type queuedOrder struct {
	OrderID  string  `json:"order_id"`
	TraderID string  `json:"trader_id"`
	Symbol   string  `json:"symbol"`
	Side     string  `json:"side"`
	Quantity int     `json:"quantity"`
	Price    float64 `json:"price"`
	QueuedAt string  `json:"queued_at"`
}

// trade is the payload of TRADE_EXECUTED.
type trade struct {
	TradeID     string  `json:"trade_id"`
	Symbol      string  `json:"symbol"`
	Price       float64 `json:"price"`
	Quantity    int     `json:"quantity"`
	BuyerID     string  `json:"buyer_id"`
	BuyerOrder  string  `json:"buyer_order"`
	SellerID    string  `json:"seller_id"`
	SellerOrder string  `json:"seller_order"`
	ExecutedAt  string  `json:"executed_at"`
}

// settlement is the payload of SETTLEMENT_COMPLETE.
type settlement struct {
	TradeID       string  `json:"trade_id"`
	Symbol        string  `json:"symbol"`
	BuyerID       string  `json:"buyer_id"`
	SellerID      string  `json:"seller_id"`
	Quantity      int     `json:"quantity"`
	Price         float64 `json:"price"`
	TotalValue    float64 `json:"total_value"`
	SettlementFee float64 `json:"settlement_fee"`
	SettledAt     string  `json:"settled_at"`
}

// alertPayload is the payload of RISK_ALERT.
type alertPayload struct {
	Alerts      []riskAlertRecord `json:"alerts"`
	TriggeredBy string            `json:"triggered_by"`
	TriggeredAt string            `json:"triggered_at"`
}

// emit builds one event per payload, in order.
func emit(typ string, payloads ...any) ([]necro.Event, error) {
	out := make([]necro.Event, len(payloads))
	for i, p := range payloads {
		ev, err := necro.NewEvent(typ, p)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", typ, err)
		}
		out[i] = ev
	}
	return out, nil
}

// validateOrder is ValidateOrder: it checks an ORDER_SUBMITTED with the seed's rules
// and emits ORDER_VALIDATED, or ORDER_REJECTED whose reason lists every rule the order
// breaks, joined by "; ". A bad order is an outcome, not an error.
func (a *App) validateOrder(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	p := ev.Payload() // numbers stay json.Number: 100 passes as a quantity, 100.0 does not
	var problems []string

	traderID, ok := p["trader_id"].(string)
	switch {
	case !ok && !falsy(p["trader_id"]):
		problems = append(problems, "trader_id must be a string")
	case strings.TrimSpace(traderID) == "":
		problems = append(problems, "trader_id required")
	}
	traderID = strings.TrimSpace(traderID)

	// The seed uppercases symbol and side without trimming them: " AAPL" is invalid.
	symbol := strings.ToUpper(text(p["symbol"]))
	if !validSymbols[symbol] {
		problems = append(problems, "invalid symbol: "+symbol)
	}
	side := strings.ToUpper(text(p["side"]))
	if side != buySide && side != sellSide {
		problems = append(problems, "invalid side: "+side)
	}
	orderType := ""
	if p["order_type"] == nil {
		problems = append(problems, "order_type required")
	} else if orderType = strings.ToUpper(text(p["order_type"])); orderType != limitOrder && orderType != marketOrder {
		problems = append(problems, "invalid order_type: "+orderType)
	}

	quantity, problem := checkQuantity(p["quantity"])
	if problem != "" {
		problems = append(problems, problem)
	}
	var price *float64
	if orderType == limitOrder {
		v, problem := checkPrice(p["price"])
		if problem != "" {
			problems = append(problems, problem)
		}
		price = &v
	}

	if len(problems) > 0 {
		if traderID == "" {
			traderID = "unknown"
		}
		a.log.InfoContext(ctx, "order rejected", slog.String("trader_id", traderID),
			slog.String("reason", strings.Join(problems, "; ")))
		return emit(orderRejected, rejectedOrder{OrderID: ev.ID(), TraderID: traderID,
			Reason: strings.Join(problems, "; "), RejectedAt: a.stamp()})
	}
	return emit(orderValidated, validatedOrder{OrderID: ev.ID(), TraderID: traderID, Symbol: symbol, Side: side,
		OrderType: orderType, Quantity: quantity, Price: price, ValidatedAt: a.stamp()})
}

// checkQuantity applies the seed's quantity rule: an integer, as Python's isinstance(v,
// int) sees one in JSON (a number written without '.', 'e' or 'E'; not a bool), from 1
// to maxQuantity. It returns the quantity or the problem.
func checkQuantity(v any) (int, string) {
	const notPositive = "quantity must be a positive integer"
	if v == nil {
		return 0, notPositive // a missing quantity is the seed's default 0
	}
	n, ok := v.(json.Number)
	if !ok || strings.ContainsAny(n.String(), ".eE") {
		return 0, notPositive
	}
	q, err := strconv.ParseInt(n.String(), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(n.String(), "-"):
		return 0, fmt.Sprintf("quantity exceeds max %d", maxQuantity) // Python's ints have no range
	case err != nil || q <= 0:
		return 0, notPositive
	case q > maxQuantity:
		return 0, fmt.Sprintf("quantity exceeds max %d", maxQuantity)
	}
	return int(q), ""
}

// checkPrice applies the seed's LIMIT price rule: a number above 0 and at most
// maxPrice. A number too large for a float64 exceeds the maximum, as Python's inf does.
func checkPrice(v any) (float64, string) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, "LIMIT order requires positive price"
	}
	f, err := n.Float64()
	switch {
	case err != nil && !math.IsInf(f, 0):
		return 0, "LIMIT order requires positive price"
	case f <= 0:
		return 0, "LIMIT order requires positive price"
	case f > maxPrice:
		return 0, "price exceeds max 100000.0"
	}
	return f, ""
}

// falsy reports whether Python would take a decoded JSON value as false.
func falsy(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case string:
		return v == ""
	case json.Number:
		f, err := v.Float64()
		return err == nil && f == 0
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// text returns a field as text: a string as it is, nothing as "", and any other value
// as its JSON, the way the seed's str() would show it.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// matchOrder is MatchingEngine: it matches an ORDER_VALIDATED against the other side
// of its symbol's book with price-time priority. Each fill is at the resting order's
// price and emits TRADE_EXECUTED; then comes the order's terminal event: ORDER_FILLED,
// ORDER_PARTIAL_FILL (a LIMIT rest goes into the book, a MARKET rest is dropped),
// ORDER_QUEUED for an unfilled LIMIT, or ORDER_REJECTED "No liquidity for MARKET
// order".
//
// It holds the App's lock while it matches: matching waits on nothing, and the lock
// keeps the books whole if a timed-out call were still running beside a fresh one.
func (a *App) matchOrder(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var o validatedOrder
	if err := ev.DecodePayload(&o); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode %s: %w", orderValidated, err))
	}
	price := 0.0
	if o.Price != nil {
		price = *o.Price
	}
	// The seed's defensive re-checks; ValidateOrder lets no such order through.
	reject := ""
	switch {
	case o.Quantity <= 0:
		reject = "Invalid quantity"
	case o.OrderType == limitOrder && price <= 0:
		reject = "Invalid price"
	case o.OrderType != limitOrder && o.OrderType != marketOrder:
		reject = "Invalid order type"
	case o.Side != buySide && o.Side != sellSide:
		reject = "Invalid side"
	}
	if reject != "" {
		return emit(orderRejected, rejectedOrder{OrderID: o.OrderID, TraderID: o.TraderID, Reason: reject, RejectedAt: a.stamp()})
	}

	a.mu.Lock()
	out, outcome, err := a.match(o, price)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a.log.DebugContext(ctx, "order matched", slog.String("order_id", o.OrderID), slog.String("outcome", outcome),
		slog.Int("trades", len(out)-1))
	return out, nil
}

// match does MatchingEngine's work for one valid order: it returns the events to emit
// and the type of the terminal one. The caller holds a.mu.
func (a *App) match(o validatedOrder, price float64) ([]necro.Event, string, error) {
	b := a.books[o.Symbol]
	if b == nil {
		b = &orderBook{}
		a.books[o.Symbol] = b
	}
	opposite := b.opposite(o.Side)

	// Plan the fills and build every event before the book changes, so that a failed
	// Handle leaves the book as it was.
	var (
		fills  []fill
		trades []trade
	)
	left := o.Quantity
	for i, r := range *opposite {
		if left == 0 || !crosses(o.Side, o.OrderType, price, r.price) {
			break
		}
		q := min(left, r.quantity)
		t := trade{TradeID: "T" + strconv.Itoa(a.tradeCount+i+1), Symbol: o.Symbol, Price: r.price, Quantity: q,
			BuyerID: o.TraderID, BuyerOrder: o.OrderID, SellerID: r.traderID, SellerOrder: r.orderID, ExecutedAt: a.stamp()}
		if o.Side == sellSide {
			t.BuyerID, t.BuyerOrder, t.SellerID, t.SellerOrder = r.traderID, r.orderID, o.TraderID, o.OrderID
		}
		trades = append(trades, t)
		fills = append(fills, fill{TradeID: t.TradeID, Quantity: q, Price: r.price, CounterpartyID: r.traderID,
			CounterpartyOrder: r.orderID})
		left -= q
	}
	payloads := make([]any, len(trades))
	for i, t := range trades {
		payloads[i] = t
	}
	out, err := emit(tradeExecuted, payloads...)
	if err != nil {
		return nil, "", err
	}
	filled := o.Quantity - left
	var (
		typ      string
		terminal any
	)
	switch {
	case left == 0:
		value := 0.0
		for _, f := range fills {
			value += f.Price * float64(f.Quantity)
		}
		typ, terminal = orderFilled, filledOrder{OrderID: o.OrderID, TraderID: o.TraderID, Symbol: o.Symbol,
			Side: o.Side, Quantity: o.Quantity, Fills: fills, AvgPrice: value / float64(o.Quantity), FilledAt: a.stamp()}
	case filled > 0:
		typ, terminal = orderPartialFill, partialFill{OrderID: o.OrderID, TraderID: o.TraderID, Symbol: o.Symbol,
			Side: o.Side, OriginalQuantity: o.Quantity, FilledQuantity: filled, RemainingQuantity: left, Fills: fills,
			FilledAt: a.stamp()}
	case o.OrderType == limitOrder:
		typ, terminal = orderQueued, queuedOrder{OrderID: o.OrderID, TraderID: o.TraderID, Symbol: o.Symbol,
			Side: o.Side, Quantity: o.Quantity, Price: price, QueuedAt: a.stamp()}
	default:
		typ, terminal = orderRejected, rejectedOrder{OrderID: o.OrderID, TraderID: o.TraderID,
			Reason: "No liquidity for MARKET order", RejectedAt: a.stamp()}
	}
	last, err := emit(typ, terminal)
	if err != nil {
		return nil, "", err
	}
	out = append(out, last...)

	// Commit: the book, the trade count and the trade list change together.
	for i, f := range fills {
		(*opposite)[i].quantity -= f.Quantity
	}
	*opposite = slices.DeleteFunc(*opposite, func(r restingOrder) bool { return r.quantity <= 0 })
	if left > 0 && o.OrderType == limitOrder {
		b.rest(restingOrder{orderID: o.OrderID, traderID: o.TraderID, price: price, quantity: left}, o.Side)
	}
	a.tradeCount += len(trades)
	for _, t := range trades {
		a.trades = append(a.trades, tradeRecord{TradeID: t.TradeID, Symbol: t.Symbol, Price: t.Price,
			Quantity: t.Quantity, BuyerID: t.BuyerID, SellerID: t.SellerID})
	}
	return out, typ, nil
}

// settleTrade is SettlementOrgan: it settles a TRADE_EXECUTED through the simulated
// clearing house, which takes its latency first. A trade with a problematic trader
// fails permanently, so the Spine dead-letters it at once; with RandomFailures on, 5%
// of the attempts time out at the clearing house, a transient failure the Spine
// retries. Otherwise it emits SETTLEMENT_COMPLETE with the total value and a fee of
// round(total × 0.0001, 2).
func (a *App) settleTrade(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var t trade
	if err := ev.DecodePayload(&t); err != nil {
		return nil, necro.Permanent(fmt.Errorf("decode %s: %w", tradeExecuted, err))
	}
	var failure error
	switch err := a.clearingLatency(ctx); {
	case errors.Is(err, context.DeadlineExceeded):
		failure = err // the handler timeout: a failed attempt, retried like a clearing house timeout
	case err != nil:
		return nil, err // the run is stopping; the attempt did not happen
	case problematicTraders[t.BuyerID]:
		//lint:ignore ST1005 the seed's wording, shown in the DEAD LETTER QUEUE section
		failure = necro.Permanent(fmt.Errorf("Settlement failed: %s has insufficient funds", t.BuyerID))
	case problematicTraders[t.SellerID]:
		//lint:ignore ST1005 the seed's wording, shown in the DEAD LETTER QUEUE section
		failure = necro.Permanent(fmt.Errorf("Settlement failed: %s has restricted account", t.SellerID))
	case a.clearingTimeout():
		//lint:ignore ST1005 the seed's wording, shown in the DEAD LETTER QUEUE section
		failure = fmt.Errorf("Clearing house timeout for trade %s", t.TradeID)
	}
	if failure != nil {
		// A failure counts once a trade will not settle: a permanent one at once, a
		// transient one only on the last attempt the retry policy allows.
		if necro.IsPermanent(failure) || ev.Attempt() >= settlementAttempts {
			a.mu.Lock()
			a.settlementFailures++
			a.mu.Unlock()
		}
		return nil, failure
	}
	total := float64(t.Quantity) * t.Price
	out, err := emit(settlementComplete, settlement{TradeID: t.TradeID, Symbol: t.Symbol, BuyerID: t.BuyerID,
		SellerID: t.SellerID, Quantity: t.Quantity, Price: t.Price, TotalValue: total,
		SettlementFee: roundCents(total * settlementFeeRate), SettledAt: a.stamp()})
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.settled++
	a.mu.Unlock()
	return out, nil
}

// clearingLatency waits as long as the clearing house takes, drawn from the seeded
// latency source, or until ctx ends.
func (a *App) clearingLatency(ctx context.Context) error {
	if a.latencyMax <= 0 {
		return nil
	}
	a.rngMu.Lock()
	d := a.latencyMin + time.Duration(a.latencyRNG.Int64N(int64(a.latencyMax-a.latencyMin)+1))
	a.rngMu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// clearingTimeout draws whether this settlement attempt times out at the clearing house.
func (a *App) clearingTimeout() bool {
	if !a.opts.RandomFailures {
		return false
	}
	a.rngMu.Lock()
	defer a.rngMu.Unlock()
	return a.failureRNG.Float64() < timeoutRate
}

// roundCents rounds x to two decimals as Python's round(x, 2) does: from x's exact
// binary value, halves to even. strconv rounds the same way.
func roundCents(x float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 2, 64), 64) // cannot fail: FormatFloat wrote a number
	return r
}

// manageRisk is RiskManager. On SETTLEMENT_COMPLETE it moves the buyer's and the
// seller's positions and checks the position limit for both; on ORDER_FILLED and
// ORDER_PARTIAL_FILL it adds each fill's quantity to the daily volume of the trader
// and of the counterparty, once per trade, and checks the volume limit for them. Any
// breach is recorded and emitted as one RISK_ALERT.
func (a *App) manageRisk(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	a.mu.Lock()
	alerts, err := a.assessRisk(ev)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if len(alerts) == 0 {
		return nil, nil
	}
	for _, al := range alerts {
		a.log.InfoContext(ctx, "risk alert", slog.String("type", al.Type), slog.String("trader_id", al.TraderID))
	}
	return emit(riskAlert, alertPayload{Alerts: alerts, TriggeredBy: ev.Type(), TriggeredAt: a.stamp()})
}

// assessRisk updates the positions or the daily volumes for one event and returns the
// limits it breaches, which it also records. A SETTLEMENT_COMPLETE that lacks a field
// fails permanently, so that it is dead-lettered for a person to see (the seed logged a
// warning and skipped it). The caller holds a.mu.
func (a *App) assessRisk(ev necro.Event) ([]riskAlertRecord, error) {
	if today := a.now().UTC().Format(time.DateOnly); today != a.volumeDate {
		clear(a.dailyVolume) // daily volume starts again every UTC day, as in the seed
		a.volumeDate = today
	}
	var alerts []riskAlertRecord
	switch ev.Type() {
	case settlementComplete:
		var s settlement
		if err := ev.DecodePayload(&s); err != nil {
			return nil, necro.Permanent(fmt.Errorf("decode %s: %w", settlementComplete, err))
		}
		if s.BuyerID == "" || s.SellerID == "" || s.Symbol == "" || s.Quantity <= 0 || s.Price <= 0 {
			return nil, necro.Permanent(fmt.Errorf("%s %s lacks a trader, symbol, quantity or price", settlementComplete, s.TradeID))
		}
		a.position(s.BuyerID)[s.Symbol] += s.Quantity
		a.position(s.SellerID)[s.Symbol] -= s.Quantity
		for _, trader := range []string{s.BuyerID, s.SellerID} {
			if value := math.Abs(float64(a.positions[trader][s.Symbol]) * s.Price); value > maxPositionValue {
				alerts = append(alerts, riskAlertRecord{Type: "POSITION_LIMIT", TraderID: trader, Symbol: s.Symbol,
					PositionValue: value, Limit: maxPositionValue})
			}
		}
	case orderFilled, orderPartialFill:
		var f struct {
			TraderID string `json:"trader_id"`
			Fills    []fill `json:"fills"`
		}
		if err := ev.DecodePayload(&f); err != nil {
			return nil, necro.Permanent(fmt.Errorf("decode %s: %w", ev.Type(), err))
		}
		traders := []string{f.TraderID}
		for _, fl := range f.Fills {
			a.dailyVolume[f.TraderID] += fl.Quantity
			a.dailyVolume[fl.CounterpartyID] += fl.Quantity
			if !slices.Contains(traders, fl.CounterpartyID) {
				traders = append(traders, fl.CounterpartyID)
			}
		}
		for _, trader := range traders {
			if v := a.dailyVolume[trader]; v > maxDailyVolume {
				alerts = append(alerts, riskAlertRecord{Type: "VOLUME_LIMIT", TraderID: trader, DailyVolume: v,
					Limit: maxDailyVolume})
			}
		}
	}
	a.alerts = append(a.alerts, alerts...)
	return alerts, nil
}

// position returns a trader's positions by symbol, made on first use.
func (a *App) position(trader string) map[string]int {
	p := a.positions[trader]
	if p == nil {
		p = map[string]int{}
		a.positions[trader] = p
	}
	return p
}

// auditTypes are the event types AuditTrail records, in the order of its summary.
var auditTypes = []string{orderValidated, orderRejected, orderFilled, orderPartialFill, orderQueued,
	tradeExecuted, settlementComplete, riskAlert}

// auditEvent is AuditTrail: it counts the events of each type it records and logs a
// one-line summary of each, at Info, as the audit record.
func (a *App) auditEvent(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	summary := summarize(ev)
	a.mu.Lock()
	switch ev.Type() {
	case orderValidated:
		a.audit.OrdersValidated++
	case orderRejected:
		a.audit.OrdersRejected++
		var r rejectedOrder
		// Our organs wrote the payload; should it not decode, the count above still holds.
		if err := ev.DecodePayload(&r); err == nil {
			a.rejections = append(a.rejections, rejection{TraderID: r.TraderID, Reason: r.Reason})
		}
	case orderFilled:
		a.audit.OrdersFilled++
	case orderPartialFill:
		a.audit.OrdersPartial++
	case orderQueued:
		a.audit.OrdersQueued++
	case tradeExecuted:
		a.audit.TradesExecuted++
	case settlementComplete:
		a.audit.Settlements++
	case riskAlert:
		a.audit.RiskAlerts++
	}
	a.mu.Unlock()
	a.log.InfoContext(ctx, "audit", slog.String("event_id", ev.ID()), slog.String("event_type", ev.Type()),
		slog.Time("timestamp", ev.Timestamp()), slog.String("summary", summary))
	return nil, nil
}

// summarize is the audit record's one-line summary of an event, as the seed writes it.
func summarize(ev necro.Event) string {
	var p struct {
		OrderID          string            `json:"order_id"`
		TradeID          string            `json:"trade_id"`
		Side             string            `json:"side"`
		Symbol           string            `json:"symbol"`
		Quantity         int               `json:"quantity"`
		Price            *float64          `json:"price"`
		Reason           string            `json:"reason"`
		AvgPrice         float64           `json:"avg_price"`
		FilledQuantity   int               `json:"filled_quantity"`
		OriginalQuantity int               `json:"original_quantity"`
		TotalValue       float64           `json:"total_value"`
		Alerts           []json.RawMessage `json:"alerts"`
	}
	if err := ev.DecodePayload(&p); err != nil {
		return "Error summarizing: " + err.Error()
	}
	price := "MKT"
	if p.Price != nil {
		price = fmt.Sprintf("%.2f", *p.Price)
	}
	switch ev.Type() {
	case orderValidated:
		return fmt.Sprintf("%s %d %s @ %s", p.Side, p.Quantity, p.Symbol, price)
	case orderRejected:
		return "Rejected: " + p.Reason
	case orderFilled:
		return fmt.Sprintf("Filled %d %s @ %.2f", p.Quantity, p.Symbol, p.AvgPrice)
	case orderPartialFill:
		return fmt.Sprintf("Partial %d/%d %s", p.FilledQuantity, p.OriginalQuantity, p.Symbol)
	case orderQueued:
		return fmt.Sprintf("Queued %s %d %s @ %s", p.Side, p.Quantity, p.Symbol, price)
	case tradeExecuted:
		return fmt.Sprintf("Trade %s: %d %s @ %s", p.TradeID, p.Quantity, p.Symbol, price)
	case settlementComplete:
		return fmt.Sprintf("Settled %s: $%.2f", p.TradeID, p.TotalValue)
	case riskAlert:
		return fmt.Sprintf("Alerts: %d", len(p.Alerts))
	}
	return ev.Type()
}
