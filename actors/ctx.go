package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/telemetry"
)

// handleCtx is the ctx of one Handle call. It is cheaper than context.WithDeadline on
// the hot path: no timer and no goroutine per call. Its Done channel is made only when
// a handler asks for it, and the watchdog closes it at the deadline or when the host
// stops.
type handleCtx struct {
	parent   context.Context
	deadline time.Time
	index    int // the item's index in its batch
	ev       necro.Event
	organ    string
	span     telemetry.Span // the call's process span; the zero Span when tracing is off

	ended atomic.Uint32 // a ctxEnd; read it with endedBy
	stuck atomic.Bool   // reported to the coordinator as stuck
	mu    sync.Mutex
	done  chan struct{}
}

// A ctxEnd says why a Handle ctx ended. The first reason wins: a call canceled after its
// deadline passed still timed out.
type ctxEnd uint32

const (
	ctxLive         ctxEnd = iota // not ended
	ctxPastDeadline               // the deadline passed: Err is DeadlineExceeded, the result a timeout
	ctxCanceled                   // the host's ctx ended or the host is closing: Err is Canceled
)

// endedBy says why the ctx ended, or ctxLive.
func (c *handleCtx) endedBy() ctxEnd { return ctxEnd(c.ended.Load()) }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *handleCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *handleCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.endedBy() != ctxLive {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *handleCtx) Err() error {
	switch c.endedBy() {
	case ctxPastDeadline:
		return context.DeadlineExceeded
	case ctxCanceled:
		return context.Canceled
	}
	return nil
}

// Value answers the flow key with the event and organ of the call, built only when
// asked (by a log line), so that a Handle call costs no allocation for it.
func (c *handleCtx) Value(key any) any {
	if telemetry.IsFlowKey(key) {
		return telemetry.Flow{Event: c.ev, Organ: c.organ}
	}
	return c.parent.Value(key)
}

// end ends the ctx for a reason, ctxPastDeadline or ctxCanceled; the first reason wins.
func (c *handleCtx) end(reason ctxEnd) {
	if !c.ended.CompareAndSwap(uint32(ctxLive), uint32(reason)) {
		return
	}
	c.mu.Lock()
	switch c.done {
	case nil:
		c.done = closedChan
	case closedChan:
		// Done was asked for between the compare-and-swap and the lock: it saw the ctx
		// ended and handed out the closed channel already.
	default:
		close(c.done)
	}
	c.mu.Unlock()
}
