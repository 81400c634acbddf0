package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// settlementAttempts is how many times the Spine hands one trade to SettlementOrgan:
// the first attempt and the seed's retry_attempts=2 retries.
const settlementAttempts = 3

// The seed's clearing house latency, drawn uniformly from this range per attempt.
const (
	defaultLatencyMin = 50 * time.Millisecond
	defaultLatencyMax = 150 * time.Millisecond
)

// Streams of the PCG sources seeded by Options.Seed: one for the failures, one for the
// latency, so that turning the latency off changes no failure, and one for the stress
// orders.
const (
	failureStream = 0x7472616465   // "trade"
	latencyStream = 0x6c6174656e   // "laten"
	stressStream  = 0x737472657373 // "stress"
)

// rule is the seed's section rule, 60 '='.
var rule = strings.Repeat("=", 60)

// Options configures an app run. The zero value runs the bundled sample input with
// random failures OFF; the CLI and main turn them on by default (flag
// --no-random-failures turns them off).
type Options struct {
	Input          string       // path of an input file (.json or .csv); "" means the bundled sample (embedded)
	Seed           int64        // seeds the random failures, so a run is reproducible
	RandomFailures bool         // the seed app's 5% clearing house timeouts; false = none
	Quiet          bool         // print only the results, not the per-input lines
	Logger         *slog.Logger // organs log through it (InfoContext(ctx, ...) inside Handle); nil discards

	// SettlementLatency is the longest the simulated clearing house takes to settle one
	// trade; each attempt waits a duration drawn uniformly between a third of it and it,
	// from a source seeded by Seed, or until its ctx ends. Zero means the seed's 50–150 ms;
	// a negative value means no latency at all (tests, quick runs).
	SettlementLatency time.Duration
}

// An App is one run of the trading order book: the input orders, and the state the
// organs share: the order books, the trade and settlement counters, the risk positions,
// daily volumes and alerts, and the audit counts. Build it with [New], mount its
// [App.Mounts] in a Spine configured by [App.Config], emit its [App.Roots], run, then
// call [App.Report] or [App.Results]. An App serves a single run.
type App struct {
	opts    Options
	log     *slog.Logger
	source  string // the input file; "" for the bundled sample or a stress run
	stress  bool   // the orders were made up by NewStress
	orders  []order
	roots   []necro.Event
	skipped []string // CSV rows the loader skipped, with why

	latencyMin, latencyMax time.Duration
	now                    func() time.Time

	// rngMu guards the random sources; only SettlementOrgan draws from them.
	rngMu      sync.Mutex
	failureRNG *rand.Rand
	latencyRNG *rand.Rand

	// mu guards the organs' state below: the organs run on actors of their own, and
	// Report and Results read it after the run.
	mu                 sync.Mutex
	books              map[string]*orderBook
	tradeCount         int
	trades             []tradeRecord
	settled            int
	settlementFailures int
	positions          map[string]map[string]int
	dailyVolume        map[string]int
	volumeDate         string
	alerts             []riskAlertRecord
	rejections         []rejection
	audit              auditCounts
}

// New reads the orders of opts.Input (JSON or CSV, by extension) or of the bundled
// sample, and makes one ORDER_SUBMITTED event of each. A JSON input is a list of order
// objects or an object with an "orders" list; a CSV input has a header line naming the
// columns, and a row whose quantity or price does not convert is skipped with a warning
// that [App.Begin] prints, as the seed does. The error names the file and the problem.
func New(opts Options) (*App, error) {
	orders, skipped, err := readOrders(opts.Input)
	if err != nil {
		return nil, err
	}
	source := opts.Input
	if source == "" {
		source = "bundled " + sampleName
	}
	a, err := newApp(opts, orders)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	a.source, a.skipped = opts.Input, skipped
	return a, nil
}

// NewStress makes count random orders as the seed's --stress mode does, the same ones
// for the same opts.Seed: 50 traders and the two problematic ones, the seven symbols,
// 80% LIMIT orders priced within 2% of the symbol's base price, quantities from 10 to
// 500. opts.Input must be "".
func NewStress(opts Options, count int) (*App, error) {
	switch {
	case opts.Input != "":
		return nil, errors.New("a stress run makes up its orders; it takes no input file")
	case count < 0:
		return nil, fmt.Errorf("stress order count %d is negative", count)
	}
	a, err := newApp(opts, stressOrders(count, opts.Seed))
	if err != nil {
		return nil, err
	}
	a.stress = true
	return a, nil
}

