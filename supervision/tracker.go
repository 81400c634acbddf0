package supervision

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// Defaults of [NewRetryTracker].
const (
	defaultTrackerSize = 100_000
	defaultTrackerTTL  = 10 * time.Minute
)

// A RetryTracker counts failures per (event id, organ) within this process. It covers
// redeliveries that leave the event's own attempt count unchanged, such as a nack or
// the crash of another worker, so an event that keeps failing still reaches its last
// attempt. Memory stays bounded when events fail forever: it holds at most size pairs,
// dropping the least recently failed first, and forgets a pair ttl after its last
// failure.
//
// A RetryTracker starts no goroutine. expirable.LRU (golang-lru v2.0.7) expires entries
// from a goroutine that nothing can stop, so the tracker turns the LRU's own TTL off and
// expires entries itself: each call first drops the pairs whose ttl has passed. It is
// safe for concurrent use.
type RetryTracker struct {
	ttl time.Duration

	// mu makes Fail's read-increment-write atomic and keeps the LRU ordered by expiry:
	// only Fail reorders it, stamping entries under mu with a non-decreasing clock.
	mu  sync.Mutex
	lru *expirable.LRU[retryKey, retryCount]
}

// retryKey is a comparable pair of the caller's own strings, so a lookup copies two
// string headers instead of building a joined key.
type retryKey struct{ event, organ string }

type retryCount struct {
	n       int
	expires time.Time
}

// NewRetryTracker returns a tracker holding at most size (event, organ) pairs, each
// forgotten ttl after its last failure. size ≤ 0 means 100,000 and ttl ≤ 0 means 10
// minutes.
func NewRetryTracker(size int, ttl time.Duration) *RetryTracker {
	if size <= 0 {
		size = defaultTrackerSize
	}
	if ttl <= 0 {
		ttl = defaultTrackerTTL
	}
	// TTL 0: the LRU starts no cleanup goroutine; prune does its job.
	return &RetryTracker{ttl: ttl, lru: expirable.NewLRU[retryKey, retryCount](size, nil, 0)}
}

// Fail records one more failure of organ on event eventID and returns how many it has
// recorded for the pair, this one included; the pair's ttl starts over.
func (t *RetryTracker) Fail(eventID, organ string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now() // read under mu, so entries are stamped in LRU order
	t.prune(now)
	k := retryKey{eventID, organ}
	c, _ := t.lru.Peek(k) // a miss leaves the zero count
	c.n++
	c.expires = now.Add(t.ttl)
	t.lru.Add(k, c)
	return c.n
}

// Count returns the failures recorded for organ on event eventID, or 0 when there are
// none or they have expired. It does not extend the pair's ttl.
func (t *RetryTracker) Count(eventID, organ string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(time.Now())
	c, _ := t.lru.Peek(retryKey{eventID, organ}) // Peek keeps the LRU in expiry order
	return c.n
}

// Forget drops the count of organ on event eventID, typically once the organ has
// handled the event or the event reached its terminal failure mode.
func (t *RetryTracker) Forget(eventID, organ string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lru.Remove(retryKey{eventID, organ})
}

// Len returns the number of (event, organ) pairs held, expired ones excluded.
func (t *RetryTracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(time.Now())
	return t.lru.Len()
}

// prune drops expired pairs, oldest first. The least recently failed pair is also the
// first to expire, so it stops at the first live one: each pair is dropped once, which
// keeps the cost per call constant on average. t.mu must be held.
func (t *RetryTracker) prune(now time.Time) {
	for {
		_, c, ok := t.lru.GetOldest()
		if !ok || now.Before(c.expires) {
			return
		}
		t.lru.RemoveOldest()
	}
}
