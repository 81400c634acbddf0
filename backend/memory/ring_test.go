package memory

import (
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestRingModel checks the ring against a slice under random pushes and pops, long
// enough runs included to make it grow and shrink.
func TestRingModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var r ring[int]
		var want []int
		next := 0
		rt.Repeat(map[string]func(*rapid.T){
			"pushBack": func(rt *rapid.T) {
				for range rapid.IntRange(1, 300).Draw(rt, "n") {
					r.pushBack(next)
					want = append(want, next)
					next++
				}
			},
			"pushFront": func(rt *rapid.T) {
				r.pushFront(next)
				want = slices.Insert(want, 0, next)
				next++
			},
			"popFront": func(rt *rapid.T) {
				n := rapid.IntRange(1, 300).Draw(rt, "n")
				for range min(n, len(want)) {
					if got := r.popFront(); got != want[0] {
						rt.Fatalf("popFront() = %d, want %d", got, want[0])
					}
					want = want[1:]
				}
			},
			"clear": func(rt *rapid.T) {
				r.clear()
				want = nil
			},
			"": func(rt *rapid.T) {
				if r.len() != len(want) {
					rt.Fatalf("len() = %d, want %d", r.len(), len(want))
				}
				for i, w := range want {
					if got := r.at(i); got != w {
						rt.Fatalf("at(%d) = %d, want %d", i, got, w)
					}
				}
				if n := len(r.buf); n&(n-1) != 0 || n < r.n {
					rt.Fatalf("buffer of %d for %d elements, want a power of two that holds them", n, r.n)
				}
			},
		})
	})
}

// TestRingShrinks checks that a ring gives memory back after a burst but not while it
// fills and drains in steady batches.
func TestRingShrinks(t *testing.T) {
	var r ring[int]
	for i := range 100_000 {
		r.pushBack(i)
	}
	for r.len() > 10 {
		r.popFront()
	}
	for range 50_000 {
		r.pushBack(0)
		r.popFront()
	}
	if len(r.buf) > ringMin {
		t.Errorf("buffer of %d for %d elements after the burst drained, want it shrunk", len(r.buf), r.len())
	}
	before := len(r.buf)
	grows := 0
	for range 1000 {
		for range 100 {
			r.pushBack(0)
		}
		if len(r.buf) != before {
			grows++
			before = len(r.buf)
		}
		for range 100 {
			r.popFront()
		}
	}
	if grows > 1 {
		t.Errorf("the buffer was reallocated %d times over 1000 batches of 100, want at most once", grows)
	}
}

func TestScheduleOrder(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var s schedule
		var order uint64
		var want []scheduled
		for _, at := range rapid.SliceOf(rapid.IntRange(0, 5)).Draw(rt, "at") {
			order++
			v := scheduled{at: epoch.Add(time.Duration(at) * time.Second), order: order}
			s.push(v)
			want = append(want, v)
		}
		slices.SortStableFunc(want, func(a, b scheduled) int { return a.at.Compare(b.at) })
		for i, w := range want {
			if got := s.pop(); !got.at.Equal(w.at) || got.order != w.order {
				rt.Fatalf("pop %d = (%v, %d), want (%v, %d)", i, got.at, got.order, w.at, w.order)
			}
		}
	})
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func FuzzParseReceipt(f *testing.F) {
	f.Add("1.0")
	f.Add("18446744073709551615.4294967295")
	f.Add("")
	f.Add(".")
	f.Add("1-0")
	f.Add("01.0")
	f.Add("1.4294967296")
	f.Add("12.")
	f.Fuzz(func(t *testing.T, r string) {
		seq, idx, ok := parseReceipt(r)
		if !ok {
			return // rejecting a receipt is fine; panicking is not
		}
		if got := string(appendReceipt(nil, seq, idx)); got != r {
			t.Fatalf("parseReceipt(%q) = %d, %d, which formats as %q", r, seq, idx, got)
		}
	})
}

func TestReceiptRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		seq := rapid.Uint64Range(1, 1<<62).Draw(rt, "seq")
		idx := rapid.Uint32().Draw(rt, "idx")
		r := string(appendReceipt(nil, seq, idx))
		if s, i, ok := parseReceipt(r); !ok || s != seq || i != idx {
			rt.Fatalf("parseReceipt(%q) = %d, %d, %v; want %d, %d, true", r, s, i, ok, seq, idx)
		}
	})
}
