package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
)

var (
	_ backend.Backend          = (*Backend)(nil)
	_ backend.DeadLetterReader = (*Backend)(nil)
	_ backend.Describer        = (*Backend)(nil)
	_ backend.Reporter         = (*Backend)(nil)
)

// Backend is the Redis Streams store. Create it with [Open]; all methods are safe for
// concurrent use. Beside [backend.Backend] it implements [backend.DeadLetterReader].
type Backend struct {
	cfg    Config
	rdb    *goredis.Client
	rrd    *goredis.Client // reads new entries, alone, through reply guards (see guard.go)
	bounds readBounds      // the bounds of the read under way, for the guards
	log    *slog.Logger
	keys   []string // stream, dead-letter stream, delayed set
	counts counters
	conn   *connWatch

	closed   atomic.Bool
	closing  chan struct{}
	inflight sync.RWMutex // read-held by calls that use the client; Close waits for them
	bgStop   context.CancelFunc
	bgCtx    context.Context
	bg       sync.WaitGroup
	wake     chan struct{} // tells the maintenance loop that a retry was scheduled
	reading  chan struct{} // held by the Pull that reads from Redis: one at a time
	mean     int           // recent mean size of the entries read; guarded by reading
	failing  failingWork   // background work whose latest attempt failed, for Health
	markers  doneMarkers   // markers of enqueued chunks, to delete

	mu       sync.Mutex
	held     map[string]*holding // the deliveries this process holds, by entry id
	released []*holding          // given back: first in line, front first
	nacked   []*holding          // waiting for their NackDelay, in due order
	cursor   string              // where the next claim scan starts
	claimAt  time.Time           // when the next claim scan is due
	groupOK  atomic.Bool         // the group is known to exist
	// announced is this worker's roster entry (see Announce); "" when it has none.
	announced string
	// seen is the highest entry id this process has read, held or looked at; the
	// entries of a read whose reply did not arrive come after it (see readFailed).
	seen string
	// lost is where the scan for the entries of such a read goes on; "" when none is
	// left to recover.
	lost string
}

// A holding is one entry this process holds: handed out, or waiting to be handed out
// again after a Release or a Nack.
type holding struct {
	id         string
	ev         necro.Event
	size       int // the entry's bytes, as MaxEntryBytes measures them
	deliveries int
	state      holdState
	due        time.Time // when a nacked entry is due
}

type holdState int

const (
	stateOut      holdState = iota // handed out, not settled
	stateSettling                  // a Settle is applying it
	stateReleased                  // given back, first in line
	stateNacked                    // waiting for its NackDelay
)

// Open connects to Redis, checks that the user may run every command the store needs
// on its keys, creates the consumer group when it is missing, checks the server's
// settings (logging a warning about unsafe ones) and returns the store. A connection or
// authentication failure is returned with the URL's passwords masked; a URL that cannot
// work (no host, a port out of range, a database the server does not have) with an
// error matching [ErrInvalidConfig]; missing permissions with one matching
// [ErrNoPermission] that names them all, before anything is created.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opt, err := cfg.options()
	if err != nil {
		return nil, err
	}
	// Retries are ours to decide: a script whose reply was lost must not run twice
	// unnoticed, and a Pull must not lose the entries of a read whose reply was lost.
	opt.MaxRetries = -1
	b := &Backend{
		cfg:     cfg,
		log:     cfg.Logger.With(slog.String("stream", cfg.Stream), slog.String("group", cfg.Group), slog.String("consumer", cfg.Consumer)),
		keys:    []string{cfg.Stream, cfg.DeadLetterStream, cfg.Stream + ":delayed"},
		closing: make(chan struct{}),
		reading: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		held:    make(map[string]*holding),
		cursor:  "0-0",
	}
	b.conn = &connWatch{b: b}
	opt.ConnMaxIdleTime = -1 // a connection found dead in the pool is then always a lost one
	b.rdb = goredis.NewClient(opt)
	b.rdb.AddHook(b.conn)
	b.rrd = goredis.NewClient(b.readOptions(opt))
	b.rrd.AddHook(b.conn)
	closeClients := func() {
		_ = b.rdb.Close() // the error that stopped Open is the one to report
		_ = b.rrd.Close()
	}
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		closeClients()
		return nil, connectError(cfg, opt, err)
	}
	// Before anything is created: a user who may not run every command the store needs
	// gets one error naming them all, rather than a store that fails later, piecemeal.
	if err := b.checkPermissions(ctx, opt.Username); err != nil {
		closeClients()
		return nil, err
	}
	if err := b.ensureGroup(ctx); err != nil {
		closeClients()
		return nil, err
	}
	if err := b.takeBackOwn(ctx); err != nil {
		closeClients()
		return nil, err
	}
	b.checkSettings(ctx)
	b.bgCtx, b.bgStop = context.WithCancel(context.Background())
	b.bg.Go(b.maintain)
	return b, nil
}

// enter starts a call that uses the client: false once the store is closed. A true
// answer must be followed by b.inflight.RUnlock.
func (b *Backend) enter() bool {
	b.inflight.RLock()
	if b.closed.Load() {
		b.inflight.RUnlock()
		return false
	}
	return true
}

// Config returns the configuration in use, defaults filled in.
func (b *Backend) Config() Config { return b.cfg }

