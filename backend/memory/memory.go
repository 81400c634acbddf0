package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
)

// Unbounded turns off a bound that is otherwise on by default.
const Unbounded = -1

const (
	defaultCapacity           = 100_000
	defaultDeadLetterCapacity = 10_000
	defaultNackDelay          = time.Second
)

// ErrInvalidConfig reports a [Config] that [New] cannot use; the wrapping error names
// the field.
var ErrInvalidConfig = errors.New("memory: invalid config")

// Config tunes a [Backend]. The zero value is ready to use; each field states its default.
type Config struct {
	// Capacity bounds the events waiting in the store: those ready to be pulled plus the
	// retries and nacked events scheduled for later. Enqueue refuses what does not fit
	// with [backend.ErrQueueFull], at once. Follow-ups, the children and retries that
	// Settle adds, may use a reserve of as much again, so that a queue producers have
	// filled still takes the follow-ups of the events in flight; beyond twice Capacity
	// Settle refuses them too. Events handed out and not yet settled do not count, and a
	// settlement that adds nothing (a Release, a Nack, an Ack without children or
	// retries) never fails for lack of room: its event was admitted once already, so
	// give-backs may take the store past twice Capacity by what was in flight.
	// Zero means 100,000; [Unbounded] turns the bound off.
	Capacity int
	// DeadLetterCapacity bounds the dead letters kept. Beyond it the oldest is dropped
	// and counted by [Backend.Dropped]. Zero means 10,000; [Unbounded] keeps them all.
	DeadLetterCapacity int
	// NackDelay is how long a nacked event waits before it is handed out again.
	// Zero means 1s.
	NackDelay time.Duration
	// Logger receives an Error line for every dead letter dropped; nil discards them.
	Logger *slog.Logger
}

// An entry is an event waiting in the store, with how often it has been handed out.
type entry struct {
	ev         necro.Event
	deliveries int
}

// A slot holds one delivery that is handed out and not yet settled.
type slot struct {
	seq uint64 // the delivery's sequence number; 0 marks a free slot
	ent entry
}

// Backend is the bounded in-memory store: a FIFO queue, a schedule of events due later,
// and a ring of dead letters. It is the embedded default, for one process; nothing
// survives Close or a crash. Create it with [New]. All methods are safe for concurrent use.
//
// Beside [backend.Backend] it implements [backend.Idler] and [backend.DeadLetterReader].
type Backend struct {
	capacity  int // Unbounded or > 0
	dlCap     int // Unbounded or > 0
	log       *slog.Logger
	nackDelay time.Duration

	// mu guards everything below. One lock covers the room check and the insert, so
	// concurrent producers can never overfill the queue.
	mu      sync.Mutex
	closed  bool
	ready   ring[entry]
	sched   schedule
	order   uint64        // insertion counter for sched
	slots   []slot        // deliveries handed out, indexed by the slot in their receipt
	free    []uint32      // indexes of free slots
	seq     uint64        // last delivery sequence number handed out
	wake    chan struct{} // closed to wake waiting Pulls; nil when nobody waits
	dead    ring[backend.DeadLetter]
	dropped int
	errFull error // the ErrQueueFull answer, built once so a refusal costs nothing
	scratch []byte
	ends    []int
}

var (
	_ backend.Backend          = (*Backend)(nil)
	_ backend.Idler            = (*Backend)(nil)
	_ backend.DeadLetterReader = (*Backend)(nil)
	_ backend.Describer        = (*Backend)(nil)
	_ backend.Reporter         = (*Backend)(nil)
)

// New returns an empty store tuned by cfg. The error wraps [ErrInvalidConfig] when a
// field is out of range. New starts no goroutines.
func New(cfg Config) (*Backend, error) {
	b := &Backend{capacity: cfg.Capacity, dlCap: cfg.DeadLetterCapacity, nackDelay: cfg.NackDelay, log: cfg.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case b.capacity == 0:
		b.capacity = defaultCapacity
	case b.capacity < Unbounded:
		return nil, fmt.Errorf("%w: Capacity %d (want positive, zero for the default, or Unbounded)", ErrInvalidConfig, cfg.Capacity)
	}
	switch {
	case b.dlCap == 0:
		b.dlCap = defaultDeadLetterCapacity
	case b.dlCap < Unbounded:
		return nil, fmt.Errorf("%w: DeadLetterCapacity %d (want positive, zero for the default, or Unbounded)", ErrInvalidConfig, cfg.DeadLetterCapacity)
	}
	switch {
	case b.nackDelay == 0:
		b.nackDelay = defaultNackDelay
	case b.nackDelay < 0:
		return nil, fmt.Errorf("%w: NackDelay %v must not be negative", ErrInvalidConfig, cfg.NackDelay)
	}
	b.errFull = fmt.Errorf("%w (capacity %d)", backend.ErrQueueFull, b.capacity)
	return b, nil
}

