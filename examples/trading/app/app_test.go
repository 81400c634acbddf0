package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// A runResult is everything one run of the app showed.
type runResult struct {
	begin, report string
	stats         spine.Stats
	dead          []backend.DeadLetter
	res           results
}

// runApp runs the whole app over the in-memory backend with the given Spine window (0
// means the default) and no clearing house latency unless opts asks for some. The
// report is printed for an elapsed time of exactly 1s, so that it can be compared whole.
func runApp(t *testing.T, opts Options, window int) runResult {
	t.Helper()
	return runAppConfig(t, opts, func(c spine.Config) spine.Config { c.Window = window; return c })
}

// runAppConfig is runApp with the Spine's config changed by configure after the app's
// own settings.
func runAppConfig(t *testing.T, opts Options, configure func(spine.Config) spine.Config) runResult {
	t.Helper()
	if opts.SettlementLatency == 0 {
		opts.SettlementLatency = -1
	}
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v) = %v", opts, err)
	}
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() }) // nothing is left to lose once the test is over
	sp, err := spine.New(q, a.Mounts(), configure(a.Config(spine.Config{})))
	if err != nil {
		t.Fatalf("spine.New: %v", err)
	}
	var r runResult
	var begin, report bytes.Buffer
	a.Begin(&begin)
	roots, err := a.Roots()
	if err != nil {
		t.Fatalf("Roots() = %v", err)
	}
	if err := sp.Emit(t.Context(), roots...); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if err := sp.Run(t.Context()); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if r.dead, err = q.DeadLetters(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	r.stats = sp.Stats()
	if err := a.Report(&report, r.stats, r.dead, time.Second); err != nil {
		t.Fatalf("Report() = %v", err)
	}
	r.begin, r.report = begin.String(), report.String()
	var ok bool
	if r.res, ok = a.Results().(results); !ok {
		t.Fatalf("Results() is a %T", a.Results())
	}
	if _, err := json.Marshal(r.res); err != nil {
		t.Errorf("Results() does not marshal: %v", err)
	}
	return r
}

// writeInput writes an input file into a fresh directory and returns its path.
func writeInput(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkResults compares Results with what the test wants, field by field.
func checkResults(t *testing.T, got, want results) {
	t.Helper()
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			t.Errorf("Results().%s = %+v\nwant %+v", g.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface())
		}
	}
}

const wantSampleBegin = `============================================================
TRADING ORDER BOOK SYSTEM
============================================================

Submitting 10 orders...

  → alice: BUY 100 AAPL @ 149.50
  → alice: BUY 200 AAPL @ 149.00
  → bob: SELL 100 AAPL @ 150.50
  → bob: SELL 200 AAPL @ 151.00
  → charlie: BUY 50 AAPL @ MKT
  → diana: SELL 75 AAPL @ MKT
  → eve: BUY 30 GOOGL @ 141.00
  → frank: SELL 30 GOOGL @ 141.00
  → grace: BUY 500 TSLA @ 248.00
  → henry: SELL 500 TSLA @ 248.00

Processing orders...
`

// wantSampleReport is the report for the bundled sample, worked out by hand. All ten
// submissions are queued before the run, so the orders are validated first and then
// matched in file order; each fill is at the resting order's price:
//
//	#1-#4  the AAPL bids (149.50, 149.00) and asks (150.50, 151.00) do not cross: queued
//	#5     charlie BUY MARKET 50 takes 50 of bob's 100 @ 150.50
//	#6     diana SELL MARKET 75 takes 75 of alice's 100 @ 149.50
//	#7-#8  eve's GOOGL bid rests; frank's ask at the same 141 fills it
//	#9-#10 grace's TSLA bid rests; henry's ask at the same 248 fills it
//
// Events: 10 submitted + 10 validated + 6 queued + 4 filled + 4 trades + 4 settlements =
// 38 processed, all but the 10 submissions emitted.
const wantSampleReport = `
============================================================
EXECUTION RESULTS
============================================================
  Events processed: 38
  Events emitted: 28
  Trades executed: 4
  Settlements: 4
  Settlement failures: 0
  Retries: 0
  Time elapsed: 1.000s
  Throughput: 38.0 events/sec

============================================================
ORDER BOOK STATE (AAPL)
============================================================
  BIDS:
        25 @ $149.50
       200 @ $149.00
  ASKS:
        50 @ $150.50
       200 @ $151.00

============================================================
AUDIT TRAIL SUMMARY
============================================================
  Orders Validated: 10
  Orders Rejected: 0
  Orders Filled: 4
  Orders Partial: 0
  Orders Queued: 6
  Trades Executed: 4
  Settlements: 4
  Risk Alerts: 0
============================================================
`

var wantSampleResults = results{
	Orders: 10, TradesExecuted: 4, Settlements: 4,
	Trades: []tradeRecord{
		{"T1", "AAPL", 150.5, 50, "charlie", "bob"},
		{"T2", "AAPL", 149.5, 75, "alice", "diana"},
		{"T3", "GOOGL", 141, 30, "eve", "frank"},
		{"T4", "TSLA", 248, 500, "grace", "henry"},
	},
	Rejections: []rejection{},
	RiskAlerts: []riskAlertRecord{},
	Positions: map[string]map[string]int{
		"charlie": {"AAPL": 50}, "bob": {"AAPL": -50}, "alice": {"AAPL": 75}, "diana": {"AAPL": -75},
		"eve": {"GOOGL": 30}, "frank": {"GOOGL": -30}, "grace": {"TSLA": 500}, "henry": {"TSLA": -500},
	},
	// Each trade counts once for each side: the seed counted the aggressor twice.
	DailyVolume: map[string]int{"charlie": 50, "bob": 50, "alice": 75, "diana": 75, "eve": 30, "frank": 30,
		"grace": 500, "henry": 500},
	Books: map[string]bookDepth{
		"AAPL": {Bids: []level{{149.5, 25, "alice"}, {149, 200, "alice"}},
			Asks: []level{{150.5, 50, "bob"}, {151, 200, "bob"}}},
		"GOOGL": {Bids: []level{}, Asks: []level{}},
		"TSLA":  {Bids: []level{}, Asks: []level{}},
	},
	Audit: auditCounts{OrdersValidated: 10, OrdersFilled: 4, OrdersQueued: 6, TradesExecuted: 4, Settlements: 4},
}

