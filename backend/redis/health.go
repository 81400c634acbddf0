package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro/backend"
)

// Metrics counts what the store has done since Open.
type Metrics struct {
	Enqueued         int64 // events added by Enqueue
	Pulled           int64 // deliveries handed out
	Acked            int64 // deliveries acknowledged
	Nacked           int64 // deliveries nacked (handed out again after NackDelay)
	Released         int64 // deliveries given back unhandled
	DeadLettered     int64 // dead-letter entries written, poison and deleted entries included
	Poison           int64 // entries, and members of the delayed set, that could not be decoded or were over MaxEntryBytes, dead-lettered at once
	PendingRecovered int64 // entries claimed from consumers that stopped
	ReadsCut         int64 // reads of new entries cut short at an entry over MaxEntryBytes or at the Pull's budget; their entries were read again, measured
	DeletedPending   int64 // entries deleted from the stream while pending, dead-lettered
	Trimmed          int64 // acknowledged entries trimmed from the stream
	DeadLettersTrim  int64 // dead letters dropped to keep DeadLetterMaxLen, each logged
	Reconnections    int64 // connections made again after one was lost
	SettleRetries    int64 // settle scripts sent again after Redis could not be reached
	EnqueueRetries   int64 // enqueue chunks sent again after Redis could not be reached
	ForgotConsumers  int64 // idle consumers without pending entries removed from the group
	HandedOff        int64 // deliveries passed, unhandled, to a worker that routes them
	Adopted          int64 // entries other workers handed to this one, taken in
	// Failures counts background work that failed and is tried again later: refreshing
	// held entries, trimming, moving due retries, dead-lettering poison entries,
	// claiming the entries of stopped consumers. Each first failure of a kind is logged;
	// failed Pulls and Settles go to the caller.
	Failures int64
}

type counters struct {
	enqueued, pulled, acked, nacked, released, deadLettered, poison, recovered,
	deletedPending, trimmed, dlqTrimmed, reconnections, settleRetries, enqueueRetries, forgot, failures,
	handedOff, adopted, readsCut atomic.Int64
}

// Metrics returns the counters.
func (b *Backend) Metrics() Metrics {
	c := &b.counts
	return Metrics{
		Enqueued: c.enqueued.Load(), Pulled: c.pulled.Load(), Acked: c.acked.Load(), Nacked: c.nacked.Load(),
		Released: c.released.Load(), DeadLettered: c.deadLettered.Load(), Poison: c.poison.Load(),
		PendingRecovered: c.recovered.Load(), DeletedPending: c.deletedPending.Load(), Trimmed: c.trimmed.Load(),
		DeadLettersTrim: c.dlqTrimmed.Load(), Reconnections: c.reconnections.Load(),
		SettleRetries: c.settleRetries.Load(), EnqueueRetries: c.enqueueRetries.Load(), ForgotConsumers: c.forgot.Load(),
		Failures: c.failures.Load(), HandedOff: c.handedOff.Load(), Adopted: c.adopted.Load(), ReadsCut: c.readsCut.Load(),
	}
}

// Health is what [Backend.Health] finds.
type Health struct {
	Healthy      bool
	Latency      time.Duration // of a PING
	StreamLength int64         // entries in the stream, acknowledged ones not yet trimmed included
	Pending      int64         // entries the group has handed out and not acknowledged
	Lag          int64         // entries the group has not read yet; -1 when Redis cannot tell
	DeadLetters  int64         // entries in the dead-letter stream
	Delayed      int64         // retries waiting to be due
	Held         int           // deliveries this process holds
	Group        string
	Consumer     string
	// Err says why it is not healthy: Redis does not answer, or background work (moving
	// due retries, refreshing held entries, trimming, claiming the entries of stopped
	// consumers) failed at its latest attempt.
	Err error

	groupFound bool // the stream exists and has the group
	levels     bool // Redis answered: the levels above were read
}

