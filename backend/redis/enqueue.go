package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
)

// The bounds of one chunk of an Enqueue: the events one script adds. A script holds
// Redis while it runs, so a chunk is kept small enough to take a few milliseconds
// (about 3ms for 1,000 small events on a laptop), and other clients wait no longer.
// An Enqueue within both bounds is all or none; a larger one is written chunk after
// chunk, each all or none. A single event larger than EnqueueChunkBytes makes a chunk
// of its own.
const (
	EnqueueChunkEvents = 1000    // events in one chunk, at most
	EnqueueChunkBytes  = 1 << 20 // encoded bytes (event and meta fields) in one chunk, at most
)

// markerLife is how long a chunk's marker outlives the chunk's first attempt: beyond
// the retries (SettleRetryFor), and beyond any attempt that waited in a busy server's
// socket, so that whichever attempt runs second still finds it. A chunk answered at its
// first attempt has no other attempt, and its marker is deleted by the next chunk sent.
func (b *Backend) markerLife() time.Duration { return b.cfg.SettleRetryFor + time.Minute }

// maxForget bounds the old markers one script deletes.
const maxForget = 64

// doneMarkers holds the markers of chunks answered at their first attempt: no attempt
// of them can come later, so the next chunk sent deletes them rather than letting them
// wait for their expiry. Its methods are safe for concurrent use.
type doneMarkers struct {
	mu   sync.Mutex
	keys []string // guarded by mu
}

func (d *doneMarkers) add(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.keys) < 16*maxForget { // beyond, they expire on their own
		d.keys = append(d.keys, key)
	}
}

// take removes up to n markers and returns them.
func (d *doneMarkers) take(n int) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	n = min(n, len(d.keys))
	out := append([]string(nil), d.keys[len(d.keys)-n:]...)
	d.keys = d.keys[:len(d.keys)-n]
	return out
}

// Enqueue adds the events at the tail of the stream. Up to EnqueueChunkEvents events
// and EnqueueChunkBytes bytes it is all or none; a larger call is written in chunks of
// those bounds, in order, each all or none, so that no script holds Redis for long. A
// call that fails after some chunks went in returns a *backend.EnqueueError with the
// count of leading events stored; one that stored nothing returns its error as it is.
//
// A chunk is sent again while Redis cannot be reached (for up to SettleRetryFor), and a
// marker the chunk's script leaves makes that safe: a chunk whose reply was lost is
// applied once and reported as stored, never doubled and never reported as failed.
// Only when Redis stays unreachable is a chunk's fate unknown: EnqueueError.Unknown
// then counts its events. With Capacity set, each chunk goes in only when the rest of
// the call fits, so a call that cannot fit stores nothing. Between chunks the call
// stops when ctx is done or the store closes; a chunk under way always finishes, so
// the count stays exact.
func (b *Backend) Enqueue(ctx context.Context, events ...necro.Event) error {
	if !b.enter() {
		return backend.ErrClosed
	}
	defer b.inflight.RUnlock()
	var a argv
	done := 0
	for done < len(events) {
		err := ctx.Err()
		if err == nil && b.closed.Load() {
			err = backend.ErrClosed
		}
		if err != nil {
			return b.enqueueFailed(len(events), done, 0, err)
		}
		n := a.chunk(events[done:])
		unknown, err := b.enqueueChunk(ctx, a.args, len(events)-done)
		if err != nil {
			if unknown {
				return b.enqueueFailed(len(events), done, n, err)
			}
			return b.enqueueFailed(len(events), done, 0, err)
		}
		done += n
		b.counts.enqueued.Add(int64(n))
	}
	return nil
}

// enqueueFailed is the error of an Enqueue of total events that stored the leading
// done ones, and maybe the unknown ones after them.
func (b *Backend) enqueueFailed(total, done, unknown int, err error) error {
	err = fmt.Errorf("redis: enqueue %d events: %w", total, err)
	if done == 0 && unknown == 0 {
		return err
	}
	return &backend.EnqueueError{Enqueued: done, Unknown: unknown, Err: err}
}

// chunk encodes into a's arguments, after room for enqueueScript's three leading ones,
// the leading events of evs that fit in one chunk (at least one), and returns how many.
func (a *argv) chunk(evs []necro.Event) int {
	a.args = append(a.args[:0], nil, nil, nil)
	// The previous chunk's script has returned: its bytes may be written over.
	a.buf = a.buf[:0]
	size, n := 0, 0
	for n < len(evs) && n < EnqueueChunkEvents {
		ev := evs[n]
		a.reserve(ev.PayloadSize() + len(ev.Type()) + 320)
		start := len(a.buf)
		event := a.bytes(ev.AppendJSON)
		meta := a.bytes(func(b []byte) []byte { return appendMeta(b, ev) })
		if n > 0 && size+len(event)+len(meta) > EnqueueChunkBytes {
			a.buf = a.buf[:start]
			break
		}
		size += len(event) + len(meta)
		a.args = append(a.args, event, meta)
		n++
	}
	return n
}