// newApp makes an App for the given orders, with one ORDER_SUBMITTED per order.
func newApp(opts Options, orders []order) (*App, error) {
	roots := make([]necro.Event, len(orders))
	for i, o := range orders {
		var err error
		if roots[i], err = necro.NewEvent(orderSubmitted, o); err != nil {
			return nil, fmt.Errorf("order %d: %w", i+1, err)
		}
	}
	a := &App{
		opts: opts, log: opts.Logger, orders: orders, roots: roots,
		latencyMin: defaultLatencyMin, latencyMax: defaultLatencyMax, now: time.Now,
		failureRNG: rand.New(rand.NewPCG(uint64(opts.Seed), failureStream)),
		latencyRNG: rand.New(rand.NewPCG(uint64(opts.Seed), latencyStream)),
		books:      map[string]*orderBook{}, positions: map[string]map[string]int{}, dailyVolume: map[string]int{},
	}
	switch {
	case opts.SettlementLatency < 0:
		a.latencyMin, a.latencyMax = 0, 0
	case opts.SettlementLatency > 0:
		a.latencyMin, a.latencyMax = opts.SettlementLatency/3, opts.SettlementLatency
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a, nil
}

// Mounts returns the organs in the seed's order, named after the seed's classes. They
// keep their state in the App, so they are plain Organs that survive restarts.
func (a *App) Mounts() []necro.Mount {
	return []necro.Mount{
		{Name: "ValidateOrder", Organ: necro.NewOrgan([]string{orderSubmitted}, a.validateOrder)},
		{Name: "MatchingEngine", Organ: necro.NewOrgan([]string{orderValidated}, a.matchOrder)},
		{Name: "SettlementOrgan", Organ: necro.NewOrgan([]string{tradeExecuted}, a.settleTrade)},
		{Name: "RiskManager", Organ: necro.NewOrgan([]string{settlementComplete, orderFilled, orderPartialFill}, a.manageRisk)},
		{Name: "AuditTrail", Organ: necro.NewOrgan(auditTypes, a.auditEvent)},
	}
}

// Config returns base with the seed's Spine settings: at most 50,000 steps, failed
// events dead-lettered (the seed's handler STORE), refused children dead-lettered (its
// enqueue STORE), a 5s handler timeout, and retry_attempts=2 as a real retry policy: 3
// attempts in all. The retries come at once rather than after the seed's 10 ms, so that
// they take a deterministic place in the queue and a seed reproduces a run.
func (a *App) Config(base spine.Config) spine.Config {
	c := base
	c.MaxSteps = 50_000
	c.HandlerFailure = spine.HandlerDeadLetter
	c.EnqueueFailure = spine.EnqueueStore
	c.HandlerTimeout = 5 * time.Second
	c.Retry = supervision.RetryPolicy{
		MaxAttempts: settlementAttempts,
		Backoff:     supervision.Backoff{Base: time.Microsecond, Max: time.Microsecond, Jitter: supervision.NoJitter},
	}
	return c
}

// Roots returns the ORDER_SUBMITTED events, one per input order, in input order. Emit
// them all before the run starts: matching then follows their order.
func (a *App) Roots() ([]necro.Event, error) {
	return slices.Clone(a.roots), nil
}

// Begin prints what the seed prints before the run: the input file ("📂 Loading orders
// from") or the stress run ("🚀 STRESS TEST MODE"), the CSV rows the loader skipped,
// then, unless Quiet, the header and a line per order (for at most 20 orders).
func (a *App) Begin(w io.Writer) {
	var b bytes.Buffer
	banner := ""
	switch {
	case a.source != "":
		banner = "📂 Loading orders from: " + a.source
	case a.stress:
		banner = fmt.Sprintf("🚀 STRESS TEST MODE: %d orders", len(a.orders))
	}
	if banner != "" {
		b.WriteString(banner + "\n")
		if !a.opts.Quiet || len(a.skipped) > 0 {
			b.WriteString("\n") // the results of a quiet run bring their own blank line
		}
	}
	for _, s := range a.skipped {
		fmt.Fprintf(&b, "Warning: Skipping invalid row: %s\n", s)
	}
	if !a.opts.Quiet {
		fmt.Fprintf(&b, "%s\nTRADING ORDER BOOK SYSTEM\n%s\n\nSubmitting %d orders...\n\n", rule, rule, len(a.orders))
		if len(a.orders) <= 20 {
			for _, o := range a.orders {
				fmt.Fprintf(&b, "  → %s: %s %s %s @ %s\n", text(o["trader_id"]), text(o["side"]), text(o["quantity"]),
					text(o["symbol"]), showPrice(o["price"]))
			}
		}
		b.WriteString("\nProcessing orders...\n")
	}
	_, _ = w.Write(b.Bytes()) // Begin reports nothing; a failing writer fails Report too
}

// showPrice shows a submitted order's price as the seed does, "MKT" when Python would
// take it as false, and a number with two decimals.
func showPrice(v any) string {
	if falsy(v) {
		return "MKT"
	}
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			return strconv.FormatFloat(f, 'f', 2, 64)
		}
	}
	return text(v)
}

