// Package seqmodel is the sequential reference model of the Spine: Python NecroStack's
// one-event-at-a-time loop, Q(t+1) = Q(t) − head + emitted, written as plainly as
// possible. Property tests run random organ graphs through it and through the real
// Spine and demand the same observable behaviour for every window size.
//
// Organs here are specifications, not code: what an organ emits and whether it fails
// are pure functions of the event's tag, the organ and the attempt, so the model and a
// real run of the same Graph agree on every handler result.
package seqmodel

import (
	"fmt"
	"hash/fnv"
	"slices"
)

// A Graph is a set of organ specifications and the root events that start a run.
type Graph struct {
	Organs      []Organ
	Roots       []Root
	MaxSteps    int // events one run may dispatch; 0 means no bound
	MaxDepth    int // deepest child kept; deeper ones are dead-lettered; 0 means no bound
	MaxAttempts int // handling attempts of one (event, organ) before dead-lettering
}

// A Root is an event the run starts with.
type Root struct {
	Type string
	Tag  string
}

// An Organ listens to types, emits one child of each type in Emits per event it
// handles, and fails when FailEvery > 0 and the hash of (tag, organ, attempt) is a
// multiple of FailEvery.
type Organ struct {
	Name      string
	Listens   []string
	Emits     []string
	FailEvery int
	Permanent bool // failures are permanent: never retried
	Panics    bool // failures are panics rather than returned errors
}

// Failure says how a handler call fails.
type Failure int

const (
	NoFailure Failure = iota
	ErrorFailure
	PermanentFailure
	PanicFailure
)

// Child is an event an organ emits.
type Child struct {
	Type string
	Tag  string
}

// Handle is the behaviour of organ o on the event with the given tag and attempt: the
// children it emits, or how it fails.
func (o Organ) Handle(tag string, attempt int) ([]Child, Failure) {
	if o.FailEvery > 0 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s|%s|%d", tag, o.Name, attempt)
		if h.Sum64()%uint64(o.FailEvery) == 0 {
			switch {
			case o.Permanent:
				return nil, PermanentFailure
			case o.Panics:
				return nil, PanicFailure
			}
			return nil, ErrorFailure
		}
	}
	out := make([]Child, len(o.Emits))
	for i, t := range o.Emits {
		out[i] = Child{Type: t, Tag: fmt.Sprintf("%s/%s%d", tag, o.Name, i)}
	}
	return out, NoFailure
}

// Key names one handling of an event in traces: its tag and attempt.
func Key(tag string, attempt int) string { return fmt.Sprintf("%s#%d", tag, attempt) }

// Outcome is everything a run shows from outside.
type Outcome struct {
	Dispatched     []string            // Keys in the order the queue handed them out
	Traces         map[string][]string // per organ, the Keys it handled, in order
	DeadLetters    []string            // "Key@organ: reason", in the order written
	Left           []string            // Keys still queued when the run ended
	BudgetExceeded bool                // the run stopped at MaxSteps with events queued
}

type queued struct {
	typ, tag string
	depth    int
	attempt  int
	targets  []string // nil: every listener
}

// Run executes the graph one event at a time.
func (g Graph) Run() Outcome {
	out := Outcome{Traces: map[string][]string{}}
	var q []queued
	for _, r := range g.Roots {
		q = append(q, queued{typ: r.Type, tag: r.Tag, attempt: 1})
	}
	steps := 0
	for len(q) > 0 {
		if g.MaxSteps > 0 && steps >= g.MaxSteps {
			out.BudgetExceeded = true
			break
		}
		e := q[0]
		q = q[1:]
		steps++
		key := Key(e.tag, e.attempt)
		out.Dispatched = append(out.Dispatched, key)
		var children, retries []queued
		for _, o := range g.Organs {
			if !slices.Contains(o.Listens, e.typ) || (e.targets != nil && !slices.Contains(e.targets, o.Name)) {
				continue
			}
			out.Traces[o.Name] = append(out.Traces[o.Name], key)
			kids, fail := o.Handle(e.tag, e.attempt)
			switch {
			case fail == NoFailure:
				for _, k := range kids {
					c := queued{typ: k.Type, tag: k.Tag, depth: e.depth + 1, attempt: 1}
					if g.MaxDepth > 0 && c.depth > g.MaxDepth {
						out.DeadLetters = append(out.DeadLetters, fmt.Sprintf("%s@%s: depth budget exceeded", Key(c.tag, 1), o.Name))
						continue
					}
					children = append(children, c)
				}
			case fail != PermanentFailure && e.attempt < g.MaxAttempts:
				retries = append(retries, queued{typ: e.typ, tag: e.tag, depth: e.depth, attempt: e.attempt + 1, targets: []string{o.Name}})
			default:
				reason := "retries exhausted"
				if fail == PermanentFailure {
					reason = "permanent error"
				}
				out.DeadLetters = append(out.DeadLetters, fmt.Sprintf("%s@%s: %s", key, o.Name, reason))
			}
		}
		// Children first, in organ order, then the retries: the order the Spine settles in.
		q = append(q, children...)
		q = append(q, retries...)
	}
	for _, e := range q {
		out.Left = append(out.Left, Key(e.tag, e.attempt))
	}
	return out
}