// ensureGroup creates the consumer group from id 0, and the stream with it.
func (b *Backend) ensureGroup(ctx context.Context) error {
	err := b.rdb.XGroupCreateMkStream(ctx, b.cfg.Stream, b.cfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redis: create consumer group %q on %q: %w", b.cfg.Group, b.cfg.Stream, err)
	}
	b.groupOK.Store(true)
	return nil
}

// noGroup reports an error that says the group (or the stream) is missing, as after a
// Redis restart that lost its data; the group is then created again.
func (b *Backend) noGroup(ctx context.Context, err error) bool {
	if err == nil || !strings.Contains(err.Error(), "NOGROUP") {
		return false
	}
	b.groupOK.Store(false)
	b.mu.Lock()
	b.seen = "" // a new group starts from id 0
	b.mu.Unlock()
	b.log.WarnContext(ctx, "the consumer group is missing (did Redis lose its data?); creating it again")
	return b.ensureGroup(ctx) == nil
}

// readOptions are the read client's options: the main client's, with one connection
// (reads take turns), RESP2 (what the reply guard follows), and each connection's
// incoming bytes passing a reply guard bound to b.bounds.
func (b *Backend) readOptions(opt *goredis.Options) *goredis.Options {
	r := *opt
	r.Protocol = 2
	r.PoolSize, r.MinIdleConns, r.MaxIdleConns, r.MaxActiveConns = 1, 0, 0, 0
	dial := r.Dialer // the main client's, for rediss:// (tlsdial.go)
	if dial == nil {
		if r.DialTimeout == 0 {
			r.DialTimeout = 5 * time.Second // go-redis's default, which NewDialer reads from r
		}
		dial = goredis.NewDialer(&r)
	}
	r.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		sock := c
		if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
			sock = tc.NetConn() // under TLS
		}
		if tc, ok := sock.(*net.TCPConn); ok {
			// A fixed buffer, not one the kernel grows with use (up to net.ipv4.tcp_rmem's
			// maximum): what Redis has sent of a cut reply when the guard stops reading
			// is what this buffer and Redis's send buffer hold. Failing to set it only
			// leaves the kernel's buffer.
			_ = tc.SetReadBuffer(readSocketBuffer)
		}
		return guard(c, &b.bounds), nil
	}
	return &r
}