// Report prints the seed's result sections: EXECUTION RESULTS, the handler errors, the
// DEAD LETTER QUEUE (the first 5), the RISK ALERTS (the first 5), the ORDER BOOK STATE
// of AAPL (the best 3 orders of each side) and the AUDIT TRAIL SUMMARY. st, dead and
// elapsed are the run's; for one input and seed only the time lines vary between runs.
func (a *App) Report(w io.Writer, st spine.Stats, dead []backend.DeadLetter, elapsed time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	section := func(title string) { p("\n%s\n%s\n%s", rule, title, rule) }

	section("EXECUTION RESULTS")
	p("  Events processed: %d", st.Processed)
	p("  Events emitted: %d", st.Emitted)
	p("  Trades executed: %d", a.tradeCount)
	p("  Settlements: %d", a.settled)
	p("  Settlement failures: %d", a.settlementFailures)
	p("  Retries: %d", st.Retried)
	p("  Time elapsed: %.3fs", elapsed.Seconds())
	if elapsed > 0 {
		p("  Throughput: %.1f events/sec", float64(st.Processed)/elapsed.Seconds())
	}

	if len(st.HandlerErrors) > 0 {
		var parts []string
		for _, organ := range slices.Sorted(maps.Keys(st.HandlerErrors)) {
			parts = append(parts, fmt.Sprintf("%s: %d", organ, st.HandlerErrors[organ]))
		}
		p("\n  Handler errors: %s", strings.Join(parts, ", "))
	}

	if len(dead) > 0 {
		section("DEAD LETTER QUEUE")
		for _, dl := range dead[:min(len(dead), 5)] {
			p("  %s: %s", dl.Event.Type(), clip(dl.Error, 60))
		}
		if len(dead) > 5 {
			p("  ... and %d more", len(dead)-5)
		}
	}

	if len(a.alerts) > 0 {
		section("RISK ALERTS")
		for _, al := range a.alerts[:min(len(a.alerts), 5)] {
			p("  %s: %s", al.Type, al.TraderID)
		}
	}

	section("ORDER BOOK STATE (AAPL)")
	aapl := a.books["AAPL"]
	if aapl == nil {
		aapl = &orderBook{}
	}
	for _, side := range []struct {
		name   string
		orders []restingOrder
	}{{"BIDS", aapl.bids}, {"ASKS", aapl.asks}} {
		p("  %s:", side.name)
		if len(side.orders) == 0 {
			p("    %6s @ $%s", "--", "--")
		}
		for _, l := range levels(side.orders, 3) {
			p("    %6d @ $%.2f", l.Quantity, l.Price)
		}
	}

	section("AUDIT TRAIL SUMMARY")
	for _, c := range a.audit.lines() {
		p("  %s: %d", c.name, c.n)
	}
	p("%s", rule)
	_, err := w.Write(b.Bytes())
	return err
}