// Enqueue appends the events at the tail of the queue, in order, all or none. When the
// store lacks room for all of them it returns an error matching [backend.ErrQueueFull]
// at once, naming the capacity; it never blocks, so ctx is not consulted. A zero Event
// is refused with [necro.ErrInvalidEvent]. After Close it returns [backend.ErrClosed].
func (b *Backend) Enqueue(_ context.Context, events ...necro.Event) error {
	for i, ev := range events {
		if ev.IsZero() {
			return fmt.Errorf("memory: enqueue event %d: zero Event: %w", i, necro.ErrInvalidEvent)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	if !b.hasRoom(len(events)) {
		return b.errFull
	}
	// Retries that came due go first: they were waiting before these events arrived.
	b.promote()
	for _, ev := range events {
		b.ready.pushBack(entry{ev: ev})
	}
	if len(events) > 0 {
		b.signal()
	}
	return nil
}

// Pull hands out up to max ready events, oldest first, as [backend.Delivery] values
// whose receipts are unique. When none is ready it waits until one is (an Enqueue, a
// Release, a retry or nacked event coming due), until ctx is done and then returns
// ctx's error, or until Close and then returns [backend.ErrClosed]. With ctx already
// done it still returns what is ready. Each delivery must be settled with
// [Backend.Settle]; the store does not take back deliveries left unsettled.
func (b *Backend) Pull(ctx context.Context, max int) ([]backend.Delivery, error) {
	if max < 1 {
		return nil, fmt.Errorf("memory: pull max %d, want at least 1", max)
	}
	b.mu.Lock()
	for {
		if b.closed {
			b.mu.Unlock()
			return nil, backend.ErrClosed
		}
		now := b.promote()
		if b.ready.len() > 0 {
			ds := b.take(max)
			b.mu.Unlock()
			return ds, nil
		}
		if err := ctx.Err(); err != nil {
			b.mu.Unlock()
			return nil, err
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		var due <-chan time.Time
		var timer *time.Timer
		if len(b.sched) > 0 {
			timer = time.NewTimer(b.sched[0].at.Sub(now))
			due = timer.C
		}
		b.mu.Unlock()
		select {
		case <-wake:
		case <-due:
		case <-ctx.Done():
			// Loop once more: what became ready meanwhile is still handed out.
		}
		if timer != nil {
			timer.Stop()
		}
		b.mu.Lock()
	}
}

// take hands out up to max ready events; b.mu is held and the queue is not empty.
func (b *Backend) take(max int) []backend.Delivery {
	n := min(max, b.ready.len())
	ds := make([]backend.Delivery, n)
	// All receipts of one Pull share one string, cut into pieces: one allocation
	// instead of one per delivery.
	buf, ends := b.scratch[:0], b.ends[:0]
	for i := range ds {
		ent := b.ready.popFront()
		ent.deliveries++
		b.seq++
		idx := b.allocSlot(slot{seq: b.seq, ent: ent})
		buf = appendReceipt(buf, b.seq, idx)
		ends = append(ends, len(buf))
		ds[i] = backend.Delivery{Event: ent.ev, Deliveries: ent.deliveries}
	}
	receipts := string(buf)
	start := 0
	for i, end := range ends {
		ds[i].Receipt = receipts[start:end]
		start = end
	}
	if cap(buf) <= 64<<10 { // keep a usual scratch buffer, not the one a huge Pull grew
		b.scratch, b.ends = buf, ends
	} else {
		b.scratch, b.ends = nil, nil
	}
	return ds
}

func (b *Backend) allocSlot(s slot) uint32 {
	if n := len(b.free); n > 0 {
		idx := b.free[n-1]
		b.free = b.free[:n-1]
		b.slots[idx] = s
		return idx
	}
	b.slots = append(b.slots, s)
	return uint32(len(b.slots) - 1)
}

// lookup returns the slot of the unsettled delivery named by receipt.
func (b *Backend) lookup(receipt string) (uint32, bool) {
	seq, idx, ok := parseReceipt(receipt)
	if !ok || uint64(idx) >= uint64(len(b.slots)) || b.slots[idx].seq != seq {
		return 0, false
	}
	return idx, true
}

// appendReceipt appends the receipt of delivery seq held in slot idx: "<seq>.<idx>".
func appendReceipt(buf []byte, seq uint64, idx uint32) []byte {
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, '.')
	return strconv.AppendUint(buf, uint64(idx), 10)
}

// parseReceipt reads a receipt as appendReceipt writes it, and nothing else.
func parseReceipt(r string) (seq uint64, idx uint32, ok bool) {
	dot := strings.IndexByte(r, '.')
	if dot < 0 {
		return 0, 0, false
	}
	seq, ok = parseDecimal(r[:dot], math.MaxUint64)
	if !ok || seq == 0 {
		return 0, 0, false
	}
	n, ok := parseDecimal(r[dot+1:], math.MaxUint32)
	return seq, uint32(n), ok
}

// parseDecimal reads s as a canonical decimal number no greater than limit: digits
// only, no sign, no leading zero.
func parseDecimal(s string, limit uint64) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	var n uint64
	for _, c := range []byte(s) {
		d := uint64(c - '0')
		if d > 9 || n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Settle ends deliveries, in order, each atomically: its children go to the tail in
// order, then its retries (those due at once to the tail, later ones to the schedule),
// its dead letters to the dead-letter ring, and finally the delivered event itself
// leaves (Ack), goes back first in line (Release) or is scheduled NackDelay from now
// (Nack, with its metadata's Targets set from the settlement's when given).
//
// A settlement whose children and retries do not all fit changes nothing and fails with
// [backend.ErrQueueFull]; one without children or retries never does. One whose receipt was not handed out by this store, or was
// settled already, fails with [backend.ErrUnknownDelivery]. Settle stops at the first
// failure and returns a *[backend.SettleError] saying how many were applied; the failed
// delivery stays unsettled. Settle never blocks, so ctx is not consulted. After Close it
// returns a SettleError matching [backend.ErrClosed].
func (b *Backend) Settle(_ context.Context, batch ...backend.Settlement) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return &backend.SettleError{Applied: 0, Err: backend.ErrClosed}
	}
	// Retries and nacked events that came due go first: they were waiting before the
	// children arrived.
	now := b.promote()
	readyBefore, schedTop := b.ready.len(), b.schedTop()
	var err error
	applied := 0
	for i := range batch {
		if err = b.settle(&batch[i], &now); err != nil {
			break
		}
		applied++
	}
	if b.ready.len() > readyBefore || b.schedTop() != schedTop {
		b.signal()
	}
	if err != nil {
		return &backend.SettleError{Applied: applied, Err: err}
	}
	return nil
}

// settle applies one settlement or, when it returns an error, nothing of it. b.mu is
// held; *now is the current time once read, zero before.
func (b *Backend) settle(s *backend.Settlement, now *time.Time) error {
	idx, ok := b.lookup(s.Delivery.Receipt)
	if !ok {
		return fmt.Errorf("memory: receipt %q: %w", s.Delivery.Receipt, backend.ErrUnknownDelivery)
	}
	ent := b.slots[idx].ent
	switch s.Outcome {
	case backend.Ack, backend.Release:
	case backend.Nack:
		if len(s.Targets) > 0 {
			m := ent.ev.Meta()
			m.Targets = s.Targets
			ev, err := ent.ev.WithMeta(m)
			if err != nil {
				return fmt.Errorf("memory: nack targets: %w", err)
			}
			ent.ev = ev
		}
	default:
		return fmt.Errorf("memory: settle: unknown outcome %v", s.Outcome)
	}
	for i, ev := range s.Children {
		if ev.IsZero() {
			return fmt.Errorf("memory: child %d: zero Event: %w", i, necro.ErrInvalidEvent)
		}
	}
	for i, r := range s.Retries {
		if r.Event.IsZero() {
			return fmt.Errorf("memory: retry %d: zero Event: %w", i, necro.ErrInvalidEvent)
		}
	}
	if !b.hasFollowUpRoom(len(s.Children) + len(s.Retries)) {
		return b.errFull
	}

	// Nothing below can fail.
	b.slots[idx] = slot{}
	b.free = append(b.free, idx)
	for _, ev := range s.Children {
		b.ready.pushBack(entry{ev: ev})
	}
	if len(s.Retries) > 0 || s.Outcome == backend.Nack {
		if now.IsZero() {
			*now = time.Now()
		}
	}
	for _, r := range s.Retries {
		if r.At.After(*now) {
			b.scheduleAt(r.At, entry{ev: r.Event})
		} else {
			b.ready.pushBack(entry{ev: r.Event})
		}
	}
	for _, dl := range s.DeadLetters {
		b.addDeadLetter(dl)
	}
	switch s.Outcome {
	case backend.Release:
		b.ready.pushFront(ent)
	case backend.Nack:
		b.scheduleAt(now.Add(b.nackDelay), ent)
	}
	return nil
}

// hasFollowUpRoom reports whether n more follow-ups fit: they may use the reserve of
// another Capacity beyond what producers may fill; b.mu is held. A settlement without
// follow-ups always fits, even when give-backs have filled the reserve: it adds nothing,
// and one refused would leave its delivery handed out for good, since the store never
// takes back a delivery on its own.
func (b *Backend) hasFollowUpRoom(n int) bool {
	return n == 0 || b.capacity == Unbounded || n <= 2*b.capacity-b.ready.len()-len(b.sched)
}

// hasRoom reports whether n more events fit; b.mu is held.
func (b *Backend) hasRoom(n int) bool {
	return b.capacity == Unbounded || n <= b.capacity-b.ready.len()-len(b.sched)
}

func (b *Backend) scheduleAt(at time.Time, ent entry) {
	b.order++
	b.sched.push(scheduled{at: at, order: b.order, ent: ent})
}

// schedTop returns the order of the earliest scheduled entry, 0 when there is none.
func (b *Backend) schedTop() uint64 {
	if len(b.sched) == 0 {
		return 0
	}
	return b.sched[0].order
}

// promote moves scheduled entries that are due to the tail of the queue, earliest
// first, and returns the time it read, zero when nothing is scheduled. b.mu is held.
func (b *Backend) promote() time.Time {
	if len(b.sched) == 0 {
		return time.Time{}
	}
	now := time.Now()
	for len(b.sched) > 0 && !b.sched[0].at.After(now) {
		b.ready.pushBack(b.sched.pop().ent)
	}
	return now
}

// signal wakes every waiting Pull; b.mu is held.
func (b *Backend) signal() {
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

func (b *Backend) addDeadLetter(dl backend.DeadLetter) {
	if b.dlCap != Unbounded && b.dead.len() >= b.dlCap {
		lost := b.dead.popFront()
		b.dropped++
		// A dropped dead letter is an event lost for good: say so, every time.
		b.log.Error("dead letter dropped: dead-letter store full", slog.Any("event", lost.Event),
			slog.String("organ", lost.Organ), slog.Int("capacity", b.dlCap), slog.Int("dropped_total", b.dropped))
	}
	// A receipt is a piece of the string all receipts of its Pull share (see take):
	// kept as it is, it would keep that whole string alive for as long as the dead
	// letter is held, kilobytes for one dead letter.
	dl.Receipt = strings.Clone(dl.Receipt)
	b.dead.pushBack(dl)
}

// Close wakes waiting Pulls, which return [backend.ErrClosed], and lets go of every
// event held, dead letters included: the store keeps nothing past Close. Later calls of
// Enqueue, Pull, Settle, DeadLetters and Close return [backend.ErrClosed].
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.ErrClosed
	}
	b.closed = true
	b.signal()
	b.ready.clear()
	b.dead.clear()
	b.sched, b.slots, b.free, b.scratch, b.ends = nil, nil, nil, nil, nil
	return nil
}