// Pull hands out up to max deliveries, of entries of at most MaxPullBytes together:
// first those given back, then nacked ones that are due, then entries claimed from
// stopped consumers, then new entries.
func (b *Backend) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	if max < 1 {
		max = 1
	}
	// Redis calls run to completion; ctx only decides how long to wait. A canceled
	// call would leave a read half done and lose its entries to ClaimAfter.
	rctx := context.WithoutCancel(ctx)
	var netErrs int
	for {
		if !b.enter() {
			return nil, backend.ErrClosed
		}
		now := time.Now()
		out, used := b.takeLocal(max, now)
		// A read needs room for one entry of MaxEntryBytes (any room when Off); without
		// it, it waits for the next Pull.
		if room := b.cfg.MaxPullBytes - used; len(out) < max && room >= b.cfg.MaxEntryBytes && b.startRead(ctx) {
			block := time.Duration(-1)
			if len(out) == 0 && ctx.Err() == nil {
				block = b.blockFor(ctx, now)
			}
			more, err := b.read(rctx, max-len(out), block, room)
			<-b.reading
			out = append(out, more...)
			b.inflight.RUnlock()
			if err != nil {
				netErrs++
				if len(out) == 0 && isNetwork(err) && netErrs < 3 {
					continue // a dead pooled connection; the next try dials a new one
				}
				if len(out) == 0 {
					return nil, fmt.Errorf("redis: pull: %w", err)
				}
			}
		} else {
			b.inflight.RUnlock()
		}
		if len(out) > 0 {
			b.counts.pulled.Add(int64(len(out)))
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// startRead waits for this Pull's turn to read from Redis, while ctx lets it: false
// when ctx ended first. Reads take turns: the guards of the read client bound the read
// under way, and the entries of a read cut short are found from what the reads before
// it saw (see recoverLost). A true answer must be followed by <-b.reading.
func (b *Backend) startRead(ctx context.Context) bool {
	select {
	case b.reading <- struct{}{}:
		return true
	default:
	}
	select {
	case b.reading <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// blockFor is how long the next XREADGROUP may wait: within ctx's deadline, until the
// next nacked entry or claim scan is due, and at most Block.
func (b *Backend) blockFor(ctx context.Context, now time.Time) time.Duration {
	block := b.cfg.Block
	if dl, ok := ctx.Deadline(); ok {
		block = min(block, dl.Sub(now))
	}
	b.mu.Lock()
	if len(b.nacked) > 0 {
		block = min(block, b.nacked[0].due.Sub(now))
	}
	block = min(block, b.claimAt.Sub(now))
	b.mu.Unlock()
	return max(block, time.Millisecond)
}

// takeLocal hands out up to max of the held entries that are waiting, of at most
// MaxPullBytes together: released ones first, then nacked ones that are due. It returns
// them and their bytes.
func (b *Backend) takeLocal(max int, now time.Time) ([]backend.Delivery, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.released) == 0 && (len(b.nacked) == 0 || b.nacked[0].due.After(now)) {
		return nil, 0
	}
	var out []backend.Delivery
	used := 0
	fits := func(h *holding) bool { return len(out) < max && (len(out) == 0 || used+h.size <= b.cfg.MaxPullBytes) }
	for len(b.released) > 0 && fits(b.released[0]) {
		used += b.released[0].size
		out = append(out, b.handOut(b.released[0]))
		b.released[0] = nil
		b.released = b.released[1:]
	}
	for len(b.nacked) > 0 && !b.nacked[0].due.After(now) && fits(b.nacked[0]) {
		used += b.nacked[0].size
		out = append(out, b.handOut(b.nacked[0]))
		b.nacked[0] = nil
		b.nacked = b.nacked[1:]
	}
	return out, used
}

// handOut makes a waiting holding a new delivery. b.mu is held.
func (b *Backend) handOut(h *holding) backend.Delivery {
	h.deliveries++
	h.state = stateOut
	return backend.Delivery{Event: h.ev, Receipt: receipt(h.id, h.deliveries), Deliveries: h.deliveries}
}

// read fetches up to n entries of at most budget bytes together from Redis: claimed ones
// when a scan is due, else those of a read cut short that are still to recover, else
// new ones, waiting up to block (negative: not at all). The caller holds b.reading.
func (b *Backend) read(ctx context.Context, n int, block time.Duration, budget int) ([]backend.Delivery, error) {
	b.mu.Lock()
	claim := !time.Now().Before(b.claimAt)
	lost := b.lost != ""
	b.mu.Unlock()
	if claim {
		msgs, err := b.claim(ctx, n, budget)
		switch {
		case err == nil:
			b.claimWorked(ctx)
		case !isNetwork(err):
			// A failing scan must not stop the reading of new entries.
			b.claimFailed(ctx, err)
			msgs, err = nil, nil
		}
		if err != nil || len(msgs) > 0 {
			ds := b.accept(ctx, msgs)
			if len(ds) > 0 {
				// Entries of this process claimed back (after a refresh came late) are
				// skipped by accept: only the others were recovered.
				b.counts.recovered.Add(int64(len(ds)))
				b.log.InfoContext(ctx, "claimed the pending entries of a stopped consumer", slog.Int("entries", len(ds)))
			}
			return ds, err
		}
	}
	if lost {
		ds, _, err := b.recoverLost(ctx, n, budget)
		return ds, err
	}
	return b.readNew(ctx, n, block, budget)
}

// readNew reads up to n new entries of at most budget bytes together: a plain
// XREADGROUP on the read client, waiting up to block, whose reply passes the reply guard
// of its connection (guard.go). A reply that would bring an entry over MaxEntryBytes or
// pass budget is cut short before that entry's bytes arrive; the read's entries are
// then pending to this consumer but held nowhere, and recoverLost reads them again,
// measured, at once. With MaxEntryBytes Off the guard bounds nothing: every entry comes
// whole, and the read is bounded by count only.
func (b *Backend) readNew(ctx context.Context, n int, block time.Duration, budget int) ([]backend.Delivery, error) {
	if b.cfg.MaxEntryBytes == Off {
		b.bounds.set(0, 0)
	} else {
		b.bounds.set(b.cfg.MaxEntryBytes, budget)
	}
	args := &goredis.XReadGroupArgs{Group: b.cfg.Group, Consumer: b.cfg.Consumer,
		Streams: []string{b.cfg.Stream, ">"}, Count: b.readCount(n, budget), Block: block}
	streams, err := b.rrd.XReadGroup(ctx, args).Result()
	if b.noGroup(ctx, err) {
		streams, err = b.rrd.XReadGroup(ctx, args).Result()
	}
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return b.readFailed(ctx, n, budget, err)
	}
	var msgs []message
	for _, s := range streams {
		for _, m := range s.Messages {
			msgs = append(msgs, message{id: m.ID, values: m.Values, deliveries: 1})
		}
	}
	b.noteSizes(msgs)
	return b.accept(ctx, msgs), nil
}

// readCount is how many new entries a read asks for: n, at most readBatch, and no more
// than three quarters of the budget take at the recent mean entry size, so that
// entries of some size fill reads rather than have them cut short.
func (b *Backend) readCount(n, budget int) int64 {
	count := min(n, readBatch)
	if b.mean > 0 && b.cfg.MaxEntryBytes != Off {
		// The guard counts an entry's id and elements beside its fields: about 256 bytes.
		count = min(count, max(1, budget/4*3/(b.mean+256)))
	}
	return int64(count)
}

// noteSizes folds the sizes of entries just read into the recent mean.
func (b *Backend) noteSizes(msgs []message) {
	if len(msgs) == 0 {
		return
	}
	total := 0
	for _, m := range msgs {
		total += entrySize(m.values)
	}
	mean := total / len(msgs)
	if b.mean > 0 {
		mean = (b.mean + mean) / 2
	}
	b.mean = mean
}

// readFailed follows a read of new entries whose reply did not arrive: cut short by the
// guard, or lost to the network. Redis may have read entries for this consumer all the
// same; they are pending to it, held nowhere, and come after every entry this process
// has seen, so recoverLost finds them from there, without going over the entries held.
// It returns what the first step of that recovery took over, or, when it found nothing,
// err: a cut read of nothing means the reply itself was wrong.
func (b *Backend) readFailed(ctx context.Context, n, budget int, err error) ([]backend.Delivery, error) {
	cut := errors.Is(err, errReadCut) || errors.Is(err, errReplyMalformed)
	if !cut && !isNetwork(err) {
		return nil, err // Redis answered with an error: it read nothing
	}
	b.mu.Lock()
	b.lost = "0-0"
	if b.seen != "" {
		b.lost = "(" + b.seen
	}
	b.mu.Unlock()
	switch {
	case errors.Is(err, errReplyMalformed):
		b.counts.readsCut.Add(1)
		b.log.WarnContext(ctx, "Redis sent a reply the read guard cannot follow; the read was cut short and its entries are read again",
			slog.Any("err", err))
	case cut:
		// An entry over MaxEntryBytes (then logged as it is dead-lettered), or a reply
		// over the budget: expected with large entries.
		b.counts.readsCut.Add(1)
		b.log.DebugContext(ctx, "read of new entries cut short; reading its entries again, measured", slog.Any("err", err))
	}
	ds, found, rerr := b.recoverLost(ctx, n, budget)
	switch {
	case rerr != nil:
		return nil, fmt.Errorf("%w; recovering its entries: %w", err, rerr)
	case found == 0:
		return nil, err
	}
	return ds, nil
}

// recoverLost takes one step of the scan for the entries of a read whose reply did not
// arrive: pendingScript reads each entry pending to this consumer after b.lost alone,
// dead-letters one over MaxEntryBytes in Redis and stops at n entries or budget bytes;
// the next Pull takes the next step, before any new read, so the entries keep their
// order. Their delivery count stays: the delivery the lost read counted is the one
// handed out now. Entries held here already (taken in since, by a claim or an
// adoption) are skipped by accept. It returns the deliveries and how many entries the
// step looked at.
func (b *Backend) recoverLost(ctx context.Context, n, budget int) ([]backend.Delivery, int, error) {
	b.mu.Lock()
	cursor := b.lost
	b.mu.Unlock()
	if b.cfg.MaxEntryBytes == Off {
		// Bounded by count only, as the read was: an entry over budget would otherwise
		// stop the scan for good.
		budget = 1 << 50
	}
	s, err := b.pending(ctx, scanLost, cursor, min(n, readBatch), budget)
	if err != nil {
		return nil, 0, err
	}
	b.lostWhilePending(ctx, s.deleted)
	b.mu.Lock()
	b.lost = s.next
	if s.next == "0-0" || s.next == "" {
		b.lost = ""
	}
	b.mu.Unlock()
	b.noteSizes(s.msgs)
	return b.accept(ctx, s.msgs), len(s.msgs) + len(s.deleted) + s.buried, nil
}

// A message is one stream entry read from Redis.
type message struct {
	id         string
	values     map[string]any
	deliveries int
}

// takeBackOwn re-reads the entries pending to this consumer, left by an earlier process
// with the same consumer name, and holds them first in line, oldest first. They come in
// replies of at most MaxPullBytes; entries over MaxEntryBytes are dead-lettered in Redis.
func (b *Backend) takeBackOwn(ctx context.Context) error {
	cursor := "0-0"
	for {
		s, err := b.pending(ctx, scanOwn, cursor, 1000, b.cfg.MaxPullBytes)
		if err != nil {
			return fmt.Errorf("redis: re-read own pending entries: %w", err)
		}
		b.lostWhilePending(ctx, s.deleted)
		b.holdFirst(b.accept(ctx, s.msgs))
		if len(s.msgs) > 0 {
			b.log.InfoContext(ctx, "took back own pending entries", slog.Int("entries", len(s.msgs)))
		}
		if s.next == "0-0" || s.next == "" {
			return nil
		}
		cursor = s.next
	}
}

// claim scans the group's pending entries one step further and takes over those idle
// longer than ClaimAfter, up to n of at most budget bytes together.
func (b *Backend) claim(ctx context.Context, n, budget int) ([]message, error) {
	b.mu.Lock()
	cursor := b.cursor
	b.mu.Unlock()
	s, err := b.pending(ctx, scanClaim, cursor, n, budget)
	if err != nil {
		return nil, err
	}
	b.lostWhilePending(ctx, s.deleted)
	b.mu.Lock()
	b.cursor = s.next
	if s.next == "0-0" || s.next == "" {
		b.cursor = "0-0"
		b.claimAt = time.Now().Add(b.claimEvery())
	}
	b.mu.Unlock()
	return s.msgs, nil
}

// boundArgs are the ARGV that luaBounds reads: a read of up to n entries of at most
// budget bytes together.
func (b *Backend) boundArgs(n, budget int) []any {
	maxEntry := b.cfg.MaxEntryBytes
	if maxEntry == Off {
		maxEntry = 1 << 50 // beyond any entry; a Lua number holds it exactly
	}
	return []any{b.cfg.Group, b.cfg.Consumer, nowText(), maxEntry, b.cfg.PoisonKeepBytes,
		b.cfg.DeadLetterMaxLen, budget, n}
}

// What a step of pendingScript takes over: the entries of any consumer idle longer
// than ClaimAfter (a claim); this consumer's own, left by an earlier process of the
// same name; or this consumer's own delivered by a read whose reply did not arrive.
const (
	scanClaim = ""
	scanOwn   = "own"
	scanLost  = "lost"
)

// A scanStep is what one step of pendingScript did.
type scanStep struct {
	msgs    []message // entries taken over
	deleted []string  // ids of entries deleted while pending, dead-lettered
	buried  int       // entries over MaxEntryBytes, dead-lettered in Redis
	next    string    // where the next step starts; "0-0" when the scan is done
}

// pending runs one step of pendingScript from cursor, of the given scan.
func (b *Backend) pending(ctx context.Context, scan, cursor string, n, budget int) (scanStep, error) {
	idle := b.cfg.ClaimAfter.Milliseconds()
	if scan != scanClaim {
		idle = 0
	}
	raw, err := b.runBounded(ctx, pendingScript, append(b.boundArgs(n, budget), idle, cursor, scan))
	if err != nil {
		return scanStep{}, err
	}
	if len(raw) != 5 {
		return scanStep{}, fmt.Errorf("redis: pending script answered %s", clipText(fmt.Sprint(raw), textMax))
	}
	next, _ := raw[0].(string)
	msgs, deleted, err := parseClaimed(raw[1], raw[2])
	if err != nil {
		return scanStep{}, err
	}
	trimmed, _ := raw[4].(int64)
	return scanStep{msgs: msgs, deleted: deleted, buried: b.buried(ctx, raw[3], trimmed), next: next}, nil
}

// runBounded runs a script of luaBounds, creating the group again when it is missing.
func (b *Backend) runBounded(ctx context.Context, s *goredis.Script, args []any) ([]any, error) {
	raw, err := s.Run(ctx, b.rdb, b.keys[:2], args...).Slice()
	if b.noGroup(ctx, err) {
		raw, err = s.Run(ctx, b.rdb, b.keys[:2], args...).Slice()
	}
	return raw, err
}

// buried accounts for the entries a script dead-lettered in Redis for being over
// MaxEntryBytes ({{id, size}...}), and the dead letters it dropped to keep
// DeadLetterMaxLen. It returns how many entries were buried.
func (b *Backend) buried(ctx context.Context, list any, trimmed int64) int {
	entries, _ := list.([]any)
	for _, e := range entries {
		t, _ := e.([]any)
		if len(t) != 2 {
			continue
		}
		id, _ := t[0].(string)
		size, _ := t[1].(int64)
		b.mu.Lock()
		b.see(id)
		b.mu.Unlock()
		b.log.ErrorContext(ctx, "oversized entry dead-lettered in Redis", slog.String("entry", id),
			slog.Int64("bytes", size), slog.Int("max_entry_bytes", b.cfg.MaxEntryBytes))
	}
	b.counts.poison.Add(int64(len(entries)))
	b.counts.deadLettered.Add(int64(len(entries)))
	b.droppedDeadLetters(ctx, trimmed)
	return len(entries)
}

// see records that this process read, held or looked at entry id. b.mu is held.
func (b *Backend) see(id string) {
	if b.seen == "" || idLess(b.seen, id) {
		b.seen = id
	}
}

// droppedDeadLetters counts and logs the dead letters dropped to keep DeadLetterMaxLen.
func (b *Backend) droppedDeadLetters(ctx context.Context, n int64) {
	if n <= 0 {
		return
	}
	b.counts.dlqTrimmed.Add(n)
	b.log.WarnContext(ctx, "dead letters dropped, oldest first, to keep DeadLetterMaxLen",
		slog.Int64("dropped", n), slog.Int("dead_letter_max_len", b.cfg.DeadLetterMaxLen))
}

// claimEvery is how often the pending entries are scanned for ones to claim.
func (b *Backend) claimEvery() time.Duration {
	return min(max(b.cfg.ClaimAfter/4, 10*time.Millisecond), 5*time.Second)
}

// lostWhilePending accounts for entries deleted from the stream while pending; the
// script has dead-lettered them with the reason.
func (b *Backend) lostWhilePending(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	b.mu.Lock()
	for _, id := range ids {
		b.see(id)
	}
	b.mu.Unlock()
	b.counts.deletedPending.Add(int64(len(ids)))
	b.counts.deadLettered.Add(int64(len(ids)))
	b.log.ErrorContext(ctx, "entries were deleted from the stream while pending; dead-lettered without their event",
		slog.Any("ids", ids))
}

// accept decodes the messages read and holds the valid ones. Poison entries, and
// entries delivered more than MaxDeliveries times, go to the dead-letter stream at once.
func (b *Backend) accept(ctx context.Context, msgs []message) []backend.Delivery {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]backend.Delivery, 0, len(msgs))
	var poison []poisoned
	hs := make([]holding, len(msgs))
	b.mu.Lock()
	for i, m := range msgs {
		b.see(m.id)
		size := entrySize(m.values)
		var ev necro.Event
		var err error
		if b.cfg.MaxEntryBytes != Off && size > b.cfg.MaxEntryBytes {
			err = fmt.Errorf("the entry holds %d bytes, more than MaxEntryBytes (%d) lets a valid event take", size, b.cfg.MaxEntryBytes)
		} else {
			ev, err = decodeEntry(m.values)
		}
		switch {
		case err != nil:
			// The error may quote the entry's text, which can be as large as the entry.
			why := clipText(err.Error(), textMax)
			poison = append(poison, poisoned{m: m, size: size, reason: "poison entry: " + why, err: why, undecodable: true})
			continue
		case b.cfg.MaxDeliveries > 0 && m.deliveries > b.cfg.MaxDeliveries:
			poison = append(poison, poisoned{m: m, size: size, reason: fmt.Sprintf("delivered %d times without being settled", m.deliveries)})
			continue
		}
		if b.held[m.id] != nil {
			// Held here already, as an entry of ours claimed back after a refresh failed:
			// its delivery goes on; handing it out twice would duplicate the work.
			continue
		}
		h := &hs[i]
		*h = holding{id: m.id, ev: ev, size: size, deliveries: m.deliveries}
		b.held[m.id] = h
		out = append(out, backend.Delivery{Event: ev, Receipt: receipt(m.id, m.deliveries), Deliveries: m.deliveries})
	}
	b.mu.Unlock()
	if len(poison) > 0 {
		b.deadLetterPoison(ctx, poison)
	}
	return out
}

