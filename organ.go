package necro

import (
	"context"
	"fmt"
	"strings"
)

// An Organ reacts to events of the types it listens to and may emit follow-ups.
// Its own actor calls Handle one event at a time, so state kept in the Organ needs no
// lock; a restart after a panic builds a fresh Organ when it was mounted through a
// factory. Handle must honour ctx: at the handler timeout ctx is done, and a Handle that
// ignores it is abandoned while the organ goes on with a fresh actor.
type Organ interface {
	ListensTo() []string
	Handle(ctx context.Context, ev Event) ([]Event, error)
}

// OrganFunc lets an ordinary function be the Handle of an Organ; see [NewOrgan].
type OrganFunc func(ctx context.Context, ev Event) ([]Event, error)

// Handle calls f.
func (f OrganFunc) Handle(ctx context.Context, ev Event) ([]Event, error) { return f(ctx, ev) }

// NewOrgan returns a stateless Organ that listens to the given types and handles them
// with f.
func NewOrgan(listensTo []string, f OrganFunc) Organ {
	return funcOrgan{types: append([]string(nil), listensTo...), f: f}
}

type funcOrgan struct {
	types []string
	f     OrganFunc
}

func (o funcOrgan) ListensTo() []string                                   { return append([]string(nil), o.types...) }
func (o funcOrgan) Handle(ctx context.Context, ev Event) ([]Event, error) { return o.f(ctx, ev) }

// A Mount places an organ in a Spine under a unique name. Exactly one of Organ and
// Factory is set: Organ for a stateless organ reused across restarts (it must then be
// safe to call while an abandoned, timed-out call of it may still be running), Factory
// for a stateful one, called for the first start of every run and for every restart, so
// that a restart begins from a fresh instance. [Mount.Validate] (and so spine.New) also
// calls Factory once, to learn what the organ listens to.
type Mount struct {
	Name    string
	Organ   Organ
	Factory func() Organ
}

// Instance returns the organ to start: a new one from Factory, or Organ.
func (m Mount) Instance() Organ {
	if m.Factory != nil {
		return m.Factory()
	}
	return m.Organ
}

// Validate checks the mount on its own: a non-blank name, exactly one of Organ and
// Factory, and a listens-to list without blank entries or ones longer than [MaxTypeBytes]. It returns the trimmed types
// the organ listens to; the error wraps [ErrInvalidOrgan].
func (m Mount) Validate() ([]string, error) {
	if strings.TrimSpace(m.Name) == "" {
		return nil, fmt.Errorf("%w: name must not be blank", ErrInvalidOrgan)
	}
	if (m.Organ == nil) == (m.Factory == nil) {
		return nil, fmt.Errorf("%w: %s: set exactly one of Organ and Factory", ErrInvalidOrgan, m.Name)
	}
	o := m.Instance()
	if o == nil {
		return nil, fmt.Errorf("%w: %s: Factory returned nil", ErrInvalidOrgan, m.Name)
	}
	var types []string
	for _, t := range o.ListensTo() {
		tt := strings.TrimSpace(t)
		if tt == "" {
			return nil, fmt.Errorf("%w: %s: listens_to holds a blank event type", ErrInvalidOrgan, m.Name)
		}
		if len(tt) > MaxTypeBytes {
			// No event can carry such a type: the organ would wait for it in vain.
			return nil, fmt.Errorf("%w: %s: listens_to holds an event type of %d bytes, longer than MaxTypeBytes (%d): %q",
				ErrInvalidOrgan, m.Name, len(tt), MaxTypeBytes, clip(tt))
		}
		types = append(types, tt)
	}
	return types, nil
}
