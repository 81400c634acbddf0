package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro/spine"
)

// wantSample is the report for the embedded sample, worked out by hand. The queue is
// FIFO and all ten submissions are in it before the Spine starts, so the ten orders are
// validated first and then matched in file order; each fill is at the resting order's
// price:
//
//	#1-#4  the first AAPL bids (149.50, 149.00) and asks (150.50, 151.00) do not cross: queued
//	#5     charlie BUY MARKET 50 takes 50 of bob's 100 @ 150.50 (the lowest ask)
//	#6     diana SELL MARKET 75 takes 75 of alice's 100 @ 149.50 (the highest bid)
//	#7-#8  eve's GOOGL bid rests; frank's ask at the same 141 fills it @ 141
//	#9-#10 grace's TSLA bid rests; henry's ask at the same 248 fills it @ 248
//
// Fees are round(total × 0.0001, 2): 7525 → 0.75, 11212.5 → 1.12, 4230 → 0.42,
// 124000 → 12.40. Events: 10 submitted + 10 validated + 6 queued + 4 filled + 4 trades +
// 4 settlements = 38 processed, of which all but the 10 submissions were emitted.
const wantSample = `orders: 10 submitted, 10 validated, 0 rejected
trades executed: 4
  AAPL 50 @ 150.50  buyer charlie, seller bob
  AAPL 75 @ 149.50  buyer alice, seller diana
  GOOGL 30 @ 141.00  buyer eve, seller frank
  TSLA 500 @ 248.00  buyer grace, seller henry
order outcomes:
  #1 alice BUY LIMIT 100 AAPL @ 149.50: queued
  #2 alice BUY LIMIT 200 AAPL @ 149.00: queued
  #3 bob SELL LIMIT 100 AAPL @ 150.50: queued
  #4 bob SELL LIMIT 200 AAPL @ 151.00: queued
  #5 charlie BUY MARKET 50 AAPL: filled 50 @ avg 150.50
  #6 diana SELL MARKET 75 AAPL: filled 75 @ avg 149.50
  #7 eve BUY LIMIT 30 GOOGL @ 141.00: queued
  #8 frank SELL LIMIT 30 GOOGL @ 141.00: filled 30 @ avg 141.00
  #9 grace BUY LIMIT 500 TSLA @ 248.00: queued
  #10 henry SELL LIMIT 500 TSLA @ 248.00: filled 500 @ avg 248.00
settlements: 4
  AAPL 50 @ 150.50  value 7525.00, fee 0.75
  AAPL 75 @ 149.50  value 11212.50, fee 1.12
  GOOGL 30 @ 141.00  value 4230.00, fee 0.42
  TSLA 500 @ 248.00  value 124000.00, fee 12.40
dead letters: 0
book:
  AAPL  bids: 25 @ 149.50 (alice), 200 @ 149.00 (alice)
        asks: 50 @ 150.50 (bob), 200 @ 151.00 (bob)
  GOOGL bids: -
        asks: -
  TSLA  bids: -
        asks: -
audit:
  order.filled           4
  order.queued           6
  order.submitted        10
  order.validated        10
  trade.executed         4
  trade.settled          4
spine: processed 38, emitted 28, dead-lettered 0
`

func TestRunSample(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), nil, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	if got := stdout.String(); got != wantSample {
		t.Errorf("run() printed:\n%s\nwant:\n%s", got, wantSample)
	}
	if stderr.Len() != 0 {
		t.Errorf("run() logged at the default level, want nothing:\n%s", stderr.String())
	}
}

// TestRunSameReportForAnyWindow checks the ordering promise from the outside: how many
// deliveries the Spine has in flight changes nothing a user can see.
func TestRunSameReportForAnyWindow(t *testing.T) {
	for _, window := range []string{"1", "2", "7", "1024"} {
		var stdout, stderr bytes.Buffer
		if err := run(testContext(t), []string{"-window", window}, &stdout, &stderr); err != nil {
			t.Fatalf("run(-window %s) = %v; stderr:\n%s", window, err, stderr.String())
		}
		if got := stdout.String(); got != wantSample {
			t.Errorf("run(-window %s) printed:\n%s\nwant:\n%s", window, got, wantSample)
		}
	}
}

