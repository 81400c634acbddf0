package redis

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// refreshDivisor sets how often held entries are refreshed: every ClaimAfter/6, those
// idle that long, so an entry goes at most about a third of ClaimAfter without a
// refresh and a pause of the process (GC, a busy machine) has margin before another
// consumer may claim it.
const refreshDivisor = 6

// movePoll is how often the delayed set is checked for retries that other processes
// scheduled; retries this process schedules wake the loop at once.
const movePoll = 250 * time.Millisecond

// adoptPoll is how often a worker on the roster looks for entries other workers handed
// to it (see Backend.adopt): a handoff waits at most about this long.
const adoptPoll = 250 * time.Millisecond

// maintain runs the store's background work until Close: it refreshes the entries this
// consumer holds, moves due retries into the stream, trims acknowledged entries and
// removes idle consumers that hold nothing.
func (b *Backend) maintain() {
	ctx := b.bgCtx
	refreshEvery := max(b.cfg.ClaimAfter/refreshDivisor, time.Millisecond)
	tidyEvery := b.cfg.TrimInterval
	if tidyEvery == Off {
		tidyEvery = time.Second // idle consumers are still removed
	}
	now := time.Now()
	nextRefresh, nextTidy, nextMove := now.Add(refreshEvery), now.Add(tidyEvery), now
	nextBeat, nextAdopt := now.Add(b.cfg.Heartbeat), now.Add(adoptPoll)
	failing := map[string]bool{}
	report := func(what string, err error) {
		if err == nil {
			if failing[what] {
				failing[what] = false
				b.log.InfoContext(ctx, what+" works again")
			}
			return
		}
		b.counts.failures.Add(1)
		if !failing[what] && !b.closed.Load() {
			failing[what] = true
			b.log.WarnContext(ctx, what+" failed; trying again", slog.Any("err", err))
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := nextRefresh
		for _, t := range []time.Time{nextTidy, nextMove, nextBeat, nextAdopt} {
			if t.Before(next) {
				next = t
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-b.closing:
			return
		case <-b.wake:
			nextMove = time.Now()
			continue
		case <-timer.C:
		}
		now = time.Now()
		if !now.Before(nextMove) {
			due, err := b.moveDue(ctx)
			report("moving due retries", err)
			nextMove = now.Add(movePoll)
			if err == nil && !due.IsZero() && due.Before(nextMove) {
				nextMove = due
			}
		}
		if !now.Before(nextRefresh) {
			report("refreshing held entries", b.refresh(ctx))
			nextRefresh = now.Add(refreshEvery)
		}
		if !now.Before(nextTidy) {
			report("trimming the stream", b.tidy(ctx))
			nextTidy = now.Add(tidyEvery)
		}
		// Only a worker on the roster heartbeats, and only it can be handed entries.
		if !now.Before(nextBeat) {
			if b.beating() {
				report("renewing the roster entry", b.heartbeat(ctx))
			}
			nextBeat = now.Add(b.cfg.Heartbeat)
		}
		if !now.Before(nextAdopt) {
			if b.beating() {
				report("adopting handed-over entries", b.adopt(ctx))
			}
			nextAdopt = now.Add(adoptPoll)
		}
	}
}

// moveDue moves the retries that are due into the stream and returns when the next one
// is due (zero when none waits).
func (b *Backend) moveDue(ctx context.Context) (time.Time, error) {
	for {
		raw, err := moveScript.Run(ctx, b.rdb, []string{b.keys[2], b.keys[0]}, time.Now().UnixMilli(), 100).Slice()
		if err != nil {
			return time.Time{}, err
		}
		moved, _ := raw[0].(int64)
		if moved == 100 {
			continue
		}
		next, ok := raw[1].(string)
		if !ok {
			return time.Time{}, nil
		}
		ms, err := strconv.ParseFloat(next, 64)
		if err != nil {
			return time.Time{}, err
		}
		return time.UnixMilli(int64(ms)), nil
	}
}

// refresh resets the idle time of the entries this process holds, so that no other
// consumer claims them while they are handled or wait here.
func (b *Backend) refresh(ctx context.Context) error {
	idle := max(b.cfg.ClaimAfter/refreshDivisor, time.Millisecond)
	b.mu.Lock()
	args := make([]any, 0, 3+len(b.held))
	args = append(args, b.cfg.Group, b.cfg.Consumer, idle.Milliseconds())
	for id := range b.held {
		args = append(args, id)
	}
	b.mu.Unlock()
	if len(args) == 3 {
		return nil
	}
	return refreshScript.Run(ctx, b.rdb, b.keys[:1], args...).Err()
}

// tidy trims acknowledged entries and removes idle consumers that hold nothing.
func (b *Backend) tidy(ctx context.Context) error {
	forget := int64(-1)
	if b.cfg.ForgetConsumersAfter != Off {
		forget = b.cfg.ForgetConsumersAfter.Milliseconds()
	}
	raw, err := tidyScript.Run(ctx, b.rdb, b.keys[:1], b.cfg.Group, b.cfg.Consumer, forget,
		flag(b.cfg.TrimInterval != Off)).Slice()
	if b.noGroup(ctx, err) {
		return nil
	}
	if err != nil {
		return err
	}
	trimmed, _ := raw[0].(int64)
	b.counts.trimmed.Add(trimmed)
	if gone, _ := raw[1].([]any); len(gone) > 0 {
		b.counts.forgot.Add(int64(len(gone)))
		b.log.InfoContext(ctx, "removed idle consumers that held nothing", slog.Any("consumers", gone))
	}
	return nil
}
