package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/chaosapp"
)

// A pair is one (event, organ): the unit the runtime delivers, retries and
// dead-letters.
type pair struct{ id, organ string }

// An expectation is what the run must end with: every pair the roots' directives
// demand, each either handled successfully ("ok") or dead-lettered ("dead").
type expectation struct {
	want  map[pair]string
	ids   map[string]bool // every event id the run may handle
	roots int
	ok    int
	dead  int
}

func expect(roots []necro.Event) (expectation, error) {
	x := expectation{want: make(map[pair]string), ids: make(map[string]bool)}
	for _, r := range roots {
		if x.ids[r.ID()] {
			continue // the same root acknowledged twice is one root
		}
		x.roots++
		es, err := chaosapp.Expect(r)
		if err != nil {
			return x, fmt.Errorf("root %s: %w", r.ID(), err)
		}
		for _, e := range es {
			x.ids[e.ID] = true
			k := pair{e.ID, e.Organ}
			if _, dup := x.want[k]; dup {
				continue
			}
			x.want[k] = e.Want
			if e.Want == chaosapp.WantDead {
				x.dead++
			} else {
				x.ok++
			}
		}
	}
	return x, nil
}

// The evidence is what the run left: the workers' ledgers, the dead-letter stream and
// the group's state.
type evidence struct {
	lines    []chaosapp.LedgerLine
	dead     []necroredis.DeadLetterEntry
	pending  int64 // entries handed out and not acknowledged, all groups
	lag      int64 // entries no group has read
	delayed  int64 // retries waiting to be due
	byWorker map[string]int64
}

// gather reads the ledgers at these paths and asks the Redis of cfg about the rest.
func gather(ctx context.Context, ledgers []string, cfg necroredis.Config) (evidence, error) {
	var ev evidence
	for _, path := range ledgers {
		lines, err := chaosapp.ReadLedger(path)
		if err != nil {
			return ev, fmt.Errorf("ledger %s: %w", path, err)
		}
		ev.lines = append(ev.lines, lines...)
	}
	admin, err := necroredis.OpenAdmin(ctx, cfg)
	if err != nil {
		return ev, err
	}
	defer admin.Close()
	ev.dead, err = admin.DeadLetterEntries(ctx, necroredis.DeadLetterFilter{})
	if err != nil {
		return ev, err
	}
	in, err := admin.Inspect(ctx)
	if err != nil {
		return ev, err
	}
	ev.delayed = in.Delayed
	ev.byWorker = make(map[string]int64)
	for _, g := range in.Groups {
		ev.pending += g.Pending
		unread := g.Lag
		if unread < 0 {
			// Redis cannot tell the lag once entries were deleted after the group's
			// position (7.0); what the stream holds after that position is exact.
			if unread, err = countAfter(ctx, cfg, g.LastDeliveredID); err != nil {
				return ev, err
			}
		}
		ev.lag += unread
		for _, cons := range g.Consumers {
			ev.byWorker[cons.Name] += cons.Pending
		}
	}
	if len(in.Groups) == 0 && in.Length > 0 {
		ev.lag = in.Length // no group has read anything
	}
	return ev, nil
}

// countAfter counts the entries of cfg's stream after the id after: those a group
// whose last-delivered id it is has not read.
func countAfter(ctx context.Context, cfg necroredis.Config, after string) (int64, error) {
	opts, err := goredis.ParseURL(cfg.URL)
	if err != nil {
		return 0, fmt.Errorf("count unread entries: %w", err)
	}
	rdb := goredis.NewClient(opts)
	defer rdb.Close()
	var n int64
	for {
		page, err := rdb.XRangeN(ctx, cfg.Stream, "("+after, "+", 1000).Result()
		if err != nil {
			return 0, fmt.Errorf("count unread entries: XRANGE %s after %s: %w", cfg.Stream, after, err)
		}
		n += int64(len(page))
		if len(page) < 1000 {
			return n, nil
		}
		after = page[len(page)-1].ID
	}
}