func TestSample(t *testing.T) {
	r := runApp(t, Options{}, 0)
	if r.begin != wantSampleBegin {
		t.Errorf("Begin printed:\n%s\nwant:\n%s", r.begin, wantSampleBegin)
	}
	if r.report != wantSampleReport {
		t.Errorf("Report printed:\n%s\nwant:\n%s", r.report, wantSampleReport)
	}
	checkResults(t, r.res, wantSampleResults)
	if st := r.stats; st.Processed != 38 || st.Emitted != 28 || st.DeadLettered != 0 || st.Retried != 0 || len(st.HandlerErrors) != 0 {
		t.Errorf("Stats() = %+v, want 38 processed, 28 emitted, no failures", st)
	}
}

// TestSampleCSV runs the CSV form of the sample: the loader converts quantity to an int
// and price to a float, so the run is the same as the JSON one.
func TestSampleCSV(t *testing.T) {
	data, err := samples.ReadFile("sample_orders.csv")
	if err != nil {
		t.Fatal(err)
	}
	input := writeInput(t, "orders.CSV", string(data))
	r := runApp(t, Options{Input: input}, 0)
	if want := "📂 Loading orders from: " + input + "\n\n" + wantSampleBegin; r.begin != want {
		t.Errorf("Begin printed:\n%s\nwant:\n%s", r.begin, want)
	}
	if r.report != wantSampleReport {
		t.Errorf("Report printed:\n%s\nwant:\n%s", r.report, wantSampleReport)
	}
	checkResults(t, r.res, wantSampleResults)
}

func TestQuietBeginPrintsNothing(t *testing.T) {
	r := runApp(t, Options{Quiet: true}, 0)
	if r.begin != "" {
		t.Errorf("Begin printed %q with Quiet, want nothing", r.begin)
	}
	if r.report != wantSampleReport {
		t.Errorf("Report printed:\n%s\nwant:\n%s", r.report, wantSampleReport)
	}
}

