package supervision

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func BenchmarkBackoffDelay(b *testing.B) {
	bo, seed := Backoff{}, Seed("01JD6W8ZC4Q1V9E7T0R2M3N5P6")
	b.ReportAllocs()
	for b.Loop() {
		_ = bo.Delay(5, seed)
	}
}

func BenchmarkRetryPolicyDecide(b *testing.B) {
	p, err := RetryPolicy{}, errors.New("connection reset")
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Decide(2, err, 7)
	}
}

func BenchmarkOneForOneDecide(b *testing.B) {
	var h History
	p, now := OneForOne{}, t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(10 * time.Second) // 6 failures a minute: restarts, never quarantined
		_ = p.Decide(&h, now, 7)
	}
}

func BenchmarkRetryTrackerFail(b *testing.B) {
	b.Run("same pair", func(b *testing.B) {
		tr := NewRetryTracker(0, 0)
		b.ReportAllocs()
		for b.Loop() {
			tr.Fail("01JD6W8ZC4Q1V9E7T0R2M3N5P6", "billing")
		}
	})
	b.Run("new pairs at capacity", func(b *testing.B) {
		const size = 1024
		tr, ids := NewRetryTracker(size, 0), make([]string, 4*size)
		for i := range ids {
			ids[i] = strconv.Itoa(i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tr.Fail(ids[i%len(ids)], "billing")
			i++
		}
	})
}