// badOrders breaks each validation rule once, then trades with the restricted traders:
//
//	#1-#13 rejected by validate, #12 because it is not an object, #13 on three counts
//	#14-#15 trader_bad_1 bids 10 MSFT @ 400; zoe's ask @ 399 fills it @ 400 (the resting
//	        price), and settling that trade fails: the buyer has insufficient funds
//	#16    trader_bad_2 sells 5 AMZN at market into an empty book: no liquidity
//	#17-#18 yuri bids 5 NVDA @ 900; trader_bad_2 sells 8 at market, fills 5 @ 900 and the
//	        MARKET rest of 3 is dropped; settling fails: the seller's account is restricted
//	#19-#21 amy bids 10 META @ 500; ben (written in lower case) sells 4 @ 495 and fills
//	        @ 500; carl sells 10 @ 499, takes amy's last 6 @ 500, and rests 4 @ 499
const badOrders = `{"orders": [
  {"symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 100},
  {"trader_id": "ivan", "symbol": "XYZ", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 100},
  {"trader_id": "judy", "symbol": "AAPL", "side": "HOLD", "order_type": "LIMIT", "quantity": 10, "price": 100},
  {"trader_id": "ken", "symbol": "AAPL", "side": "BUY", "order_type": "STOP", "quantity": 10, "price": 100},
  {"trader_id": "lena", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 100.0, "price": 100},
  {"trader_id": "max", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 0, "price": 100},
  {"trader_id": "nina", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 10001, "price": 100},
  {"trader_id": "otto", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": true, "price": 100},
  {"trader_id": "pia", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 0},
  {"trader_id": "quinn", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 100000.01},
  {"trader_id": "rosa", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": "150"},
  "oops",
  {"trader_id": " ", "symbol": "ZZZ", "side": "BUY", "order_type": "MARKET", "quantity": -5},
  {"trader_id": "trader_bad_1", "symbol": "MSFT", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 400},
  {"trader_id": "zoe", "symbol": "MSFT", "side": "SELL", "order_type": "LIMIT", "quantity": 10, "price": 399},
  {"trader_id": "trader_bad_2", "symbol": "AMZN", "side": "SELL", "order_type": "MARKET", "quantity": 5},
  {"trader_id": "yuri", "symbol": "NVDA", "side": "BUY", "order_type": "LIMIT", "quantity": 5, "price": 900},
  {"trader_id": "trader_bad_2", "symbol": "NVDA", "side": "SELL", "order_type": "MARKET", "quantity": 8},
  {"trader_id": "amy", "symbol": "META", "side": "BUY", "order_type": "LIMIT", "quantity": 10, "price": 500},
  {"trader_id": "ben", "symbol": "meta", "side": "sell", "order_type": "limit", "quantity": 4, "price": 495},
  {"trader_id": "carl", "symbol": "META", "side": "SELL", "order_type": "LIMIT", "quantity": 10, "price": 499}
]}`

// Events for badOrders: 21 submitted + 8 validated + 14 rejected (13 by validate, 1 by
// match) + 3 queued + 2 filled + 2 partially filled + 4 trades + 2 settlements = 56.
const wantBad = `orders: 21 submitted, 8 validated, 13 rejected
trades executed: 4
  MSFT 10 @ 400.00  buyer trader_bad_1, seller zoe
  NVDA 5 @ 900.00  buyer yuri, seller trader_bad_2
  META 4 @ 500.00  buyer amy, seller ben
  META 6 @ 500.00  buyer amy, seller carl
order outcomes:
  #1 unknown: rejected: trader_id is required
  #2 ivan: rejected: unknown symbol "XYZ"
  #3 judy: rejected: side must be BUY or SELL, got "HOLD"
  #4 ken: rejected: order_type must be LIMIT or MARKET, got "STOP"
  #5 lena: rejected: quantity must be a whole number from 1 to 10000, got 100.0
  #6 max: rejected: quantity must be a whole number from 1 to 10000, got 0
  #7 nina: rejected: quantity must be a whole number from 1 to 10000, got 10001
  #8 otto: rejected: quantity must be a whole number from 1 to 10000, got true
  #9 pia: rejected: LIMIT price must be a number above 0 and at most 100000, got 0
  #10 quinn: rejected: LIMIT price must be a number above 0 and at most 100000, got 100000.01
  #11 rosa: rejected: LIMIT price must be a number above 0 and at most 100000, got "150"
  #12 unknown: rejected: order must be a JSON object
  #13 unknown: rejected: trader_id is required; unknown symbol "ZZZ"; quantity must be a whole number from 1 to 10000, got -5
  #14 trader_bad_1 BUY LIMIT 10 MSFT @ 400.00: queued
  #15 zoe SELL LIMIT 10 MSFT @ 399.00: filled 10 @ avg 400.00
  #16 trader_bad_2 SELL MARKET 5 AMZN: rejected: no liquidity for MARKET order
  #17 yuri BUY LIMIT 5 NVDA @ 900.00: queued
  #18 trader_bad_2 SELL MARKET 8 NVDA: partially filled 5 @ avg 900.00, 3 dropped
  #19 amy BUY LIMIT 10 META @ 500.00: queued
  #20 ben SELL LIMIT 4 META @ 495.00: filled 4 @ avg 500.00
  #21 carl SELL LIMIT 10 META @ 499.00: partially filled 6 @ avg 500.00, 4 rests in the book
settlements: 2
  META 4 @ 500.00  value 2000.00, fee 0.20
  META 6 @ 500.00  value 3000.00, fee 0.30
dead letters: 2
  trade.executed in settle: settlement failed: trader_bad_1 has insufficient funds (permanent error)
  trade.executed in settle: settlement failed: trader_bad_2 has restricted account (permanent error)
book:
  AMZN  bids: -
        asks: -
  META  bids: -
        asks: 4 @ 499.00 (carl)
  MSFT  bids: -
        asks: -
  NVDA  bids: -
        asks: -
audit:
  order.filled           2
  order.partially_filled 2
  order.queued           3
  order.rejected         14
  order.submitted        21
  order.validated        8
  trade.executed         4
  trade.settled          2
spine: processed 56, emitted 35, dead-lettered 2
`

