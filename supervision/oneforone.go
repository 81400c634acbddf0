package supervision

import (
	"fmt"
	"strconv"
	"time"
)

// A Directive is what a supervisor does with an organ whose actor crashed.
type Directive int

// Directives returned by [OneForOne.Decide]. The zero Directive is none of them.
const (
	// Restart builds a fresh organ from its factory after the decision's delay.
	Restart Directive = iota + 1
	// Quarantine keeps the organ down for the decision's delay (its events wait in the
	// backend), then respawns it with a cleared failure history.
	Quarantine
)

// String returns "restart" or "quarantine".
func (d Directive) String() string {
	switch d {
	case Restart:
		return "restart"
	case Quarantine:
		return "quarantine"
	}
	return "Directive(" + strconv.Itoa(int(d)) + ")"
}

// A Decision is the answer of [OneForOne.Decide].
type Decision struct {
	Directive Directive
	Delay     time.Duration // wait before restarting, or length of the quarantine
}

// String reads like "restart after 20ms" or "quarantine for 5s".
func (d Decision) String() string {
	if d.Directive == Quarantine {
		return "quarantine for " + d.Delay.String()
	}
	return d.Directive.String() + " after " + d.Delay.String()
}

// Defaults of a zero [OneForOne].
const (
	defaultMaxRestarts   = 10
	defaultWindow        = time.Minute
	defaultMaxQuarantine = 5 * time.Minute
)

// DefaultQuarantine is the length of a first quarantine when OneForOne.Quarantine is
// zero.
const DefaultQuarantine = 5 * time.Second

// OneForOne supervises each organ on its own: a crash restarts only that organ. It
// bounds restart intensity: an organ may restart MaxRestarts times within any Window;
// the failure after that quarantines it instead, so a broken organ neither spins nor
// disappears. The zero value is ready to use: 10 restarts a minute, restart delays from
// the default [Backoff], quarantines of 5s doubling up to 5m.
type OneForOne struct {
	// MaxRestarts is how many failures within Window are answered with a restart; one
	// more quarantines the organ. Zero means 10.
	MaxRestarts int
	// Window is the sliding period over which failures are counted. A failure counts
	// while it is less than Window old. Zero means 1 minute.
	Window time.Duration
	// Backoff delays each restart: the k-th failure in the window waits Backoff.Delay(k).
	// The zero value is the default Backoff (10ms doubling, 20% jitter).
	Backoff Backoff
	// Quarantine is the length of a first quarantine; each consecutive one doubles it,
	// with Backoff's Jitter. Quarantines are consecutive when the second begins less than
	// Window after the first ended. Zero means 5s.
	Quarantine time.Duration
	// MaxQuarantine caps the quarantine length. Zero means 5 minutes, or Quarantine when
	// Quarantine is larger.
	MaxQuarantine time.Duration
}

func (p OneForOne) resolved() OneForOne {
	if p.MaxRestarts <= 0 {
		p.MaxRestarts = defaultMaxRestarts
	}
	if p.Window <= 0 {
		p.Window = defaultWindow
	}
	if p.Quarantine <= 0 {
		p.Quarantine = DefaultQuarantine
	}
	if p.MaxQuarantine <= 0 {
		p.MaxQuarantine = max(defaultMaxQuarantine, p.Quarantine)
	}
	p.MaxQuarantine = max(p.MaxQuarantine, p.Quarantine)
	return p
}

// Validate reports, with an error wrapping [ErrInvalidPolicy]: a negative field, a
// MaxQuarantine below Quarantine, an invalid Backoff, and a Window too short to ever
// hold MaxRestarts+1 failures. The last happens when the restart delays
// Backoff.Delay(1) + … + Backoff.Delay(MaxRestarts), without jitter, add up to Window or
// more: an organ that crashes as soon as it starts then spaces its failures out of the
// window by itself and is restarted forever, never quarantined.
func (p OneForOne) Validate() error {
	switch {
	case p.MaxRestarts < 0:
		return fmt.Errorf("one-for-one max restarts %d is negative: %w", p.MaxRestarts, ErrInvalidPolicy)
	case p.Window < 0:
		return fmt.Errorf("one-for-one window %v is negative: %w", p.Window, ErrInvalidPolicy)
	case p.Quarantine < 0:
		return fmt.Errorf("one-for-one quarantine %v is negative: %w", p.Quarantine, ErrInvalidPolicy)
	case p.MaxQuarantine < 0:
		return fmt.Errorf("one-for-one max quarantine %v is negative: %w", p.MaxQuarantine, ErrInvalidPolicy)
	case p.MaxQuarantine > 0 && p.MaxQuarantine < p.Quarantine:
		return fmt.Errorf("one-for-one max quarantine %v is below quarantine %v: %w",
			p.MaxQuarantine, p.Quarantine, ErrInvalidPolicy)
	}
	if err := p.Backoff.Validate(); err != nil {
		return fmt.Errorf("one-for-one: %w", err)
	}
	r := p.resolved()
	if total, ok := restartSpan(r); !ok {
		return fmt.Errorf("one-for-one window %v is too short for %d restarts delayed %v or more in all: %w",
			r.Window, r.MaxRestarts, total, ErrInvalidPolicy)
	}
	return nil
}