// TestSeedDemoOrders runs the 16 orders of the seed's create_sample_orders, its run
// without a file:
//
//	#1-#4  mm_1 quotes AAPL: bids 100 @ 149.50, 200 @ 149.00; asks 100 @ 150.50, 200 @ 151.00
//	#5     trader_1 BUY MARKET 50 takes 50 @ 150.50 (T1)
//	#6     trader_2 SELL MARKET 75 takes 75 @ 149.50 (T2)
//	#7     trader_3 BUY LIMIT 300 @ 150.75 takes the last 50 @ 150.50 (T3); 151 is above
//	       the limit, so 250 rest @ 150.75: a partial fill
//	#8     trader_4 SELL LIMIT 150 @ 149.25 takes 150 of trader_3's bid @ 150.75 (T4)
//	#9-#11 rejected: no trader, an unknown symbol, a negative quantity
//	#12    trader_bad_1 BUY MARKET 25 takes 25 @ 151 (T5); its settlement fails for good
//	#13-14 GOOGL 50 @ 140 (T6)
//	#15-16 TSLA 5000 @ 250 (T7): 1,250,000 is over the position limit for both whales
//
// Events: 16 submitted + 13 validated + 3 rejected + 6 queued + 6 filled + 1 partial +
// 7 trades + 6 settlements + 1 risk alert = 59.
func TestSeedDemoOrders(t *testing.T) {
	r := runApp(t, Options{Input: filepath.Join("testdata", "seed_demo_orders.json"), RandomFailures: false}, 0)
	checkResults(t, r.res, results{
		Orders: 16, TradesExecuted: 7, Settlements: 6, SettlementFailures: 1,
		Trades: []tradeRecord{
			{"T1", "AAPL", 150.5, 50, "trader_1", "mm_1"},
			{"T2", "AAPL", 149.5, 75, "mm_1", "trader_2"},
			{"T3", "AAPL", 150.5, 50, "trader_3", "mm_1"},
			{"T4", "AAPL", 150.75, 150, "trader_3", "trader_4"},
			{"T5", "AAPL", 151, 25, "trader_bad_1", "mm_1"},
			{"T6", "GOOGL", 140, 50, "trader_7", "trader_8"},
			{"T7", "TSLA", 250, 5000, "whale_1", "whale_2"},
		},
		Rejections: []rejection{
			{"unknown", "trader_id required"},
			{"trader_5", "invalid symbol: INVALID"},
			{"trader_6", "quantity must be a positive integer"},
		},
		RiskAlerts: []riskAlertRecord{
			{Type: "POSITION_LIMIT", TraderID: "whale_1", Symbol: "TSLA", PositionValue: 1_250_000, Limit: 1_000_000},
			{Type: "POSITION_LIMIT", TraderID: "whale_2", Symbol: "TSLA", PositionValue: 1_250_000, Limit: 1_000_000},
		},
		// trader_bad_1's trade never settled, so mm_1 is short 25 less.
		Positions: map[string]map[string]int{
			"trader_1": {"AAPL": 50}, "mm_1": {"AAPL": -25}, "trader_2": {"AAPL": -75}, "trader_3": {"AAPL": 200},
			"trader_4": {"AAPL": -150}, "trader_7": {"GOOGL": 50}, "trader_8": {"GOOGL": -50},
			"whale_1": {"TSLA": 5000}, "whale_2": {"TSLA": -5000},
		},
		DailyVolume: map[string]int{"trader_1": 50, "mm_1": 200, "trader_2": 75, "trader_3": 200, "trader_4": 150,
			"trader_bad_1": 25, "trader_7": 50, "trader_8": 50, "whale_1": 5000, "whale_2": 5000},
		Books: map[string]bookDepth{
			"AAPL": {Bids: []level{{150.75, 100, "trader_3"}, {149.5, 25, "mm_1"}, {149, 200, "mm_1"}},
				Asks: []level{{151, 175, "mm_1"}}},
			"GOOGL": {Bids: []level{}, Asks: []level{}},
			"TSLA":  {Bids: []level{}, Asks: []level{}},
		},
		Audit: auditCounts{OrdersValidated: 13, OrdersRejected: 3, OrdersFilled: 6, OrdersPartial: 1, OrdersQueued: 6,
			TradesExecuted: 7, Settlements: 6, RiskAlerts: 1},
	})
	if st := r.stats; st.Processed != 59 || st.Emitted != 43 || st.DeadLettered != 1 || st.Retried != 0 ||
		!reflect.DeepEqual(st.HandlerErrors, map[string]int64{"SettlementOrgan": 1}) {
		t.Errorf("Stats() = %+v, want 59 processed, 43 emitted, 1 dead letter from SettlementOrgan, no retry", st)
	}
	if len(r.dead) != 1 {
		t.Fatalf("dead letters = %+v, want 1", r.dead)
	}
	if dl := r.dead[0]; dl.Event.Type() != tradeExecuted || dl.Organ != "SettlementOrgan" || dl.Attempts != 1 ||
		dl.Reason != supervision.ReasonPermanent || dl.Error != "Settlement failed: trader_bad_1 has insufficient funds" {
		t.Errorf("dead letter = %s in %s after %d attempts: %q (%s); want TRADE_EXECUTED in SettlementOrgan after 1: the insufficient funds of trader_bad_1 (permanent)",
			dl.Event.Type(), dl.Organ, dl.Attempts, dl.Error, dl.Reason)
	}
	for _, want := range []string{
		"\n  Handler errors: SettlementOrgan: 1\n",
		"DEAD LETTER QUEUE\n" + rule + "\n  TRADE_EXECUTED: Settlement failed: trader_bad_1 has insufficient funds\n\n",
		"RISK ALERTS\n" + rule + "\n  POSITION_LIMIT: whale_1\n  POSITION_LIMIT: whale_2\n\n",
		"  BIDS:\n       100 @ $150.75\n        25 @ $149.50\n       200 @ $149.00\n  ASKS:\n       175 @ $151.00\n",
		"  Orders Rejected: 3\n  Orders Filled: 6\n  Orders Partial: 1\n",
	} {
		if !strings.Contains(r.report, want) {
			t.Errorf("Report printed:\n%s\nwant it to contain:\n%s", r.report, want)
		}
	}
}

// TestSameResultsForAnyWindow checks that matching, and the clearing house's random
// draws, follow the submission order however many deliveries the Spine has in flight.
func TestSameResultsForAnyWindow(t *testing.T) {
	for _, input := range []string{filepath.Join("testdata", "seed_demo_orders.json"), manyTrades(t)} {
		opts := Options{Input: input, RandomFailures: true, Seed: 42}
		want := runApp(t, opts, 1)
		for _, window := range []int{2, 3, 7, 64, 0} {
			got := runApp(t, opts, window)
			if !reflect.DeepEqual(got.res, want.res) {
				t.Errorf("%s, window %d: Results() = %+v\nwant (window 1) %+v", input, window, got.res, want.res)
			}
			if got.report != want.report {
				t.Errorf("%s, window %d: Report printed:\n%s\nwant (window 1):\n%s", input, window, got.report, want.report)
			}
		}
	}
}

// manyTrades writes an input of 150 GOOGL trades of 10 shares @ 140, each a resting
// SELL from one of 7 sellers taken by a BUY MARKET from one of 5 buyers.
func manyTrades(t *testing.T) string {
	t.Helper()
	var orders []string
	for i := range 150 {
		orders = append(orders,
			fmt.Sprintf(`{"trader_id": "s%d", "symbol": "GOOGL", "side": "SELL", "order_type": "LIMIT", "quantity": 10, "price": 140}`, i%7),
			fmt.Sprintf(`{"trader_id": "b%d", "symbol": "GOOGL", "side": "BUY", "order_type": "MARKET", "quantity": 10}`, i%5))
	}
	return writeInput(t, "orders.json", "["+strings.Join(orders, ",")+"]")
}