// Health asks Redis how the stream and the group are doing. A stream that does not
// exist yet is healthy and empty. While background work fails (its latest attempt did:
// moving due retries, refreshing held entries, trimming, claiming the entries of
// stopped consumers), the store is not healthy and Err names what fails, since when and
// why; the levels are still filled in.
func (b *Backend) Health(ctx context.Context) Health {
	h := Health{Group: b.cfg.Group, Consumer: b.cfg.Consumer, Lag: -1}
	b.mu.Lock()
	h.Held = len(b.held)
	b.mu.Unlock()
	if b.closed.Load() {
		h.Err = errors.New("redis: the store is closed")
		return h
	}
	start := time.Now()
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		h.Err = fmt.Errorf("redis: ping: %w", scrub(err, b.cfg.URL))
		return h
	}
	h.Latency = max(time.Since(start), time.Nanosecond)
	pipe := b.rdb.Pipeline()
	streamLen := pipe.XLen(ctx, b.cfg.Stream)
	groups := pipe.XInfoGroups(ctx, b.cfg.Stream)
	dead := pipe.XLen(ctx, b.cfg.DeadLetterStream)
	delayed := pipe.ZCard(ctx, b.keys[2])
	_, _ = pipe.Exec(ctx)
	for _, c := range []goredis.Cmder{streamLen, dead, delayed} {
		if err := c.Err(); err != nil {
			h.Err = fmt.Errorf("redis: %s: %w", c.Name(), err)
			return h
		}
	}
	h.StreamLength, h.DeadLetters, h.Delayed = streamLen.Val(), dead.Val(), delayed.Val()
	gs, err := groups.Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		h.Err = fmt.Errorf("redis: XINFO GROUPS: %w", err)
		return h
	}
	for _, g := range gs {
		if g.Name == b.cfg.Group {
			h.Pending, h.Lag, h.groupFound = g.Pending, g.Lag, true
		}
	}
	h.levels = true
	if err := b.failing.err(); err != nil {
		h.Err = scrub(err, b.cfg.URL)
		return h
	}
	h.Healthy = true
	return h
}

// failingWork is the background work whose latest attempt failed, by what it is
// ("moving due retries"), so that Health reports it: a mover that keeps failing holds up
// every retry while Redis itself answers. Its methods are safe for concurrent use.
type failingWork struct {
	mu   sync.Mutex
	work map[string]*failure // guarded by mu
}

type failure struct {
	err   error
	since time.Time
	times int // failed attempts in a row
}

// failed records a failed attempt of what; true when what was not failing before.
func (f *failingWork) failed(what string, err error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.work == nil {
		f.work = make(map[string]*failure)
	}
	x := f.work[what]
	if x == nil {
		x = &failure{since: time.Now()}
		f.work[what] = x
	}
	x.err = err
	x.times++
	return x.times == 1
}

// ok records an attempt of what that worked; true when what was failing before.
func (f *failingWork) ok(what string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, was := f.work[what]
	delete(f.work, what)
	return was
}

// err names each failing piece of work with its latest error, or is nil.
func (f *failingWork) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.work) == 0 {
		return nil
	}
	parts := make([]string, 0, len(f.work))
	for what, x := range f.work {
		parts = append(parts, fmt.Sprintf("%s failed %d times in a row since %s: %v",
			what, x.times, x.since.UTC().Format(time.RFC3339), x.err))
	}
	slices.Sort(parts)
	return errors.New("redis: " + strings.Join(parts, "; "))
}

// Ready reports whether the store can take work: Redis answers, the consumer group
// exists and no background work is failing (see [Backend.Health]). It has the shape of
// a telemetry.Check, for a /readyz endpoint; its errors never hold the password.
func (b *Backend) Ready(ctx context.Context) error {
	h := b.Health(ctx)
	if !h.Healthy {
		return h.Err
	}
	if !h.groupFound {
		return fmt.Errorf("redis: consumer group %q of stream %q does not exist", b.cfg.Group, b.cfg.Stream)
	}
	return nil
}

// claiming is what Health calls the scans for the entries of stopped consumers.
const claiming = "claiming the entries of stopped consumers"