// drop forgets a holding wherever it waits. b.mu is held.
func (b *Backend) drop(h *holding) {
	delete(b.held, h.id)
	remove := func(list []*holding) []*holding {
		for i, x := range list {
			if x == h {
				return append(list[:i], list[i+1:]...)
			}
		}
		return list
	}
	b.released = remove(b.released)
	b.nacked = remove(b.nacked)
}

// A poisoned entry goes to the dead-letter stream without being handed out: it cannot
// be decoded, or it was delivered more than MaxDeliveries times.
type poisoned struct {
	m           message
	size        int // the entry's bytes
	reason      string
	err         string
	undecodable bool
}

// deadLetterPoison moves undecodable entries to the dead-letter stream and acks them,
// atomically. When that fails they stay pending and come back through a claim scan. A
// poison entry's dead letter keeps PoisonKeepBytes of its text and records its size; an
// entry delivered too often is a valid event, kept whole so that it can be replayed.
func (b *Backend) deadLetterPoison(ctx context.Context, ps []poisoned) {
	var a argv
	a.start(b.cfg, 0)
	at := nowText()
	for _, p := range ps {
		raw, _ := p.m.values["event"].(string)
		if _, ok := p.m.values["event"]; !ok {
			raw = "{}"
		}
		meta, _ := p.m.values["meta"].(string)
		d := deadFields{original: p.m.id, event: raw, reason: p.reason, at: at,
			err: p.err, meta: meta, receipt: receipt(p.m.id, p.m.deliveries)}
		what := "entry delivered too often dead-lettered"
		if p.undecodable {
			what = "poison entry dead-lettered"
			d.event, d.meta = prefix(raw, b.cfg.PoisonKeepBytes), prefix(meta, b.cfg.PoisonKeepBytes)
			d.size = strconv.Itoa(p.size)
		}
		a.rawOp(p.m.id, true, d)
		b.log.ErrorContext(ctx, what, slog.String("entry", p.m.id), slog.Int("bytes", p.size), slog.String("reason", p.reason))
	}
	res, err := b.eval(ctx, settleScript, a.args)
	if err == nil {
		err = res.err(b, len(ps))
	}
	if err != nil {
		b.counts.failures.Add(1)
		b.log.ErrorContext(ctx, "dead-lettering poison entries failed; they stay pending and are claimed again later",
			slog.Int("entries", len(ps)), slog.Any("err", err))
		return
	}
	for _, p := range ps {
		if p.undecodable {
			b.counts.poison.Add(1)
		}
	}
	b.counts.deadLettered.Add(int64(len(ps)))
	b.droppedDeadLetters(ctx, res.dlqTrimmed)
}