// enqueueChunk runs enqueueScript for one chunk encoded in args, want being the room
// the rest of the call needs, and sends it again while Redis cannot be reached, for up
// to SettleRetryFor or until ctx is done or Close. unknown reports a failure that may
// hide a chunk applied: an attempt may have reached Redis and none answered for it.
func (b *Backend) enqueueChunk(ctx context.Context, args []any, want int) (unknown bool, err error) {
	var token [12]byte
	_, _ = rand.Read(token[:]) // crypto/rand.Read does not fail
	marker := b.cfg.Stream + ":enqueue:" + hex.EncodeToString(token[:])
	forget := b.markers.take(maxForget)
	keys := append([]string{b.keys[0], b.keys[2], marker}, forget...)
	args[0], args[1], args[2] = b.cfg.Capacity, want, b.markerLife().Milliseconds()
	// The call runs to completion whatever ctx does: a chunk cut off mid-reply would
	// be of unknown fate. ctx decides only whether to wait for another attempt.
	rctx := context.WithoutCancel(ctx)
	deadline := time.Now().Add(b.cfg.SettleRetryFor)
	delay := 10 * time.Millisecond
	sent := false // an attempt may have reached Redis without an answer
	for attempt := 1; ; attempt++ {
		raw, err := enqueueScript.Run(rctx, b.rdb, keys, args...).Slice()
		if attempt == 1 {
			keys = keys[:3] // the old markers were deleted, or will expire
		}
		if err == nil {
			status, detail, trimmed, err := parseEnqueueReply(raw)
			b.counts.trimmed.Add(trimmed)
			if err == nil && status == "OK" && attempt == 1 {
				b.markers.add(marker)
			}
			if err == nil && status == "FULL" {
				err = settleResult{status: "FULL", detail: detail}.err(b, 0)
			}
			return false, err
		}
		if !isNetwork(err) {
			// Redis answered, refusing this attempt; an earlier one, unanswered, may
			// still be applied.
			if isOOM(err) {
				err = fmt.Errorf("%w: Redis is out of memory: %v", backend.ErrQueueFull, err)
			}
			return sent, err
		}
		if !notSent(err) {
			sent = true
		}
		if time.Now().Add(delay).After(deadline) {
			return sent, err
		}
		b.counts.enqueueRetries.Add(1)
		b.log.WarnContext(ctx, "enqueue failed; retrying", slog.Duration("in", delay), slog.Any("err", err))
		select {
		case <-time.After(delay):
		case <-b.closing:
			return sent, fmt.Errorf("%w (while retrying an enqueue: %v)", backend.ErrClosed, err)
		case <-ctx.Done():
			return sent, fmt.Errorf("%w (while retrying an enqueue: %v)", ctx.Err(), err)
		}
		delay = min(2*delay, time.Second)
	}
}

// parseEnqueueReply reads enqueueScript's reply as OK or FULL, whichever attempt
// decided it.
func parseEnqueueReply(raw []any) (status, detail string, trimmed int64, err error) {
	if len(raw) != 3 {
		return "", "", 0, fmt.Errorf("redis: enqueue script answered %v", raw)
	}
	status, _ = raw[0].(string)
	detail, _ = raw[1].(string)
	trimmed, _ = raw[2].(int64)
	if status == "SEEN" {
		status, detail, _ = strings.Cut(detail, " ")
	}
	if status != "OK" && status != "FULL" {
		return "", "", 0, fmt.Errorf("redis: enqueue script answered %v", raw)
	}
	return status, detail, trimmed, nil
}

// notSent reports an error that proves the command never reached Redis, or that Redis
// refused it unrun: no connection could be made, or the server was still loading.
func notSent(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	msg := err.Error()
	return errors.Is(err, goredis.ErrClosed) || strings.Contains(msg, "connection pool timeout") ||
		strings.HasPrefix(msg, "LOADING")
}

// forgetMarkers deletes the markers of answered chunks that no later chunk deleted.
func (b *Backend) forgetMarkers(ctx context.Context) error {
	keys := b.markers.take(16 * maxForget)
	if len(keys) == 0 {
		return nil
	}
	return b.rdb.Del(ctx, keys...).Err()
}