// claimFailed records a failed claim scan: counted, logged when scans start failing,
// reported by Health and Ready until one works, and tried again at the next scan, not
// at every read. Redis's refusal inside the claim script names no command, so a
// permission error is replaced by the permission check's answer, which names them.
func (b *Backend) claimFailed(ctx context.Context, err error) {
	b.counts.failures.Add(1)
	if isPermission(err) {
		if perr := b.checkPermissions(ctx, b.rdb.Options().Username); errors.Is(perr, ErrNoPermission) {
			err = perr
		}
	}
	err = fmt.Errorf("claim scan: %w", err)
	b.mu.Lock()
	b.claimAt = time.Now().Add(b.claimEvery())
	b.mu.Unlock()
	if b.failing.failed(claiming, err) {
		b.log.WarnContext(ctx, claiming+" failed; new entries are still read", slog.Any("err", err))
	}
}

// claimWorked records a claim scan that worked.
func (b *Backend) claimWorked(ctx context.Context) {
	if b.failing.ok(claiming) {
		b.log.InfoContext(ctx, claiming+" works again")
	}
}

// Describe names the store for telemetry: system "redis", the stream and the group.
func (b *Backend) Describe() backend.Description {
	return backend.Description{System: "redis", Name: b.cfg.Stream, Group: b.cfg.Group}
}

// Report asks Redis for the levels metrics show (see [Backend.Health]): the group's lag
// and the retries not yet due as the queue depth, the group's pending entries and the
// dead-letter stream's length. When Redis cannot answer the levels are -1; the
// reconnections are always known.
func (b *Backend) Report(ctx context.Context) backend.Report {
	rep := backend.Report{QueueDepth: -1, Pending: -1, DeadLetters: -1, Reconnections: b.counts.reconnections.Load()}
	h := b.Health(ctx)
	if !h.levels {
		return rep
	}
	if h.Lag >= 0 {
		rep.QueueDepth = h.Lag + h.Delayed
	}
	rep.Pending, rep.DeadLetters = h.Pending, h.DeadLetters
	return rep
}

// checkSettings warns about Redis settings that lose events: eviction and no
// persistence.
func (b *Backend) checkSettings(ctx context.Context) {
	vals, err := b.rdb.ConfigGet(ctx, "*").Result()
	if err != nil {
		b.log.WarnContext(ctx, "cannot read the Redis settings (CONFIG GET refused); make sure maxmemory-policy is noeviction and appendonly is yes",
			slog.Any("err", err))
		return
	}
	if p := vals["maxmemory-policy"]; p != "" && p != "noeviction" {
		b.log.WarnContext(ctx, "unsafe Redis setting: maxmemory-policy evicts keys, which can delete the stream and lose events; use noeviction",
			slog.String("maxmemory-policy", p))
	}
	if vals["appendonly"] == "no" {
		b.log.WarnContext(ctx, "unsafe Redis setting: appendonly is no, so a Redis restart loses the events written since the last snapshot; use appendonly yes",
			slog.String("appendonly", "no"))
	} else if f := vals["appendfsync"]; f == "no" {
		b.log.WarnContext(ctx, "unsafe Redis setting: appendfsync no leaves durability to the OS; use always or everysec",
			slog.String("appendfsync", f))
	}
}

// connWatch counts reconnections: a connection dialed after one was lost, or after a
// dial failed.
type connWatch struct {
	b     *Backend
	lost  atomic.Bool
	stale atomic.Uint32 // the pool's count of dead connections it threw away, at the last dial
}

func (w *connWatch) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			if !w.lost.Swap(true) {
				w.b.log.WarnContext(ctx, "cannot reach Redis", slog.Any("err", scrub(err, w.b.cfg.URL)))
			}
			return nil, err
		}
		// The pool quietly replaces a connection it finds dead when taking it; no command
		// sees an error then, but the pool counts it stale.
		stale := w.b.rdb.PoolStats().StaleConns
		grew := stale > w.stale.Swap(stale)
		if w.lost.Swap(false) || grew {
			w.b.counts.reconnections.Add(1)
			w.b.log.InfoContext(ctx, "reconnected to Redis")
		}
		return c, nil
	}
}

func (w *connWatch) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		w.saw(err)
		return err
	}
}

func (w *connWatch) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		w.saw(err)
		return err
	}
}

// saw marks the connection lost after a network error.
func (w *connWatch) saw(err error) {
	if isNetwork(err) && !w.b.closed.Load() {
		w.lost.Store(true)
	}
}