// Settle ends deliveries in order. Acks and settlements that add children, retries or
// dead letters run as one Lua script per batch; a Nack or Release that adds nothing is
// settled in this process alone: the entry stays pending to this consumer and is handed
// out again from here.
func (b *Backend) Settle(ctx context.Context, batch ...backend.Settlement) error {
	if !b.enter() {
		return backend.ErrClosed
	}
	defer b.inflight.RUnlock()
	applied := 0
	for applied < len(batch) {
		hs, err := b.claimHoldings(batch[applied:])
		if len(hs) == 0 {
			return &backend.SettleError{Applied: applied, Err: err}
		}
		run := batch[applied : applied+len(hs)]
		if run[0].Outcome == backend.Handoff {
			b.unclaim(hs[1:])
			if err := b.handoff(ctx, run[0], hs[0]); err != nil {
				b.unclaim(hs[:1])
				return &backend.SettleError{Applied: applied, Err: err}
			}
			applied++
			continue
		}
		if needsRedis(run[0]) {
			n := 1
			for n < len(run) && needsRedis(run[n]) && n < maxOpsPerScript {
				n++
			}
			b.unclaim(hs[n:])
			done, serr := b.settleRemote(ctx, run[:n], hs[:n])
			b.settledLocal(run[:done], hs[:done])
			b.unclaim(hs[done:n])
			applied += done
			if serr != nil {
				return &backend.SettleError{Applied: applied, Err: serr}
			}
			continue
		}
		b.unclaim(hs[1:])
		b.settledLocal(run[:1], hs[:1])
		applied++
	}
	return nil
}