// A verdict is a scenario's figures: what the checks counted.
type verdict struct {
	Roots        int   `json:"roots"`          // distinct roots Redis acknowledged
	Expected     int   `json:"expected_pairs"` // (event, organ) pairs the directives demand
	Handled      int   `json:"handled"`        // Handle calls in the ledgers
	Lost         int   `json:"lost"`           // pairs neither handled nor dead-lettered
	Unexpected   int   `json:"unexpected"`     // handlings and dead letters no directive demands
	Duplicated   int   `json:"duplicated"`     // successful handlings beyond the first, and repeated dead letters
	DeadLettered int   `json:"dead_lettered"`  // dead letters of the pairs the directives doom
	DeadWanted   int   `json:"dead_wanted"`    // pairs the directives doom
	Poison       int   `json:"poison_dead"`    // dead letters of poison entries
	PoisonCount  int   `json:"poison_written"` // poison entries written
	PoisonMissed int   `json:"poison_missed"`  // poison entries with no dead letter
	PoisonExtra  int   `json:"poison_extra"`   // dead letters of poison entries beyond the first
	Pending      int64 `json:"pending_left"`   // entries still pending in the group after the drain
	Lag          int64 `json:"lag_left"`       // entries never read
	Delayed      int64 `json:"delayed_left"`   // retries never due

	LostSample       []string `json:"lost_sample,omitempty"`
	UnexpectedSample []string `json:"unexpected_sample,omitempty"`
	PoisonSample     []string `json:"poison_sample,omitempty"`
}

// judge compares the evidence with the expectation. poison holds the stream ids of
// the poison entries the scenario wrote; each must have exactly one dead letter.
func judge(x expectation, ev evidence, poison map[string]bool) verdict {
	v := verdict{Roots: x.roots, Expected: len(x.want), DeadWanted: x.dead, Handled: len(ev.lines),
		Pending: ev.pending, Lag: ev.lag, Delayed: ev.delayed, PoisonCount: len(poison)}
	okCount := make(map[pair]int)
	for _, l := range ev.lines {
		k := pair{l.ID, l.Organ}
		want, known := x.want[k]
		switch {
		case !known:
			v.unexpected(fmt.Sprintf("handled %s by %s (no directive demands it)", l.ID, l.Organ))
		case l.Outcome == chaosapp.OutcomeOK && want == chaosapp.WantDead:
			v.unexpected(fmt.Sprintf("%s by %s succeeded; its directive dooms it", l.ID, l.Organ))
		case l.Outcome == chaosapp.OutcomeOK:
			okCount[k]++
		}
	}
	deadCount := make(map[pair]int)
	poisonDead := make(map[string]int)
	for _, d := range ev.dead {
		if id := originalID(d); poison[id] {
			v.Poison++
			poisonDead[id]++
			continue
		}
		if d.Event.IsZero() {
			v.unexpected(fmt.Sprintf("dead letter %s holds no event (%s: %s)", d.ID, d.Reason, d.Error))
			continue
		}
		k := pair{d.Event.ID(), d.Organ}
		switch want, known := x.want[k]; {
		case !known:
			v.unexpected(fmt.Sprintf("dead letter of %s by %q (%s: %s), not demanded", k.id, k.organ, d.Reason, d.Error))
		case want != chaosapp.WantDead:
			v.unexpected(fmt.Sprintf("dead letter of %s by %q (%s: %s), which should succeed", k.id, k.organ, d.Reason, d.Error))
		default:
			deadCount[k]++
		}
	}
	for k, want := range x.want {
		n := okCount[k]
		if want == chaosapp.WantDead {
			n = deadCount[k]
		}
		switch {
		case n == 0:
			v.Lost++
			if len(v.LostSample) < 5 {
				v.LostSample = append(v.LostSample, fmt.Sprintf("%s by %q (want %s)", k.id, k.organ, want))
			}
		case n > 1:
			v.Duplicated += n - 1
		}
		if want == chaosapp.WantDead && n > 0 {
			v.DeadLettered++
		}
	}
	for id := range poison {
		switch n := poisonDead[id]; {
		case n == 0:
			v.PoisonMissed++
			v.poisonSample(fmt.Sprintf("poison entry %s has no dead letter", id))
		case n > 1:
			v.PoisonExtra += n - 1
			v.poisonSample(fmt.Sprintf("poison entry %s has %d dead letters", id, n))
		}
	}
	slices.Sort(v.LostSample)
	slices.Sort(v.PoisonSample)
	return v
}