// restartSpan adds up the unjittered delays of restarts 1..MaxRestarts and reports
// whether they fit within Window. It stops adding once the sum reaches Window.
func restartSpan(p OneForOne) (total time.Duration, fits bool) {
	b := p.Backoff
	b.Jitter = NoJitter
	_, maxDelay, _ := b.resolved()
	for k := 1; k <= p.MaxRestarts; k++ {
		d := b.Delay(k, 0)
		if d == maxDelay {
			// Every later delay is maxDelay too; compare without looping or overflowing.
			left := time.Duration(p.MaxRestarts - k + 1)
			if left > (p.Window-total-1)/d {
				return p.Window, false
			}
			return total + left*d, true
		}
		total += d
		if total >= p.Window {
			return total, false
		}
	}
	return total, true
}

// A History is what a supervisor remembers about one organ's failures: the times of the
// latest MaxRestarts+1 of them since its last quarantine, and its streak of consecutive
// quarantines. The zero value is an organ that never failed. [OneForOne.Decide] records
// into it; keep one History per organ, owned by that organ's supervisor, as it is not
// safe for concurrent use.
type History struct {
	failures    []time.Time // ring of the latest failures; its length is MaxRestarts+1
	next        int         // ring index the next failure is written to
	size        int         // how many ring entries hold a failure
	quarantines int         // consecutive quarantines so far
	releasedAt  time.Time   // when the latest quarantine ends
}

// Quarantines returns the number of consecutive quarantines in the organ's current
// streak, as of the last [OneForOne.Decide]; zero when the last one is long past.
func (h *History) Quarantines() int { return h.quarantines }

// record adds a failure at now, keeping only the latest capacity failures.
func (h *History) record(now time.Time, capacity int) {
	if len(h.failures) != capacity {
		h.resize(capacity)
	}
	h.failures[h.next] = now
	h.next = (h.next + 1) % capacity
	h.size = min(h.size+1, capacity)
}

// resize moves the latest failures into a ring of the given capacity. It runs once per
// History, or again if the policy's MaxRestarts changes.
func (h *History) resize(capacity int) {
	ring := make([]time.Time, capacity)
	keep := min(h.size, capacity)
	for i := range keep {
		// Walk back from the newest failure so the latest ones survive a shrink.
		src := (h.next - 1 - i + 2*len(h.failures)) % max(len(h.failures), 1)
		ring[keep-1-i] = h.failures[src]
	}
	h.failures, h.next, h.size = ring, keep%capacity, keep
}

// count returns the recorded failures less than window old at now.
func (h *History) count(now time.Time, window time.Duration) int {
	n := 0
	for i := range h.size {
		// A failure recorded after now (the clock stepped back) still counts: better a
		// quarantine too early than a crash loop hidden by a clock change.
		if now.Sub(h.failures[i]) < window {
			n++
		}
	}
	return n
}

// Failures returns how many failures recorded in h since its last quarantine are less
// than Window old at now, at most MaxRestarts+1.
func (p OneForOne) Failures(h *History, now time.Time) int {
	return h.count(now, p.resolved().Window)
}

// Decide records a crash of the organ at now in h and says what to do about it. When
// k, the failures less than Window old with this one included, is at most MaxRestarts,
// it returns [Restart] after Backoff.Delay(k, seed). Otherwise
// it returns [Quarantine] for Quarantine·2^(q−1), jittered and capped at MaxQuarantine,
// q being the organ's consecutive quarantines, this one included; it then clears the
// failures in h, so the respawned organ starts afresh.
//
// Decide is a pure function of (p, *h, now, seed) and allocates only the first time it
// records into h. It assumes p is valid (see [OneForOne.Validate]). h must not be nil.
func (p OneForOne) Decide(h *History, now time.Time, seed uint64) Decision {
	p = p.resolved()
	if h.quarantines > 0 && now.Sub(h.releasedAt) >= p.Window {
		h.quarantines = 0 // the organ ran a full Window after its last quarantine
	}
	h.record(now, p.MaxRestarts+1)
	k := h.count(now, p.Window)
	if k <= p.MaxRestarts {
		return Decision{Directive: Restart, Delay: p.Backoff.Delay(k, seed)}
	}
	h.quarantines++
	quarantine := Backoff{Base: p.Quarantine, Max: p.MaxQuarantine, Jitter: p.Backoff.Jitter}
	d := quarantine.Delay(h.quarantines, seed)
	h.releasedAt = now.Add(d)
	h.next, h.size = 0, 0
	return Decision{Directive: Quarantine, Delay: d}
}