// TestMatching covers the order book's rules one scenario at a time.
func TestMatching(t *testing.T) {
	tests := []struct {
		name       string
		orders     string
		trades     []tradeRecord
		books      map[string]bookDepth
		rejections []rejection
		audit      auditCounts
	}{
		{
			name: "time priority at one price, fills at the resting price",
			orders: `{"trader_id": "a", "symbol": "MSFT", "side": "SELL", "order_type": "LIMIT", "quantity": 10, "price": 380},
				{"trader_id": "b", "symbol": "MSFT", "side": "SELL", "order_type": "LIMIT", "quantity": 10, "price": 380},
				{"trader_id": "c", "symbol": "MSFT", "side": "SELL", "order_type": "LIMIT", "quantity": 10, "price": 379},
				{"trader_id": "d", "symbol": "MSFT", "side": "BUY", "order_type": "LIMIT", "quantity": 15, "price": 381}`,
			trades: []tradeRecord{{"T1", "MSFT", 379, 10, "d", "c"}, {"T2", "MSFT", 380, 5, "d", "a"}},
			books: map[string]bookDepth{"MSFT": {Bids: []level{},
				Asks: []level{{380, 5, "a"}, {380, 10, "b"}}}},
			rejections: []rejection{},
			audit:      auditCounts{OrdersValidated: 4, OrdersQueued: 3, OrdersFilled: 1, TradesExecuted: 2, Settlements: 2},
		},
		{
			name: "a LIMIT stops at its limit and rests the rest",
			orders: `{"trader_id": "a", "symbol": "NVDA", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 480},
				{"trader_id": "b", "symbol": "NVDA", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 470},
				{"trader_id": "c", "symbol": "NVDA", "side": "SELL", "order_type": "LIMIT", "quantity": 25, "price": 475}`,
			trades: []tradeRecord{{"T1", "NVDA", 480, 10, "a", "c"}},
			books: map[string]bookDepth{"NVDA": {Bids: []level{{470, 10, "b"}},
				Asks: []level{{475, 15, "c"}}}},
			rejections: []rejection{},
			audit:      auditCounts{OrdersValidated: 3, OrdersQueued: 2, OrdersPartial: 1, TradesExecuted: 1, Settlements: 1},
		},
		{
			name: "a MARKET rest is dropped; no liquidity is a rejection",
			orders: `{"trader_id": "a", "symbol": "META", "side": "SELL", "order_type": "LIMIT", "quantity": 5, "price": 500},
				{"trader_id": "b", "symbol": "META", "side": "BUY", "order_type": "MARKET", "quantity": 8},
				{"trader_id": "c", "symbol": "META", "side": "SELL", "order_type": "MARKET", "quantity": 1}`,
			trades:     []tradeRecord{{"T1", "META", 500, 5, "b", "a"}},
			books:      map[string]bookDepth{"META": {Bids: []level{}, Asks: []level{}}},
			rejections: []rejection{{"c", "No liquidity for MARKET order"}},
			audit:      auditCounts{OrdersValidated: 3, OrdersQueued: 1, OrdersPartial: 1, OrdersRejected: 1, TradesExecuted: 1, Settlements: 1},
		},
		{
			name: "lower case is accepted and a SELL walks the bids from the highest",
			orders: `{"trader_id": " a ", "symbol": "amzn", "side": "buy", "order_type": "limit", "quantity": 3, "price": 180},
				{"trader_id": "b", "symbol": "AMZN", "side": "BUY", "order_type": "LIMIT", "quantity": 3, "price": 181},
				{"trader_id": "c", "symbol": "AMZN", "side": "sell", "order_type": "market", "quantity": 4}`,
			trades:     []tradeRecord{{"T1", "AMZN", 181, 3, "b", "c"}, {"T2", "AMZN", 180, 1, "a", "c"}},
			books:      map[string]bookDepth{"AMZN": {Bids: []level{{180, 2, "a"}}, Asks: []level{}}},
			rejections: []rejection{},
			audit:      auditCounts{OrdersValidated: 3, OrdersQueued: 2, OrdersFilled: 1, TradesExecuted: 2, Settlements: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runApp(t, Options{Input: writeInput(t, "orders.json", `{"orders": [`+tt.orders+`]}`)}, 0)
			if !reflect.DeepEqual(r.res.Trades, tt.trades) {
				t.Errorf("trades = %+v, want %+v", r.res.Trades, tt.trades)
			}
			if !reflect.DeepEqual(r.res.Books, tt.books) {
				t.Errorf("books = %+v, want %+v", r.res.Books, tt.books)
			}
			if !reflect.DeepEqual(r.res.Rejections, tt.rejections) {
				t.Errorf("rejections = %+v, want %+v", r.res.Rejections, tt.rejections)
			}
			if r.res.Audit != tt.audit {
				t.Errorf("audit = %+v, want %+v", r.res.Audit, tt.audit)
			}
		})
	}
}