// testContext bounds a run, so that a Spine that never finishes fails the test in
// seconds rather than at the test binary's timeout; the sample takes milliseconds.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 10*time.Second, errors.New("the Spine did not finish within 10s"))
	t.Cleanup(cancel)
	return ctx
}

func writeOrders(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "orders.json")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunRejectionsAndDeadLetters(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), []string{"-orders", writeOrders(t, badOrders)}, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	if got := stdout.String(); got != wantBad {
		t.Errorf("run() printed:\n%s\nwant:\n%s", got, wantBad)
	}

	// The two permanent failures are handled failures: the Spine warns once when settle
	// fails and once when it dead-letters the trade, as JSON on stderr.
	msgs := map[string]int{}
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		var rec struct {
			Level, Msg, Organ string
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", sc.Text(), err)
		}
		if rec.Level != "WARN" || rec.Organ != "settle" {
			t.Errorf("stderr line %q: want a WARN about organ settle", sc.Text())
		}
		msgs[rec.Msg]++
	}
	// One line per failure: a permanent error is not retried, so the dead letter is it.
	if want := map[string]int{"event dead-lettered": 2}; !maps.Equal(msgs, want) {
		t.Errorf("stderr log messages = %v, want %v", msgs, want)
	}
}

// TestNothingLost checks, on the result itself, that every submitted order ends in
// exactly one terminal event and that every trade is either settled or dead-lettered.
func TestNothingLost(t *testing.T) {
	orders, err := parseOrders([]byte(badOrders))
	if err != nil {
		t.Fatal(err)
	}
	res, err := process(testContext(t), orders, spine.Config{})
	if err != nil {
		t.Fatalf("process() = %v", err)
	}
	for seq := 1; seq <= len(orders); seq++ {
		if got := res.terminal[seq]; len(got) != 1 {
			t.Errorf("order #%d ended in %d terminal events %v, want exactly 1", seq, len(got), got)
		}
	}
	ends := map[string]string{}
	for _, s := range res.settled {
		ends[s.TradeID] += "settled "
	}
	for _, dl := range res.dead {
		var tr trade
		if err := dl.Event.DecodePayload(&tr); err != nil || dl.Event.Type() != typeTradeExecuted {
			t.Fatalf("dead letter %v (%v): want a trade.executed", dl.Event, err)
		}
		ends[tr.TradeID] += "dead-lettered "
	}
	for _, tr := range res.trades {
		if got := strings.TrimSpace(ends[tr.TradeID]); got != "settled" && got != "dead-lettered" {
			t.Errorf("trade %s %d @ %.2f ended as %q, want settled or dead-lettered once", tr.Symbol, tr.Quantity, tr.Price, got)
		}
	}
	if len(ends) != len(res.trades) {
		t.Errorf("%d trades settled or dead-lettered, want the %d executed", len(ends), len(res.trades))
	}
	if res.stats.DeadLettered != 2 || len(res.dead) != 2 {
		t.Errorf("Stats.DeadLettered = %d with %d dead letters stored, want 2 and 2", res.stats.DeadLettered, len(res.dead))
	}
}

func TestRunBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		name  string
		args  []string
		check func(error) bool
	}{
		{"help", []string{"-h"}, func(err error) bool { return errors.Is(err, flag.ErrHelp) }},
		{"unknown flag", []string{"-nope"}, func(err error) bool { return errors.As(err, new(usageError)) }},
		{"extra argument", []string{"orders.json"}, func(err error) bool { return errors.As(err, new(usageError)) }},
		{"missing file", []string{"-orders", missing}, func(err error) bool { return errors.Is(err, os.ErrNotExist) }},
		{"not JSON", []string{"-orders", writeOrders(t, "{")}, func(err error) bool { return err != nil }},
		{"no orders list", []string{"-orders", writeOrders(t, `{"order": []}`)}, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), `no "orders" list`)
		}},
		{"bad window", []string{"-window", "-1"}, func(err error) bool { return errors.Is(err, spine.ErrInvalidConfig) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(testContext(t), tt.args, &stdout, &stderr)
			if !tt.check(err) {
				t.Errorf("run(%q) = %v; not the error wanted", tt.args, err)
			}
			if stdout.Len() != 0 {
				t.Errorf("run(%q) printed a report on failure:\n%s", tt.args, stdout.String())
			}
		})
	}
}

func TestRunEmptyOrders(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), []string{"-orders", writeOrders(t, `{"orders": []}`)}, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v", err)
	}
	for _, want := range []string{"orders: 0 submitted, 0 validated, 0 rejected\n", "book:\n  empty\n",
		"spine: processed 0, emitted 0, dead-lettered 0\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("run() printed:\n%s\nwant it to contain %q", stdout.String(), want)
		}
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, nil, &stdout, &stderr); !errors.Is(err, context.Canceled) {
		t.Errorf("run() with a canceled ctx = %v, want context.Canceled", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("run() with a canceled ctx printed a report:\n%s", stdout.String())
	}
}