// handBackIdle is the idle time Close gives entries it hands back: beyond any consumer's
// ClaimAfter, Python's 30s included.
const handBackIdle = 24 * time.Hour

// maxOpsPerScript bounds the settlements one script applies, so that no script holds
// Redis for long.
const maxOpsPerScript = 256

// needsRedis reports whether a settlement changes anything in Redis.
func needsRedis(st backend.Settlement) bool {
	return st.Outcome == backend.Ack || len(st.Children) > 0 || len(st.Retries) > 0 || len(st.DeadLetters) > 0
}

// claimHoldings marks the holdings of the batch's leading settlements as being settled,
// up to the first whose delivery is unknown, and returns them. With none it returns the
// error that describes the first.
func (b *Backend) claimHoldings(batch []backend.Settlement) ([]*holding, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var hs []*holding
	for _, st := range batch {
		id, n, ok := parseReceipt(st.Delivery.Receipt)
		h := b.held[id]
		if !ok || h == nil || h.state != stateOut || h.deliveries != n {
			if len(hs) == 0 {
				return nil, fmt.Errorf("%w: receipt %q (event %s) is not held by this consumer",
					backend.ErrUnknownDelivery, st.Delivery.Receipt, st.Delivery.Event.ID())
			}
			break
		}
		h.state = stateSettling
		hs = append(hs, h)
	}
	return hs, nil
}

