package chaosapp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/necrostack/necro"
)

// EventType is the type of every event of the app, roots and children alike.
const EventType = "chaos.task"

// The mount names of the two organs.
const (
	OrganWork  = "work"  // obeys the directive
	OrganAudit = "audit" // always succeeds and emits nothing
)

// The limits the app's [App.Config] gives the Spine. They are small so that every fault
// the directives ask for resolves within seconds.
const (
	// MaxDepth is the deepest a child may be: a loop's child at depth MaxDepth+1 is
	// dead-lettered by the depth budget.
	MaxDepth = 8
	// MaxFanOut is the most children one Handle call may emit; a call that emits more
	// fails permanently.
	MaxFanOut = 100
	// HandlerTimeout bounds one Handle call.
	HandlerTimeout = 200 * time.Millisecond
	// AbandonAfter is how long a call may run past HandlerTimeout, ignoring its ctx,
	// before the Spine abandons it.
	AbandonAfter = 200 * time.Millisecond
	// MaxAttempts is how many times organ work handles an event that keeps failing
	// before it is dead-lettered.
	MaxAttempts = 3
	// RetryBackoff is the delay before the first retry; the second waits twice as long.
	RetryBackoff = 20 * time.Millisecond
	// HangFor is how long a "hang" blocks when its directive gives no ms: past
	// HandlerTimeout+AbandonAfter, so every attempt is abandoned, and short enough that
	// abandoned calls do not pile up (see MaxAbandoned).
	HangFor = 3 * (HandlerTimeout + AbandonAfter)
	// MaxAbandoned is how many abandoned calls of an organ may still run before it is
	// quarantined: it gets no work for 250ms (the Restart.Quarantine of App.Config),
	// and again at every abandon while too many still run. Organ work handles one event
	// at a time and abandons a hang after HandlerTimeout+AbandonAfter (400ms); a hang of
	// HangFor then runs on 800ms, so even back-to-back hangs keep 2 or 3 abandoned calls
	// running and never trigger it. 32 also leaves room for hangs with a ms of up to
	// about 32×400ms ≈ 13s; the default, 8, would pause the organ over and over there.
	MaxAbandoned = 32
)

// The values of [Directive.Do]. Only organ work obeys them.
const (
	DoOK        = "ok"         // succeed, no children; an empty Do means the same
	DoFail      = "fail"       // a retryable error on every attempt: dead-lettered after MaxAttempts
	DoFailOnce  = "fail_once"  // an error on attempt 1 only, then succeed
	DoPanic     = "panic"      // panic on every attempt: dead-lettered after MaxAttempts
	DoPanicOnce = "panic_once" // panic on attempt 1 only, then succeed
	DoSleep     = "sleep"      // sleep MS milliseconds, honouring ctx, then succeed
	DoHang      = "hang"       // ignore ctx and block MS milliseconds (HangFor when 0): every attempt abandoned
	DoEmit      = "emit"       // emit N children, each with payload Child (default {"do":"ok"})
	DoLoop      = "loop"       // emit 1 child with the same directive, until the depth budget stops it
	DoBomb      = "bomb"       // emit N children (MaxFanOut+1 when 0): the call fails permanently
	DoExit      = "exit"       // the first handling cluster-wide kills its process with SIGKILL
)

// A Directive is the payload of every event of the app: what organ work does with the
// event. Seq is the producer's number of the root; children copy it.
type Directive struct {
	Seq   int        `json:"seq"`
	Do    string     `json:"do,omitempty"`
	MS    int        `json:"ms,omitempty"` // milliseconds, for "sleep" and "hang"
	N     int        `json:"n,omitempty"`  // children, for "emit" and "bomb"
	Child *Directive `json:"child,omitempty"`
	Pad   string     `json:"pad,omitempty"` // makes the payload as large as a test wants
}

// String describes the directive in a few words, for reports: "emit n=3 child=(fail)".
func (d Directive) String() string {
	var b strings.Builder
	b.WriteString(d.do())
	if d.MS != 0 {
		fmt.Fprintf(&b, " ms=%d", d.MS)
	}
	if d.N != 0 {
		fmt.Fprintf(&b, " n=%d", d.N)
	}
	if d.Child != nil {
		fmt.Fprintf(&b, " child=(%s)", d.Child)
	}
	if d.Pad != "" {
		fmt.Fprintf(&b, " pad=%dB", len(d.Pad))
	}
	return b.String()
}

// do returns Do, with the empty default spelled out.
func (d Directive) do() string {
	if d.Do == "" {
		return DoOK
	}
	return d.Do
}

// offspring returns how many children organ work emits for d and their payload, all
// alike: none for the directives that emit nothing.
func (d Directive) offspring() (n int, child Directive) {
	child = Directive{Do: DoOK}
	if d.Child != nil {
		child = *d.Child
	}
	switch d.Do {
	case DoEmit:
		n = d.N
	case DoBomb:
		n = d.N
		if n == 0 {
			n = MaxFanOut + 1
		}
	case DoLoop:
		n, child = 1, d
	default:
		return 0, Directive{}
	}
	child.Seq = d.Seq
	return max(n, 0), child
}