// TestVolumeCountedOnce checks the fix of the seed's double count: six trades of 10,000
// shares between x and y reach the 50,000 daily limit only on the sixth, for both sides
// at once. The seed added the aggressor's volume on ORDER_FILLED
// and again on SETTLEMENT_COMPLETE, so y crossed it on the third trade.
func TestVolumeCountedOnce(t *testing.T) {
	var orders []string
	for range 6 {
		orders = append(orders,
			`{"trader_id": "x", "symbol": "AAPL", "side": "SELL", "order_type": "LIMIT", "quantity": 10000, "price": 10}`,
			`{"trader_id": "y", "symbol": "AAPL", "side": "BUY", "order_type": "MARKET", "quantity": 10000}`)
	}
	r := runApp(t, Options{Input: writeInput(t, "orders.json", "["+strings.Join(orders, ",")+"]")}, 0)
	want := []riskAlertRecord{
		{Type: "VOLUME_LIMIT", TraderID: "y", DailyVolume: 60_000, Limit: 50_000},
		{Type: "VOLUME_LIMIT", TraderID: "x", DailyVolume: 60_000, Limit: 50_000},
	}
	if !reflect.DeepEqual(r.res.RiskAlerts, want) {
		t.Errorf("risk alerts = %+v, want %+v", r.res.RiskAlerts, want)
	}
	if v := r.res.DailyVolume; v["x"] != 60_000 || v["y"] != 60_000 {
		t.Errorf("daily volume = %v, want 60000 for x and y", v)
	}
	if p := r.res.Positions; p["x"]["AAPL"] != -60_000 || p["y"]["AAPL"] != 60_000 {
		t.Errorf("positions = %v, want x -60000 and y 60000 AAPL", p)
	}
	if r.res.Audit.RiskAlerts != 1 {
		t.Errorf("RISK_ALERT events = %d, want 1", r.res.Audit.RiskAlerts)
	}
}

// TestDailyVolumeResets checks that RiskManager starts the daily volume again on a new
// UTC day, as the seed does.
func TestDailyVolumeResets(t *testing.T) {
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	a.now = func() time.Time { return day }
	fillOf := func(q int) necro.Event {
		ev, err := necro.NewEvent(orderFilled, filledOrder{TraderID: "x", Quantity: q,
			Fills: []fill{{TradeID: "T1", Quantity: q, Price: 1, CounterpartyID: "y"}}})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	for _, step := range []struct {
		at     time.Time
		q      int
		wantXY int
	}{{day, 40_000, 40_000}, {day, 5_000, 45_000}, {day.Add(2 * time.Minute), 7_000, 7_000}} {
		day = step.at
		if _, err := a.manageRisk(t.Context(), fillOf(step.q)); err != nil {
			t.Fatal(err)
		}
		if got := a.dailyVolume; got["x"] != step.wantXY || got["y"] != step.wantXY {
			t.Errorf("at %s after %d more: daily volume %v, want %d for x and y", step.at, step.q, got, step.wantXY)
		}
	}
}

func TestValidateOrder(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    string // the reason of ORDER_REJECTED, or "" for ORDER_VALIDATED
	}{
		{"limit", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 100, "price": 150.5}`, ""},
		{"market without price", `{"trader_id": "a", "symbol": "TSLA", "side": "SELL", "order_type": "MARKET", "quantity": 1}`, ""},
		{"market ignores a bad price", `{"trader_id": "a", "symbol": "TSLA", "side": "SELL", "order_type": "MARKET", "quantity": 1, "price": "x"}`, ""},
		{"lower case", `{"trader_id": "a", "symbol": "aapl", "side": "buy", "order_type": "limit", "quantity": 10000, "price": 100000}`, ""},
		{"float quantity", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 100.0, "price": 1}`,
			"quantity must be a positive integer"},
		{"exponent quantity", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 1e2, "price": 1}`,
			"quantity must be a positive integer"},
		{"bool quantity", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": true, "price": 1}`,
			"quantity must be a positive integer"},
		{"string quantity", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": "5", "price": 1}`,
			"quantity must be a positive integer"},
		{"zero quantity", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 0, "price": 1}`,
			"quantity must be a positive integer"},
		{"huge negative quantity", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": -99999999999999999999, "price": 1}`,
			"quantity must be a positive integer"},
		{"quantity over max", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 10001, "price": 1}`,
			"quantity exceeds max 10000"},
		{"huge quantity", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 99999999999999999999, "price": 1}`,
			"quantity exceeds max 10000"},
		{"limit without price", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 1}`,
			"LIMIT order requires positive price"},
		{"limit price zero", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 0}`,
			"LIMIT order requires positive price"},
		{"limit price text", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": "150"}`,
			"LIMIT order requires positive price"},
		{"price over max", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 100000.01}`,
			"price exceeds max 100000.0"},
		{"price beyond float", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 1, "price": 1e400}`,
			"price exceeds max 100000.0"},
		{"blank trader", `{"trader_id": "  ", "symbol": "AAPL", "side": "BUY", "order_type": "MARKET", "quantity": 1}`,
			"trader_id required"},
		{"numeric trader", `{"trader_id": 7, "symbol": "AAPL", "side": "BUY", "order_type": "MARKET", "quantity": 1}`,
			"trader_id must be a string"},
		{"symbol is not trimmed", `{"trader_id": "a", "symbol": " AAPL", "side": "BUY", "order_type": "MARKET", "quantity": 1}`,
			"invalid symbol:  AAPL"},
		{"no order type", `{"trader_id": "a", "symbol": "AAPL", "side": "BUY", "quantity": 1}`, "order_type required"},
		{"every rule at once", `{"symbol": "XYZ", "side": "HOLD", "order_type": "stop", "quantity": -1}`,
			"trader_id required; invalid symbol: XYZ; invalid side: HOLD; invalid order_type: STOP; quantity must be a positive integer"},
		{"empty order", `{}`,
			"trader_id required; invalid symbol: ; invalid side: ; order_type required; quantity must be a positive integer"},
	}
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := necro.NewEvent(orderSubmitted, json.RawMessage(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			out, err := a.validateOrder(t.Context(), ev)
			if err != nil || len(out) != 1 {
				t.Fatalf("validateOrder(%s) = %v, %v; want one event", tt.payload, out, err)
			}
			got := out[0]
			if tt.want == "" {
				var o validatedOrder
				if got.Type() != orderValidated || got.DecodePayload(&o) != nil || o.OrderID != ev.ID() {
					t.Fatalf("validateOrder(%s) emitted %s %s, want ORDER_VALIDATED for order %s", tt.payload, got.Type(), got.PayloadJSON(), ev.ID())
				}
				if (o.OrderType == marketOrder) != (o.Price == nil) {
					t.Errorf("validateOrder(%s): %s order with price %v; want null exactly for MARKET", tt.payload, o.OrderType, o.Price)
				}
				return
			}
			var r rejectedOrder
			if got.Type() != orderRejected || got.DecodePayload(&r) != nil || r.Reason != tt.want || r.OrderID != ev.ID() {
				t.Errorf("validateOrder(%s) emitted %s %s, want ORDER_REJECTED for order %s because %q", tt.payload, got.Type(), got.PayloadJSON(), ev.ID(), tt.want)
			}
		})
	}
}