// Len returns how many events are ready to be pulled now.
func (b *Backend) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.promote()
	return b.ready.len()
}

// Idle reports whether the store holds nothing: no event ready, none scheduled for
// later, and no delivery handed out and unsettled.
func (b *Backend) Idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ready.len() == 0 && len(b.sched) == 0 && len(b.slots) == len(b.free)
}

// DeadLetters returns up to max dead letters, oldest first, without removing them;
// max < 1 means all of them. After Close it returns [backend.ErrClosed].
func (b *Backend) DeadLetters(_ context.Context, max int) ([]backend.DeadLetter, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, backend.ErrClosed
	}
	n := b.dead.len()
	if max >= 1 {
		n = min(n, max)
	}
	out := make([]backend.DeadLetter, n)
	for i := range out {
		out[i] = b.dead.at(i)
	}
	return out, nil
}

// Dropped returns how many dead letters were dropped, oldest first, to stay within
// DeadLetterCapacity since the store was created. [Backend.ClearDeadLetters] does not
// reset it.
func (b *Backend) Dropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Describe names the store for telemetry: system "memory", queue "memory".
func (b *Backend) Describe() backend.Description {
	return backend.Description{System: "memory", Name: "memory"}
}

// Report returns the store's levels for metrics: events ready or scheduled, deliveries
// handed out and unsettled, and dead letters held. A closed store reports zeros.
func (b *Backend) Report(context.Context) backend.Report {
	b.mu.Lock()
	defer b.mu.Unlock()
	return backend.Report{QueueDepth: int64(b.ready.len() + len(b.sched)), Pending: int64(len(b.slots) - len(b.free)),
		DeadLetters: int64(b.dead.len()), Reconnections: -1}
}

// ClearDeadLetters removes every dead letter.
func (b *Backend) ClearDeadLetters() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dead.clear()
}
