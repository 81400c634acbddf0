package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/chaosapp"
)

// A mix says which directive root number seq carries.
type mix func(rng *rand.Rand, seq int) chaosapp.Directive

// A producer enqueues the roots of a scenario on the stream, straight to Redis, and
// remembers every root whose enqueue Redis acknowledged: those are the roots the
// checks expect. An enqueue that fails is tried again until it is acknowledged, so a
// batch whose reply was lost may be in the stream twice (same ids): at-least-once, as
// any producer over a network.
type producer struct {
	store *necroredis.Backend

	mu       sync.Mutex
	acked    []necro.Event
	failures int // enqueue calls that failed and were tried again
	retried  int // roots enqueued more than once for that reason
}

func newProducer(ctx context.Context, cfg necroredis.Config) (*producer, error) {
	cfg.Consumer = "chaos-producer" // it never pulls; it only enqueues
	cfg.NackDelay = 0
	store, err := necroredis.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	return &producer{store: store}, nil
}

func (p *producer) close() error { return p.store.Close() }

// roots builds n roots with the mix's directives, seq counting from first.
func roots(rng *rand.Rand, m mix, first, n int) ([]necro.Event, error) {
	out := make([]necro.Event, 0, n)
	for seq := first; seq < first+n; seq++ {
		d := m(rng, seq)
		d.Seq = seq
		body, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		ev, err := necro.NewEvent(chaosapp.EventType, json.RawMessage(body))
		if err != nil {
			return nil, fmt.Errorf("root %d: %w", seq, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// send enqueues one batch, trying again every 100ms until Redis acknowledges it or ctx
// ends; only acknowledged roots count as sent. When a large batch went in only in part,
// the part Redis acknowledged counts and the rest is sent again; a part whose fate Redis
// could not tell (EnqueueError.Unknown) is sent again too, since a root sent twice is
// handled twice, which the checks allow, and a root never sent is lost.
func (p *producer) send(ctx context.Context, batch []necro.Event) error {
	for tries := 0; ; tries++ {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.store.Enqueue(cctx, batch...)
		cancel()
		if err == nil {
			p.mu.Lock()
			p.acked = append(p.acked, batch...)
			if tries > 0 {
				p.retried += len(batch)
			}
			p.mu.Unlock()
			return nil
		}
		p.mu.Lock()
		p.failures++
		var partial *backend.EnqueueError
		if errors.As(err, &partial) && partial.Enqueued > 0 {
			p.acked = append(p.acked, batch[:partial.Enqueued]...)
			batch = batch[partial.Enqueued:]
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("producer: %d roots never acknowledged: %w (last error: %v)", len(batch), ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// produce enqueues evs in batches of batchSize, spread evenly over d (all at once when
// d is zero).
func (p *producer) produce(ctx context.Context, evs []necro.Event, batchSize int, d time.Duration) error {
	batches := (len(evs) + batchSize - 1) / batchSize
	start := time.Now()
	for i := 0; i < batches; i++ {
		if d > 0 {
			due := start.Add(d * time.Duration(i) / time.Duration(batches))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
		}
		lo, hi := i*batchSize, min((i+1)*batchSize, len(evs))
		if err := p.send(ctx, evs[lo:hi]); err != nil {
			return err
		}
	}
	return nil
}

// sent returns the acknowledged roots.
func (p *producer) sent() []necro.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}