// TestRandomFailures runs 150 trades with the clearing house's 5% timeouts on: some
// attempts time out and are retried at once, and the same seed gives the same run.
func TestRandomFailures(t *testing.T) {
	input := manyTrades(t)
	opts := Options{Input: input, RandomFailures: true, Seed: 42}
	first := runApp(t, opts, 0)

	st := first.stats
	if st.Retried == 0 {
		t.Fatalf("Stats() = %+v; want some clearing house timeouts retried", st)
	}
	// Every failed attempt was either retried or dead-lettered, and every trade either
	// settled or failed for good.
	if st.HandlerErrors["SettlementOrgan"] != st.Retried+st.DeadLettered {
		t.Errorf("Stats() = %+v: SettlementOrgan errors != retries + dead letters", st)
	}
	res := first.res
	if res.TradesExecuted != 150 || res.Settlements+res.SettlementFailures != 150 || int64(res.SettlementFailures) != st.DeadLettered {
		t.Errorf("Results() = %d trades, %d settled, %d failed; %d dead letters; want 150 trades, each settled or dead-lettered",
			res.TradesExecuted, res.Settlements, res.SettlementFailures, st.DeadLettered)
	}
	for _, dl := range first.dead {
		if !strings.HasPrefix(dl.Error, "Clearing house timeout for trade T") || dl.Attempts != settlementAttempts {
			t.Errorf("dead letter after %d attempts: %q; want the clearing house timeout after %d", dl.Attempts, dl.Error, settlementAttempts)
		}
	}

	again := runApp(t, opts, 0)
	if !reflect.DeepEqual(again.res, first.res) {
		t.Errorf("second run with seed 42: Results() = %+v\nwant the first's %+v", again.res, first.res)
	}
	if again.report != first.report {
		t.Errorf("second run with seed 42 printed:\n%s\nwant the first's:\n%s", again.report, first.report)
	}
	if again.stats.Retried != st.Retried || again.stats.Processed != st.Processed {
		t.Errorf("second run with seed 42: Stats() = %+v, want the first's %+v", again.stats, st)
	}

	off := runApp(t, Options{Input: input, Seed: 42}, 0)
	if off.stats.Retried != 0 || off.res.Settlements != 150 {
		t.Errorf("RandomFailures off: %d retries, %d settlements; want 0 and 150", off.stats.Retried, off.res.Settlements)
	}
}

// TestSettlementLatency checks that the clearing house's latency comes from the chosen
// range and that a cancelled ctx cuts it short. synctest's clock makes the waits instant.
func TestSettlementLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tt := range []struct {
			latency  time.Duration
			min, max time.Duration
		}{
			{0, 50 * time.Millisecond, 150 * time.Millisecond},
			{90 * time.Millisecond, 30 * time.Millisecond, 90 * time.Millisecond},
			{-1, 0, 0},
		} {
			a, err := New(Options{SettlementLatency: tt.latency, Seed: 9})
			if err != nil {
				t.Fatal(err)
			}
			for range 20 {
				start := time.Now()
				if err := a.clearingLatency(t.Context()); err != nil {
					t.Fatalf("clearingLatency() = %v", err)
				}
				if d := time.Since(start); d < tt.min || d > tt.max {
					t.Errorf("SettlementLatency %v: waited %v, want within [%v, %v]", tt.latency, d, tt.min, tt.max)
				}
			}
		}

		a, err := New(Options{SettlementLatency: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		ev, err := necro.NewEvent(tradeExecuted, trade{TradeID: "T1", Symbol: "AAPL", Price: 1, Quantity: 1, BuyerID: "a", SellerID: "b"})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1) // the organ's result, read once it returns
		go func() {
			_, err := a.settleTrade(ctx, ev)
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("settleTrade after cancel = %v, want context.Canceled", err)
		}
		if a.settled != 0 || a.settlementFailures != 0 {
			t.Errorf("a cancelled settlement counted %d settled, %d failed; want neither", a.settled, a.settlementFailures)
		}
	})
}