// clip returns the first n characters of s, as Python's s[:n] does.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// Results returns what the run did as a JSON-able value: the counters, every trade in
// execution order, the rejections and risk alerts in the order they were recorded, the
// positions and daily volumes, the books of every symbol that traded, and the audit
// counts. Nothing in it depends on event ids or on the clock (short of a run that spans
// midnight UTC, when the daily volumes start again), so two runs with the same input and
// seed give equal Results.
func (a *App) Results() any {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := results{
		Orders: len(a.orders), SkippedRows: len(a.skipped), TradesExecuted: a.tradeCount, Settlements: a.settled,
		SettlementFailures: a.settlementFailures,
		Trades:             nonNil(slices.Clone(a.trades)),
		Rejections:         nonNil(slices.Clone(a.rejections)),
		RiskAlerts:         nonNil(slices.Clone(a.alerts)),
		Positions:          map[string]map[string]int{},
		DailyVolume:        maps.Clone(a.dailyVolume),
		Books:              map[string]bookDepth{},
		Audit:              a.audit,
	}
	for trader, pos := range a.positions {
		r.Positions[trader] = maps.Clone(pos)
	}
	for sym, b := range a.books {
		r.Books[sym] = bookDepth{Bids: levels(b.bids, -1), Asks: levels(b.asks, -1)}
	}
	return r
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// stamp is the time of an event's payload field (validated_at, filled_at, ...).
func (a *App) stamp() string { return a.now().UTC().Format(necro.TimestampLayout) }

// results is what [App.Results] returns.
type results struct {
	Orders             int                       `json:"orders"`
	SkippedRows        int                       `json:"skipped_rows"`
	TradesExecuted     int                       `json:"trades_executed"`
	Settlements        int                       `json:"settlements"`
	SettlementFailures int                       `json:"settlement_failures"`
	Trades             []tradeRecord             `json:"trades"`
	Rejections         []rejection               `json:"rejections"`
	RiskAlerts         []riskAlertRecord         `json:"risk_alerts"`
	Positions          map[string]map[string]int `json:"positions"`
	DailyVolume        map[string]int            `json:"daily_volume"`
	Books              map[string]bookDepth      `json:"books"`
	Audit              auditCounts               `json:"audit"`
}

// tradeRecord is one executed trade. Trade ids count the trades of the run: T1, T2, ...
type tradeRecord struct {
	TradeID  string  `json:"trade_id"`
	Symbol   string  `json:"symbol"`
	Price    float64 `json:"price"`
	Quantity int     `json:"quantity"`
	BuyerID  string  `json:"buyer_id"`
	SellerID string  `json:"seller_id"`
}

// rejection is one ORDER_REJECTED, by ValidateOrder or MatchingEngine.
type rejection struct {
	TraderID string `json:"trader_id"`
	Reason   string `json:"reason"`
}

// riskAlertRecord is one breach of a risk limit, as RISK_ALERT lists it: POSITION_LIMIT
// with the symbol and the position's value, or VOLUME_LIMIT with the daily volume.
type riskAlertRecord struct {
	Type          string  `json:"type"`
	TraderID      string  `json:"trader_id"`
	Symbol        string  `json:"symbol,omitempty"`
	PositionValue float64 `json:"position_value,omitempty"`
	DailyVolume   int     `json:"daily_volume,omitempty"`
	Limit         float64 `json:"limit"`
}

// bookDepth is one symbol's book, each side best first.
type bookDepth struct {
	Bids []level `json:"bids"`
	Asks []level `json:"asks"`
}

// level is one resting order.
type level struct {
	Price    float64 `json:"price"`
	Quantity int     `json:"quantity"`
	TraderID string  `json:"trader_id"`
}

// auditCounts are AuditTrail's counts, named as in the seed.
type auditCounts struct {
	OrdersValidated int `json:"orders_validated"`
	OrdersRejected  int `json:"orders_rejected"`
	OrdersFilled    int `json:"orders_filled"`
	OrdersPartial   int `json:"orders_partial"`
	OrdersQueued    int `json:"orders_queued"`
	TradesExecuted  int `json:"trades_executed"`
	Settlements     int `json:"settlements"`
	RiskAlerts      int `json:"risk_alerts"`
}

// lines returns the counts in the seed's order with its title-cased names.
func (c auditCounts) lines() []struct {
	name string
	n    int
} {
	return []struct {
		name string
		n    int
	}{
		{"Orders Validated", c.OrdersValidated}, {"Orders Rejected", c.OrdersRejected},
		{"Orders Filled", c.OrdersFilled}, {"Orders Partial", c.OrdersPartial}, {"Orders Queued", c.OrdersQueued},
		{"Trades Executed", c.TradesExecuted}, {"Settlements", c.Settlements}, {"Risk Alerts", c.RiskAlerts},
	}
}
