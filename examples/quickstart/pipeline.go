package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
)

// A result is what one run of the pipeline did, gathered from the audit organ's
// journal, the match organ's books, the backend's dead letters and the Spine's Stats.
type result struct {
	submitted int
	validated int
	trades    []trade              // trade.executed, in queue order
	settled   []settlement         // trade.settled, in queue order
	terminal  map[int][]terminalEv // each order's terminal events, by Seq
	orders    map[int]order        // validated orders, by Seq
	dead      []backend.DeadLetter // oldest first
	books     []symbolBook         // sorted by symbol
	counts    map[string]int       // events the audit organ saw, by type
	stats     spine.Stats
}

// A terminalEv is one terminal event about an order: rejected, queued, filled or
// partially filled.
type terminalEv struct {
	Type string
	outcome
}

// process submits one order.submitted event per order to a fresh in-memory backend,
// runs the pipeline until nothing is left to do, and gathers the result.
func process(ctx context.Context, orders []json.RawMessage, cfg spine.Config) (_ *result, err error) {
	q, err := memory.New(memory.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, q.Close()) }()

	var engines engineRef
	audit := newJournal()
	mounts := []necro.Mount{
		{Name: "validate", Organ: necro.NewOrgan([]string{typeSubmitted}, validate)},
		{Name: "match", Factory: engines.newOrgan},
		{Name: "settle", Organ: necro.NewOrgan([]string{typeTradeExecuted}, settle)},
		{Name: "audit", Organ: necro.NewOrgan(allTypes, audit.handle)},
	}
	sp, err := spine.New(q, mounts, cfg)
	if err != nil {
		return nil, err
	}

	submissions := make([]necro.Event, len(orders))
	for i, raw := range orders {
		if submissions[i], err = necro.NewEvent(typeSubmitted, map[string]any{"seq": i + 1, "order": raw}); err != nil {
			return nil, fmt.Errorf("order %d: %w", i+1, err)
		}
	}
	// All submissions go in before the Spine starts, and the queue is FIFO: every order
	// is validated before the first is matched, and matching follows the file's order.
	if err := q.Enqueue(ctx, submissions...); err != nil {
		return nil, fmt.Errorf("enqueue orders: %w", err)
	}
	if err := sp.Run(ctx); err != nil {
		return nil, fmt.Errorf("run pipeline: %w", err)
	}
	// Run returns nil when ctx is canceled too (an interrupt asks it to stop); the work
	// is then unfinished, and a report of it would mislead.
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("run pipeline: %w", err)
	}

	res := &result{submitted: len(orders), terminal: map[int][]terminalEv{}, orders: map[int]order{},
		books: engines.books(), stats: sp.Stats()}
	if res.dead, err = q.DeadLetters(ctx, 0); err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	counts, events := audit.seen()
	res.counts = counts
	for _, ev := range events {
		if err := res.add(ev); err != nil {
			return nil, fmt.Errorf("read %s %s: %w", ev.Type(), ev.ID(), err)
		}
	}
	return res, nil
}

// add records one event the audit organ saw.
func (r *result) add(ev necro.Event) error {
	switch ev.Type() {
	case typeValidated:
		var o order
		if err := ev.DecodePayload(&o); err != nil {
			return err
		}
		r.validated++
		r.orders[o.Seq] = o
	case typeTradeExecuted:
		var t trade
		if err := ev.DecodePayload(&t); err != nil {
			return err
		}
		r.trades = append(r.trades, t)
	case typeTradeSettled:
		var s settlement
		if err := ev.DecodePayload(&s); err != nil {
			return err
		}
		r.settled = append(r.settled, s)
	case typeRejected, typeQueued, typeFilled, typePartiallyFilled:
		var o outcome
		if err := ev.DecodePayload(&o); err != nil {
			return err
		}
		r.terminal[o.Seq] = append(r.terminal[o.Seq], terminalEv{Type: ev.Type(), outcome: o})
	}
	return nil
}

// write prints the report. Everything in it follows from the orders alone: no ids, no
// times, maps sorted.
func (r *result) write(w io.Writer) error {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	// Every order either passes validation or is rejected by it; the reasons are among
	// the outcomes below.
	p("orders: %d submitted, %d validated, %d rejected", r.submitted, r.validated, r.submitted-r.validated)

	p("trades executed: %d", len(r.trades))
	for _, t := range r.trades {
		p("  %s %d @ %.2f  buyer %s, seller %s", t.Symbol, t.Quantity, t.Price, t.BuyerID, t.SellerID)
	}

	p("order outcomes:")
	for seq := 1; seq <= r.submitted; seq++ {
		outs := r.terminal[seq]
		if len(outs) == 0 {
			p("  #%d: no outcome", seq)
		}
		for _, out := range outs {
			p("  #%d %s: %s", seq, describe(r.orders[seq], out), summarize(out))
		}
	}

	p("settlements: %d", len(r.settled))
	for _, s := range r.settled {
		p("  %s %d @ %.2f  value %.2f, fee %.2f", s.Symbol, s.Quantity, s.Price, s.TotalValue, s.Fee)
	}

	p("dead letters: %d", len(r.dead))
	for _, dl := range r.dead {
		p("  %s in %s: %s (%s)", dl.Event.Type(), dl.Organ, dl.Error, dl.Reason)
	}

	p("book:")
	if len(r.books) == 0 {
		p("  empty")
	}
	for _, sb := range r.books {
		p("  %-5s bids: %s", sb.Symbol, levels(sb.Bids))
		p("  %-5s asks: %s", "", levels(sb.Asks))
	}

	p("audit:")
	for _, typ := range slices.Sorted(maps.Keys(r.counts)) {
		p("  %-22s %d", typ, r.counts[typ])
	}

	p("spine: processed %d, emitted %d, dead-lettered %d", r.stats.Processed, r.stats.Emitted, r.stats.DeadLettered)
	_, err := w.Write(b.Bytes())
	return err
}

// describe names an order for the report: its trader, and what it asked for when it
// passed validation.
func describe(o order, out terminalEv) string {
	if o.OrderID == "" {
		return out.TraderID
	}
	s := fmt.Sprintf("%s %s %s %d %s", o.TraderID, o.Side, o.Type, o.Quantity, o.Symbol)
	if o.Type == limit {
		s += fmt.Sprintf(" @ %.2f", o.Price)
	}
	return s
}

// summarize says how an order ended.
func summarize(out terminalEv) string {
	switch out.Type {
	case typeFilled:
		return fmt.Sprintf("filled %d @ avg %.2f", out.Filled, out.AvgPrice)
	case typePartiallyFilled:
		rest := "dropped"
		if out.Rested {
			rest = "rests in the book"
		}
		return fmt.Sprintf("partially filled %d @ avg %.2f, %d %s", out.Filled, out.AvgPrice, out.Remaining, rest)
	case typeQueued:
		return "queued"
	}
	return "rejected: " + out.Reason
}

// levels lists resting orders as "qty @ price (trader)", best first.
func levels(side []restingOrder) string {
	if len(side) == 0 {
		return "-"
	}
	parts := make([]string, len(side))
	for i, r := range side {
		parts[i] = fmt.Sprintf("%d @ %.2f (%s)", r.Remaining, r.Price, r.TraderID)
	}
	return strings.Join(parts, ", ")
}
