package redis

import (
	"context"
	"fmt"
	"log/slog"
	"math"
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
	tidyEvery := b.cfg.TrimInterval
	if tidyEvery == Off {
		tidyEvery = time.Second // idle consumers are still removed
	}
	now := time.Now()
	// The order is the order in which chores due together run. Moving due retries comes
	// first and may be due sooner than its poll (see moveDue); a worker on the roster
	// heartbeats and adopts handed-over entries, and only it.
	move := &chore{what: "moving due retries", every: movePoll, next: now, do: b.moveDue}
	chores := []*chore{
		move,
		{what: "refreshing held entries", every: max(b.cfg.ClaimAfter/refreshDivisor, time.Millisecond), do: justErr(b.refresh)},
		{what: "trimming the stream", every: tidyEvery, do: justErr(b.tidy)},
		{what: "renewing the roster entry", every: b.cfg.Heartbeat, do: onRoster(b, b.heartbeat)},
		{what: "adopting handed-over entries", every: adoptPoll, do: onRoster(b, b.adopt)},
	}
	for _, c := range chores[1:] {
		c.next = now.Add(c.every)
	}
	reports := choreReports{b: b, failing: map[string]bool{}}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := chores[0].next
		for _, c := range chores[1:] {
			if c.next.Before(next) {
				next = c.next
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-b.closing:
			return
		case <-b.wake:
			move.next = time.Now()
			continue
		case <-timer.C:
		}
		now = time.Now()
		for _, c := range chores {
			if !now.Before(c.next) {
				c.run(ctx, now, reports.report)
			}
		}
	}
}

// A chore is one kind of background work of the maintenance loop, done every so often.
type chore struct {
	what  string // for logs and Health: "moving due retries"
	every time.Duration
	next  time.Time
	// do does the work once; it may return a time before the next poll at which it is
	// due again (zero: none).
	do func(context.Context) (time.Time, error)
}

// run does the chore and sets when it is due again.
func (c *chore) run(ctx context.Context, now time.Time, report func(ctx context.Context, what string, err error)) {
	due, err := c.do(ctx)
	report(ctx, c.what, err)
	c.next = now.Add(c.every)
	if err == nil && !due.IsZero() && due.Before(c.next) {
		c.next = due
	}
}

// justErr makes a chore of work that has no due time of its own.
func justErr(f func(context.Context) error) func(context.Context) (time.Time, error) {
	return func(ctx context.Context) (time.Time, error) { return time.Time{}, f(ctx) }
}

// onRoster makes a chore of work that only a worker on the roster does.
func onRoster(b *Backend, f func(context.Context) error) func(context.Context) (time.Time, error) {
	return func(ctx context.Context) (time.Time, error) {
		if !b.beating() {
			return time.Time{}, nil
		}
		return time.Time{}, f(ctx)
	}
}

// choreReports logs the first failure of each chore and its recovery, counts every
// failure, and tells Health which chores are failing.
type choreReports struct {
	b       *Backend
	failing map[string]bool
}

func (r choreReports) report(ctx context.Context, what string, err error) {
	b := r.b
	if err == nil {
		if r.failing[what] {
			r.failing[what] = false
			b.failing.ok(what)
			b.log.InfoContext(ctx, what+" works again")
		}
		return
	}
	b.counts.failures.Add(1)
	if b.closed.Load() {
		return // Close cut the call short: nothing to report
	}
	b.failing.failed(what, err)
	if !r.failing[what] {
		r.failing[what] = true
		b.log.WarnContext(ctx, what+" failed; trying again", slog.Any("err", err))
	}
}

// malformedExcerpt bounds how much of a malformed member of the delayed set its dead
// letter keeps: enough to recognise it, never a copy of something arbitrarily large.
const malformedExcerpt = 1024

// moveBatch is how many due retries one move script takes at most.
const moveBatch = 100

// moveDue moves the retries that are due into the stream and returns when the next one
// is due (zero when none waits, or none will ever be due). Malformed members are
// dead-lettered by the script; here they are counted and logged.
func (b *Backend) moveDue(ctx context.Context) (time.Time, error) {
	for {
		raw, err := moveScript.Run(ctx, b.rdb, []string{b.keys[2], b.keys[0], b.keys[1]},
			time.Now().UnixMilli(), moveBatch, nowText(), b.cfg.DeadLetterMaxLen, malformedExcerpt).Slice()
		if err != nil {
			return time.Time{}, err
		}
		if len(raw) != 4 {
			return time.Time{}, fmt.Errorf("redis: move script answered %v", raw)
		}
		if bad, _ := raw[2].([]any); len(bad) > 0 {
			b.counts.poison.Add(int64(len(bad)))
			b.counts.deadLettered.Add(int64(len(bad)))
			for _, reason := range bad {
				b.log.ErrorContext(ctx, "malformed member of the delayed set dead-lettered", slog.Any("reason", reason))
			}
		}
		if trimmed, _ := raw[3].(int64); trimmed > 0 {
			b.counts.dlqTrimmed.Add(trimmed)
			b.log.WarnContext(ctx, "dead letters dropped to keep DeadLetterMaxLen", slog.Int64("dropped", trimmed))
		}
		if moved, _ := raw[0].(int64); moved == moveBatch {
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
		// A score beyond any real time (+inf written by hand, say) is never due: the
		// usual poll checks the set again, rather than a wake-up at a time that int64
		// cannot hold, which would come at once, again and again.
		if math.IsInf(ms, 0) || math.Abs(ms) > maxScoreMillis {
			return time.Time{}, nil
		}
		return time.UnixMilli(int64(ms)), nil
	}
}

// maxScoreMillis is the largest delayed-set score taken as a time: the year 2262, where
// int64 nanoseconds since 1970 end.
const maxScoreMillis = float64(math.MaxInt64 / int64(time.Millisecond))

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