// unclaim hands back holdings that were marked but not settled.
func (b *Backend) unclaim(hs []*holding) {
	if len(hs) == 0 {
		return
	}
	b.mu.Lock()
	for _, h := range hs {
		if h.state == stateSettling {
			h.state = stateOut
		}
	}
	b.mu.Unlock()
}

// settledLocal applies the local part of settlements Redis has applied.
func (b *Backend) settledLocal(batch []backend.Settlement, hs []*holding) {
	if len(batch) == 0 {
		return
	}
	var acked, nacked, released int64
	b.mu.Lock()
	for i, st := range batch {
		h := hs[i]
		switch st.Outcome {
		case backend.Ack:
			delete(b.held, h.id)
			acked++
		case backend.Nack:
			if len(st.Targets) > 0 {
				h.ev = h.ev.Retry(h.ev.Attempt(), st.Targets...)
			}
			h.state, h.due = stateNacked, time.Now().Add(b.cfg.NackDelay)
			b.nacked = append(b.nacked, h)
			nacked++
		default:
			h.state = stateReleased
			b.released = append([]*holding{h}, b.released...)
			released++
		}
	}
	b.mu.Unlock()
	b.counts.acked.Add(acked)
	b.counts.nacked.Add(nacked)
	b.counts.released.Add(released)
}

// settleRemote runs the settle script for the batch, retrying while Redis cannot be
// reached, for up to SettleRetryFor. It returns how many settlements were applied.
func (b *Backend) settleRemote(ctx context.Context, batch []backend.Settlement, hs []*holding) (int, error) {
	var a argv
	a.start(b.cfg, 2*b.cfg.Capacity)
	dead := 0
	delayed := false
	for i, st := range batch {
		var due []necro.Event
		var later []backend.Retry
		for _, r := range st.Retries {
			if r.At.IsZero() || !r.At.After(time.Now()) {
				due = append(due, r.Event)
			} else {
				later = append(later, r)
				delayed = true
			}
		}
		a.op(hs[i].id, st.Outcome == backend.Ack, append(st.Children[:len(st.Children):len(st.Children)], due...), later,
			st.DeadLetters, st.Delivery.Receipt)
		dead += len(st.DeadLetters)
	}
	res, err := b.evalRetrying(ctx, a.args)
	if err != nil {
		return 0, err
	}
	if res.applied == len(batch) || (res.resent && res.applied == 0 && res.status == "GONE" && b.appliedBefore(ctx, batch, hs)) {
		// All applied; or a retry found the batch acknowledged already: the attempt
		// whose reply was lost applied the whole batch, atomically.
		b.counts.deadLettered.Add(int64(dead))
		b.droppedDeadLetters(ctx, res.dlqTrimmed)
		if delayed {
			b.nudge()
		}
		return len(batch), nil
	}
	for _, st := range batch[:res.applied] {
		b.counts.deadLettered.Add(int64(len(st.DeadLetters)))
	}
	if res.status == "GONE" || res.status == "STOLEN" {
		// The entry is not ours any more: forget it.
		b.mu.Lock()
		b.drop(hs[res.applied])
		b.mu.Unlock()
	}
	return res.applied, res.err(b, res.applied)
}

// appliedBefore tells, for a settle script sent again after its reply was lost and
// finding its first entry acknowledged, whether the lost attempt applied the batch: then
// the batch's last acked entry is pending nowhere either. If it is still pending, the
// first entry was acknowledged by another consumer that had claimed it, and the rest of
// the batch is still to be applied.
func (b *Backend) appliedBefore(ctx context.Context, batch []backend.Settlement, hs []*holding) bool {
	last := -1
	for i, st := range batch {
		if st.Outcome == backend.Ack {
			last = i
		}
	}
	if last <= 0 {
		return last == 0
	}
	p, err := b.rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: b.cfg.Stream, Group: b.cfg.Group,
		Start: hs[last].id, End: hs[last].id, Count: 1}).Result()
	return err == nil && len(p) == 0
}