// TestSettlementTimeout runs the sample with a clearing house slower than the handler
// timeout: every attempt times out, is retried, and after the third the trade is
// dead-lettered and counts as a settlement failure.
func TestSettlementTimeout(t *testing.T) {
	r := runAppConfig(t, Options{SettlementLatency: time.Hour}, func(c spine.Config) spine.Config {
		c.Organs = map[string]spine.OrganPolicy{"SettlementOrgan": {HandlerTimeout: 5 * time.Millisecond}}
		return c
	})
	if st := r.stats; st.Timeouts != 12 || st.Retried != 8 || st.DeadLettered != 4 {
		t.Errorf("Stats() = %+v; want 12 timeouts, 8 retries, 4 dead letters", st)
	}
	if res := r.res; res.TradesExecuted != 4 || res.Settlements != 0 || res.SettlementFailures != 4 {
		t.Errorf("Results() = %d trades, %d settled, %d failed; want 4, 0, 4", res.TradesExecuted, res.Settlements, res.SettlementFailures)
	}
	for _, dl := range r.dead {
		if dl.Organ != "SettlementOrgan" || dl.Attempts != settlementAttempts || dl.Reason != supervision.ReasonExhausted {
			t.Errorf("dead letter in %s after %d attempts (%s): %s; want SettlementOrgan, %d, %s",
				dl.Organ, dl.Attempts, dl.Reason, dl.Error, settlementAttempts, supervision.ReasonExhausted)
		}
	}
}

func TestSettlementFee(t *testing.T) {
	a, err := New(Options{SettlementLatency: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		price    float64
		quantity int
		fee      float64
	}{{150.5, 50, 0.75}, {149.5, 75, 1.12}, {141, 30, 0.42}, {248, 500, 12.4}, {250, 5000, 125}} {
		ev, err := necro.NewEvent(tradeExecuted, trade{TradeID: "T1", Symbol: "AAPL", Price: tt.price, Quantity: tt.quantity,
			BuyerID: "a", SellerID: "b"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := a.settleTrade(t.Context(), ev)
		var s settlement
		if err != nil || len(out) != 1 || out[0].DecodePayload(&s) != nil {
			t.Fatalf("settleTrade(%d @ %v) = %v, %v", tt.quantity, tt.price, out, err)
		}
		if total := tt.price * float64(tt.quantity); s.TotalValue != total || s.SettlementFee != tt.fee {
			t.Errorf("settleTrade(%d @ %v): total %v, fee %v; want %v and %v", tt.quantity, tt.price, s.TotalValue, s.SettlementFee, total, tt.fee)
		}
	}
}

func TestCSVInput(t *testing.T) {
	csvText := "symbol,trader_id,side,quantity,price,extra\n" +
		"AAPL,amy,BUY,10,150.25,x\n" +
		"AAPL,ben,SELL,ten,150,x\n" + // not an integer: skipped
		"AAPL,cat,SELL,5,cheap,x\n" + // not a number: skipped
		"AAPL,dan,SELL,5,inf,x\n" + // not finite: skipped
		"AAPL,eve,SELL, 4 ,150.25\n" + // spaces around numbers are fine, a short row too
		"\n" + // blank lines are no rows
		"AAPL,fay\n" // no side, quantity or price: 0s, rejected by ValidateOrder
	r := runApp(t, Options{Input: writeInput(t, "orders.csv", csvText)}, 0)
	wantBegin := "Warning: Skipping invalid row: line 3: quantity \"ten\" is not an integer\n" +
		"Warning: Skipping invalid row: line 4: price \"cheap\" is not a finite number\n" +
		"Warning: Skipping invalid row: line 5: price \"inf\" is not a finite number\n"
	if !strings.Contains(r.begin, "orders.csv\n\n"+wantBegin) || !strings.Contains(r.begin, "\nSubmitting 3 orders...\n") ||
		!strings.Contains(r.begin, "  → amy: BUY 10 AAPL @ 150.25\n  → eve: SELL 4 AAPL @ 150.25\n  → fay:  0 AAPL @ MKT\n") {
		t.Errorf("Begin printed:\n%s\nwant the warnings:\n%sand the 3 orders left, LIMIT by default", r.begin, wantBegin)
	}
	if got := r.res; got.Orders != 3 || got.SkippedRows != 3 || len(got.Trades) != 1 || got.Trades[0] != (tradeRecord{"T1", "AAPL", 150.25, 4, "amy", "eve"}) {
		t.Errorf("Results() = %+v; want 3 orders, 3 skipped rows, and eve selling 4 to amy @ 150.25", got)
	}
	wantRej := []rejection{{"fay", "invalid side: ; quantity must be a positive integer; LIMIT order requires positive price"}}
	if !reflect.DeepEqual(r.res.Rejections, wantRej) {
		t.Errorf("rejections = %+v, want %+v", r.res.Rejections, wantRej)
	}
}

func TestNewStress(t *testing.T) {
	a, err := NewStress(Options{Seed: 3}, 200)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewStress(Options{Seed: 3}, 200)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.orders, b.orders) {
		t.Errorf("NewStress made different orders for seed 3")
	}
	if c, err := NewStress(Options{Seed: 4}, 200); err != nil || reflect.DeepEqual(c.orders, a.orders) {
		t.Errorf("NewStress(seed 4) = %v; want other orders than seed 3", err)
	}
	markets := 0
	for _, o := range a.orders {
		q, problem := checkQuantity(o["quantity"])
		price, _ := o["price"].(json.Number).Float64()
		if problem != "" || q < 10 || q > 500 || (o["order_type"] == marketOrder) != (price == 0) ||
			(o["order_type"] == limitOrder && (price < 0.98*140 || price > 1.02*500)) {
			t.Errorf("NewStress made %v; want 10-500 shares and a LIMIT price near the base", o)
		}
		if o["order_type"] == marketOrder {
			markets++
		}
	}
	if markets < 20 || markets > 60 {
		t.Errorf("NewStress made %d MARKET orders of 200, want about 20%%", markets)
	}

	var begin bytes.Buffer
	a.Begin(&begin)
	if got := begin.String(); !strings.HasPrefix(got, "🚀 STRESS TEST MODE: 200 orders\n\n"+rule+"\nTRADING ORDER BOOK SYSTEM\n") ||
		strings.Contains(got, "  → ") {
		t.Errorf("Begin printed:\n%s\nwant the stress banner, the header and no line per order (over 20)", got)
	}
	q, err := NewStress(Options{Quiet: true}, 5)
	if err != nil {
		t.Fatal(err)
	}
	begin.Reset()
	q.Begin(&begin)
	if got := begin.String(); got != "🚀 STRESS TEST MODE: 5 orders\n" {
		t.Errorf("Begin printed %q with Quiet, want the banner alone", got)
	}

	for _, tt := range []struct {
		opts  Options
		count int
	}{{Options{Input: "x.json"}, 5}, {Options{}, -1}} {
		if _, err := NewStress(tt.opts, tt.count); err == nil {
			t.Errorf("NewStress(%+v, %d) = nil error, want one", tt.opts, tt.count)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name  string
		input string
		want  string // in the error, beside the file's name
	}{
		{"missing file", filepath.Join(dir, "nope.json"), "no such file"},
		{"unsupported format", write("orders.txt", "x"), `unsupported file format ".txt"`},
		{"bad JSON", write("bad.json", `{"orders": [`), "read JSON"},
		{"trailing data", write("trail.json", `[] []`), "data after the first JSON value"},
		{"no orders list", write("noorders.json", `{"order": []}`), `"orders" list`},
		{"scalar", write("scalar.json", `42`), `"orders" list`},
		{"order not an object", write("notobj.json", `{"orders": [{}, 5]}`), "order 2 is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(Options{Input: tt.input})
			if err == nil || !strings.Contains(err.Error(), tt.input) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) = %v, %v; want an error naming the file and %q", tt.input, a, err, tt.want)
			}
		})
	}
}