// flowSize counts the expectations of an event carrying d at depth, or returns a number
// above limit once it is sure to pass it.
func flowSize(d Directive, depth, limit int) int {
	n, child := d.offspring()
	switch {
	case n == 0 || n > MaxFanOut:
		return 2
	case depth+1 > MaxDepth:
		return 2 + n
	}
	per := flowSize(child, depth+1, limit)
	if per > limit/n {
		return limit + 1
	}
	return 2 + n*per
}

// hangFor is how long a "hang" blocks.
func (d Directive) hangFor() time.Duration {
	if d.MS == 0 {
		return HangFor
	}
	return time.Duration(d.MS) * time.Millisecond
}

// NewRoot returns a root event carrying d, with a fresh id.
func NewRoot(d Directive) (necro.Event, error) {
	return necro.NewEvent(EventType, d)
}

// The values of [Expectation.Want].
const (
	WantOK   = "ok"   // handled successfully at least once
	WantDead = "dead" // in the dead-letter store, for the organ Expectation.Organ names
)

// An Expectation is one thing a run must end with: event ID handled successfully by
// Organ at least once (Want [WantOK]), or dead-lettered by the Spine naming Organ (Want
// [WantDead]).
type Expectation struct {
	ID    string
	Organ string
	Want  string
}

// ErrBadDirective reports a directive [Expect] cannot predict: an unknown Do, a
// negative N or MS, a sleep too close to the handler timeout to say whether it times
// out, a hang too short to be abandoned. The wrapping error names the event and the
// field.
var ErrBadDirective = errors.New("chaosapp: bad directive")

// maxExpectations bounds what one root may expand to, so that a directive tree such as
// emit 100 of emit 100 of ... fails fast instead of filling the memory.
const maxExpectations = 1_000_000

// Expect returns every (event, organ) the run of root must end with, root first and
// then its descendants depth first, in the order organ work emits them. It follows what
// the Spine does with the app's [App.Config]:
//
//   - organ audit handles every event that is handled at all: (id, audit, ok);
//   - "ok", "fail_once", "panic_once", "exit", and "sleep" well under HandlerTimeout:
//     (id, work, ok);
//   - "fail", "panic", "hang", and "sleep" well over HandlerTimeout: (id, work, dead),
//     after MaxAttempts attempts;
//   - "emit", "loop", "bomb": more than MaxFanOut children make (id, work, dead) and no
//     children; otherwise (id, work, ok) and, for the i-th child, whose id is
//     necro.DeriveID(id, "work", i), its own expectations, or, when the child would be
//     deeper than MaxDepth, (child id, work, dead): the Spine dead-letters it before any
//     organ handles it and names the organ that emitted it.
//
// "exit" assumes a ledger (see [Options.Ledger]), which holds its marker. The error
// wraps [ErrBadDirective] when a payload is not a directive Expect can predict.
func Expect(root necro.Event) ([]Expectation, error) {
	var d Directive
	if err := root.DecodePayload(&d); err != nil {
		return nil, fmt.Errorf("%w: event %s: payload: %v", ErrBadDirective, root.ID(), err)
	}
	size := flowSize(d, root.Depth(), maxExpectations)
	if size > maxExpectations {
		return nil, fmt.Errorf("%w: event %s: the flow expands to more than %d expectations", ErrBadDirective, root.ID(), maxExpectations)
	}
	out := make([]Expectation, 0, size)
	if err := expect(&out, root.ID(), root.Depth(), d); err != nil {
		return nil, err
	}
	return out, nil
}

func expect(out *[]Expectation, id string, depth int, d Directive) error {
	if d.N < 0 || d.MS < 0 {
		return fmt.Errorf("%w: event %s: n %d and ms %d must not be negative", ErrBadDirective, id, d.N, d.MS)
	}
	*out = append(*out, Expectation{ID: id, Organ: OrganAudit, Want: WantOK})
	work := func(want string) { *out = append(*out, Expectation{ID: id, Organ: OrganWork, Want: want}) }
	switch d.Do {
	case "", DoOK, DoFailOnce, DoPanicOnce, DoExit:
		work(WantOK)
	case DoFail, DoPanic:
		work(WantDead)
	case DoSleep:
		sleep := time.Duration(d.MS) * time.Millisecond
		switch {
		case sleep < HandlerTimeout/2:
			work(WantOK)
		case sleep >= 2*HandlerTimeout:
			work(WantDead)
		default:
			return fmt.Errorf("%w: event %s: sleep ms %d is too close to the handler timeout %v to tell; use less than %v or at least %v",
				ErrBadDirective, id, d.MS, HandlerTimeout, HandlerTimeout/2, 2*HandlerTimeout)
		}
	case DoHang:
		if d.MS != 0 && d.hangFor() <= HandlerTimeout+AbandonAfter {
			return fmt.Errorf("%w: event %s: hang ms %d must be 0 (%v) or more than %v",
				ErrBadDirective, id, d.MS, HangFor, HandlerTimeout+AbandonAfter)
		}
		work(WantDead)
	case DoEmit, DoLoop, DoBomb:
		n, child := d.offspring()
		if n > MaxFanOut {
			work(WantDead)
			return nil
		}
		work(WantOK)
		for i := range n {
			childID := necro.DeriveID(id, OrganWork, i)
			if depth+1 > MaxDepth {
				*out = append(*out, Expectation{ID: childID, Organ: OrganWork, Want: WantDead})
				continue
			}
			if err := expect(out, childID, depth+1, child); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: event %s: unknown do %q", ErrBadDirective, id, d.Do)
	}
	return nil
}