// originalID returns the stream id of the entry d is the dead letter of.
func originalID(d necroredis.DeadLetterEntry) string {
	if id := d.Fields["original_id"]; id != "" {
		return id
	}
	id, _, _ := strings.Cut(d.Receipt, "#") // a receipt is <entry id>#<deliveries>
	return id
}

func (v *verdict) poisonSample(what string) {
	if len(v.PoisonSample) < 5 {
		v.PoisonSample = append(v.PoisonSample, what)
	}
}

func (v *verdict) unexpected(what string) {
	v.Unexpected++
	if len(v.UnexpectedSample) < 5 {
		v.UnexpectedSample = append(v.UnexpectedSample, what)
	}
}

// complete reports whether the run has nothing left to do: every pair settled, every
// poison entry dead-lettered and the group empty.
func (v verdict) complete() bool {
	return v.Lost == 0 && v.PoisonMissed == 0 && v.Pending == 0 && v.Lag == 0 && v.Delayed == 0
}

// problems lists the checks v fails; lossAllowed leaves lost and missing dead letters to
// the figures (a scenario that may lose acknowledged writes by its setup).
func (v verdict) problems(lossAllowed bool) []string {
	var out []string
	if v.Lost > 0 && !lossAllowed {
		out = append(out, fmt.Sprintf("lost %d (e.g. %s)", v.Lost, strings.Join(v.LostSample, "; ")))
	}
	if v.Unexpected > 0 {
		out = append(out, fmt.Sprintf("unexpected %d (e.g. %s)", v.Unexpected, strings.Join(v.UnexpectedSample, "; ")))
	}
	if v.DeadLettered != v.DeadWanted && !lossAllowed {
		out = append(out, fmt.Sprintf("dead-lettered %d, the directives demand %d", v.DeadLettered, v.DeadWanted))
	}
	if v.PoisonMissed > 0 && !lossAllowed || v.PoisonExtra > 0 {
		out = append(out, fmt.Sprintf("poison entries: %d written, %d with no dead letter, %d dead letters too many (e.g. %s)",
			v.PoisonCount, v.PoisonMissed, v.PoisonExtra, strings.Join(v.PoisonSample, "; ")))
	}
	if v.Pending != 0 || v.Lag != 0 || v.Delayed != 0 {
		out = append(out, fmt.Sprintf("left in Redis: %d pending, %d unread, %d delayed retries", v.Pending, v.Lag, v.Delayed))
	}
	return out
}

// stopProblems judges how the workers ended when the drain stopped them: each must have
// been running, and must have exited 0 at the SIGTERM. A worker that was down then, or
// died of a signal the harness did not send, is told apart from one that drained badly.
func stopProblems(exits []exitRecord) []string {
	var out []string
	for _, e := range exits {
		switch {
		case e.Down:
			out = append(out, fmt.Sprintf("worker %s had no process when the drain stopped the workers (%s)", e.Worker, e))
		case e.Signal != "" && !e.ByUs:
			out = append(out, fmt.Sprintf("worker %s died while it drained at SIGTERM, of a signal the harness did not send: %s", e.Worker, e))
		case !e.Term:
			out = append(out, fmt.Sprintf("worker %s ended without the drain's SIGTERM: %s", e.Worker, e))
		case e.Code != 0:
			out = append(out, fmt.Sprintf("worker %s did not drain cleanly at SIGTERM: %s", e.Worker, e))
		}
	}
	return out
}