func TestEmptyInputs(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"orders.json", `{"orders": []}`}, {"orders.json", `[]`}, {"orders.csv", ""}, {"orders.csv", "trader_id,symbol\n"},
	} {
		r := runApp(t, Options{Input: writeInput(t, tt.name, tt.content)}, 0)
		if r.res.Orders != 0 || r.stats.Processed != 0 || !strings.Contains(r.begin, "Submitting 0 orders...") {
			t.Errorf("%s %q: %d orders, %d processed; Begin printed:\n%s\nwant an empty run", tt.name, tt.content, r.res.Orders, r.stats.Processed, r.begin)
		}
	}
}

func TestMountsAndConfig(t *testing.T) {
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range a.Mounts() {
		names = append(names, m.Name)
	}
	if want := []string{"ValidateOrder", "MatchingEngine", "SettlementOrgan", "RiskManager", "AuditTrail"}; !slices.Equal(names, want) {
		t.Errorf("Mounts() names = %v, want %v", names, want)
	}
	base := spine.Config{Window: 7, MaxSteps: 3}
	c := a.Config(base)
	if c.Window != 7 || c.MaxSteps != 50_000 || c.HandlerFailure != spine.HandlerDeadLetter || c.EnqueueFailure != spine.EnqueueStore ||
		c.HandlerTimeout != 5*time.Second || c.Retry.MaxAttempts != 3 {
		t.Errorf("Config(%+v) = %+v; want the base's window, 50000 steps, dead letters, enqueue store, 5s, 3 attempts", base, c)
	}
	if d := c.Retry.Decide(1, errors.New("timeout"), 1); !d.Retry || d.Delay > time.Microsecond {
		t.Errorf("the retry policy decided %v, want a retry at once (1µs or less)", d)
	}
	if d := c.Retry.Decide(3, errors.New("timeout"), 1); d.Retry {
		t.Errorf("the retry policy decided %v after attempt 3, want to give up", d)
	}
}

// FuzzReadOrders feeds odd input files to both loaders: they may refuse them, but every
// order they accept becomes an ORDER_SUBMITTED that ValidateOrder judges without error.
func FuzzReadOrders(f *testing.F) {
	jsonSample, err := samples.ReadFile("sample_orders.json")
	if err != nil {
		f.Fatal(err)
	}
	csvSample, err := samples.ReadFile("sample_orders.csv")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []struct {
		csv  bool
		data []byte
	}{
		{false, jsonSample}, {true, csvSample}, {false, []byte(`[{"quantity": 1e999, "price": -0}]`)}, {false, []byte(`{}`)},
		{false, []byte(`[{"trader_id": [], "symbol": {}, "order_type": null}]`)}, {true, []byte("quantity\n1\n\"")},
		{true, []byte("\uFEFFtrader_id,price\nx,NaN\n")}, {false, []byte{0xff}},
	} {
		f.Add(seed.csv, seed.data)
	}
	a, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, isCSV bool, data []byte) {
		var (
			orders []order
			err    error
		)
		if isCSV {
			orders, _, err = parseCSV(data)
		} else {
			orders, err = parseJSON(data)
		}
		if err != nil {
			return // refusing the input is fine; panicking is not
		}
		for i, o := range orders {
			ev, err := necro.NewEvent(orderSubmitted, o)
			if err != nil {
				t.Fatalf("order %d %v: NewEvent = %v", i+1, o, err)
			}
			out, err := a.validateOrder(t.Context(), ev)
			if err != nil || len(out) != 1 || (out[0].Type() != orderValidated && out[0].Type() != orderRejected) {
				t.Fatalf("order %d %v: validateOrder = %v, %v; want one ORDER_VALIDATED or ORDER_REJECTED", i+1, o, out, err)
			}
		}
	})
}