// nudge tells the maintenance loop that a retry was scheduled.
func (b *Backend) nudge() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Close stops the store. Deliveries given back (Release, or Nack) and not handed out
// again are made claimable by other consumers at once; deliveries still being handled
// stay pending and are claimed after ClaimAfter. A consumer that holds nothing leaves
// the group.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return backend.ErrClosed
	}
	close(b.closing)
	b.bgStop()
	b.bg.Wait()
	// The write lock is a barrier: it is granted once the calls under way (each holding a
	// read lock from enter) have returned; later calls see closed and do not start.
	b.inflight.Lock()
	b.inflight.Unlock() //lint:ignore SA2001 an empty critical section is the barrier described above
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.mu.Lock()
	held := len(b.held)
	lost := b.lost
	args := []any{b.cfg.Group, b.cfg.Consumer, handBackIdle.Milliseconds()}
	for _, list := range [][]*holding{b.released, b.nacked} {
		for _, h := range list {
			args = append(args, h.id)
		}
	}
	b.mu.Unlock()
	if len(args) > 3 {
		// Deliveries given back and never handled: let another consumer claim them at its
		// next scan rather than after ClaimAfter.
		n, err := handBackScript.Run(ctx, b.rdb, b.keys[:1], args...).Int()
		if err != nil {
			b.log.WarnContext(ctx, "handing back unhandled deliveries failed; they are claimed after ClaimAfter",
				slog.Int("deliveries", len(args)-3), slog.Any("err", err))
		} else {
			b.log.InfoContext(ctx, "handed back unhandled deliveries to the group", slog.Int("deliveries", n))
		}
	}
	if lost != "" {
		b.log.InfoContext(ctx, "closing with entries of a cut-short read not yet read again; they stay pending and are claimed after ClaimAfter",
			slog.String("after", strings.TrimPrefix(lost, "(")))
	}
	if held > len(args)-3 {
		b.log.InfoContext(ctx, "closing with deliveries in progress; they stay pending and are claimed after ClaimAfter",
			slog.Int("deliveries", held-(len(args)-3)))
	}
	if err := b.withdraw(ctx); err != nil {
		b.log.WarnContext(ctx, "leaving the roster failed; the others see this worker gone after MemberTimeout", slog.Any("err", err))
	}
	if held == 0 {
		if left, err := leaveScript.Run(ctx, b.rdb, b.keys[:1], b.cfg.Group, b.cfg.Consumer).Int(); err == nil && left == 1 {
			b.log.DebugContext(ctx, "left the consumer group")
		}
	}
	if err := b.forgetMarkers(ctx); err != nil {
		b.log.DebugContext(ctx, "deleting enqueue markers failed; they expire on their own", slog.Any("err", err))
	}
	return errors.Join(b.rdb.Close(), b.rrd.Close())
}

// DeadLetters lists up to max dead letters (all when max ≤ 0), oldest first. An entry
// whose event cannot be decoded, as a poison entry's, is listed with a zero Event and
// its stored text in Error.
func (b *Backend) DeadLetters(ctx context.Context, max int) ([]backend.DeadLetter, error) {
	if !b.enter() {
		return nil, backend.ErrClosed
	}
	defer b.inflight.RUnlock()
	var msgs []goredis.XMessage
	var err error
	if max > 0 {
		msgs, err = b.rdb.XRangeN(ctx, b.cfg.DeadLetterStream, "-", "+", int64(max)).Result()
	} else {
		msgs, err = b.rdb.XRange(ctx, b.cfg.DeadLetterStream, "-", "+").Result()
	}
	if err != nil {
		return nil, fmt.Errorf("redis: read dead letters: %w", err)
	}
	out := make([]backend.DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decodeDeadLetter(m.Values))
	}
	return out, nil
}

// receipt is a delivery's receipt: the entry id and the delivery's number, so that a
// redelivery of the same entry never reuses a receipt.
func receipt(id string, deliveries int) string {
	return id + "#" + strconv.Itoa(deliveries)
}

// parseReceipt splits a receipt made by receipt.
func parseReceipt(r string) (id string, deliveries int, ok bool) {
	id, n, found := strings.Cut(r, "#")
	if !found {
		return "", 0, false
	}
	deliveries, err := strconv.Atoi(n)
	return id, deliveries, err == nil && deliveries > 0
}

// entryID returns the stream entry id of a receipt, or the text itself when it is not
// a receipt of this store.
func entryID(r string) string {
	if id, _, ok := parseReceipt(r); ok {
		return id
	}
	return r
}

// idLess orders stream entry ids ("ms-seq"); "0" is the lowest.
func idLess(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am < bm || am == bm && as < bs
}

func splitID(id string) (ms, seq uint64) {
	m, q, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(q, 10, 64)
	return ms, seq
}

func nowText() string { return time.Now().UTC().Format(necro.TimestampLayout) }

// readSocketBuffer is the receive buffer of the read client's connections: ample for
// replies of MaxPullBytes at local network latencies, small against an oversized entry.
const readSocketBuffer = 1 << 20

// readBatch caps the entries one read examines: smaller reads reach the handlers sooner, and keep the
// Spine's pipeline flowing rather than moving in bursts.
const readBatch = 512
