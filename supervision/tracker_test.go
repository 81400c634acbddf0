package supervision

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"
)

func TestRetryTrackerCountsPerEventAndOrgan(t *testing.T) {
	tr := NewRetryTracker(10, time.Minute)
	steps := []struct {
		op           string // "fail", "count" or "forget"
		event, organ string
		want         int
	}{
		{"count", "e1", "billing", 0},
		{"fail", "e1", "billing", 1},
		{"fail", "e1", "billing", 2},
		{"fail", "e1", "shipping", 1},
		{"fail", "e2", "billing", 1},
		{"count", "e1", "billing", 2},
		{"forget", "e1", "billing", 0},
		{"count", "e1", "billing", 0},
		{"count", "e1", "shipping", 1},
		{"fail", "e1", "billing", 1},
		// The pair is a struct, not a joined string: these two must not collide.
		{"fail", "e1b", "illing", 1},
	}
	for i, s := range steps {
		var got int
		switch s.op {
		case "fail":
			got = tr.Fail(s.event, s.organ)
		case "count":
			got = tr.Count(s.event, s.organ)
		case "forget":
			tr.Forget(s.event, s.organ)
			got = tr.Count(s.event, s.organ)
		}
		if got != s.want {
			t.Fatalf("step %d, %s(%q, %q) = %d, want %d", i, s.op, s.event, s.organ, got, s.want)
		}
	}
	if got := tr.Len(); got != 4 {
		t.Errorf("Len() = %d, want 4", got)
	}
}

func TestRetryTrackerStaysBounded(t *testing.T) {
	const size = 1000
	tr := NewRetryTracker(size, time.Hour)
	for i := range 10 * size {
		tr.Fail(strconv.Itoa(i), "billing")
		if n := tr.Len(); n > size {
			t.Fatalf("Len() = %d after %d distinct pairs, want at most %d", n, i+1, size)
		}
	}
	if got := tr.Count("0", "billing"); got != 0 {
		t.Errorf("Count of the least recently failed pair = %d, want 0 (evicted)", got)
	}
	if got := tr.Count(strconv.Itoa(10*size-1), "billing"); got != 1 {
		t.Errorf("Count of the latest pair = %d, want 1", got)
	}
}

func TestRetryTrackerExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewRetryTracker(10, time.Minute)
		tr.Fail("e1", "billing")
		tr.Fail("e2", "billing")
		time.Sleep(59 * time.Second)
		if got := tr.Count("e1", "billing"); got != 1 {
			t.Fatalf("Count 59s after the failure = %d, want 1", got)
		}
		tr.Fail("e2", "billing") // restarts e2's ttl
		time.Sleep(time.Second)
		if got, n := tr.Count("e1", "billing"), tr.Len(); got != 0 || n != 1 {
			t.Fatalf("one ttl after e1's failure: Count = %d, Len() = %d; want 0 and 1", got, n)
		}
		if got := tr.Count("e2", "billing"); got != 2 {
			t.Fatalf("Count of e2, failed again 1s ago = %d, want 2", got)
		}
		time.Sleep(time.Minute)
		if got := tr.Fail("e2", "billing"); got != 1 {
			t.Fatalf("Fail after e2 expired = %d, want 1 (a fresh count)", got)
		}
		if got := tr.Len(); got != 1 {
			t.Fatalf("Len() = %d, want 1", got)
		}
	})
}

func TestRetryTrackerCountsConcurrentFailures(t *testing.T) {
	const workers, each = 8, 500
	tr := NewRetryTracker(0, 0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				tr.Fail("shared", "billing")
				tr.Fail(strconv.Itoa(w), "billing")
				_ = tr.Count("shared", "billing")
				_ = tr.Len()
			}
		})
	}
	wg.Wait()
	if got := tr.Count("shared", "billing"); got != workers*each {
		t.Errorf("Count after %d×%d concurrent failures = %d, want %d", workers, each, got, workers*each)
	}
}

func TestRetryTrackerFailAllocations(t *testing.T) {
	tr := NewRetryTracker(0, 0)
	tr.Fail("01JD6W8ZC4Q1V9E7T0R2M3N5P6", "billing")
	if allocs := testing.AllocsPerRun(100, func() { tr.Fail("01JD6W8ZC4Q1V9E7T0R2M3N5P6", "billing") }); allocs != 0 {
		t.Errorf("Fail of a known pair allocates %v times per call, want 0", allocs)
	}
}

// trackerOp is one step of TestRetryTrackerMatchesModel.
type trackerOp struct {
	kind  string // "fail", "count", "forget" or "sleep"
	key   retryKey
	sleep time.Duration
}

// TestRetryTrackerMatchesModel checks the tracker against a model that keeps every pair
// with its count, expiry and last-failure order, under fake time. rapid draws the
// operations outside the synctest bubble (rapid reads the test's deadline, which a
// bubble forbids); the bubble replays them and returns the first mismatch.
func TestRetryTrackerMatchesModel(t *testing.T) {
	keyGen := rapid.Custom(func(rt *rapid.T) retryKey {
		return retryKey{rapid.SampledFrom([]string{"e1", "e2", "e3"}).Draw(rt, "event"),
			rapid.SampledFrom([]string{"billing", "shipping"}).Draw(rt, "organ")}
	})
	opGen := rapid.Custom(func(rt *rapid.T) trackerOp {
		return trackerOp{
			kind:  rapid.SampledFrom([]string{"fail", "fail", "count", "forget", "sleep"}).Draw(rt, "kind"),
			key:   keyGen.Draw(rt, "key"),
			sleep: time.Duration(rapid.IntRange(1, 90).Draw(rt, "seconds")) * time.Second,
		}
	})
	rapid.Check(t, func(rt *rapid.T) {
		ops := rapid.SliceOfN(opGen, 1, 100).Draw(rt, "ops")
		var mismatch string
		synctest.Test(t, func(*testing.T) { mismatch = replayTracker(ops) })
		if mismatch != "" {
			rt.Fatal(mismatch)
		}
	})
}

// replayTracker runs ops on a tracker of 4 pairs with a one-minute ttl and on a model,
// and describes the first difference, if any.
func replayTracker(ops []trackerOp) string {
	const size, ttl = 4, time.Minute
	type entry struct {
		key     retryKey
		n       int
		expires time.Time
	}
	tr := NewRetryTracker(size, ttl)
	var model []entry // least recently failed first
	find := func(k retryKey) int {
		for i, e := range model {
			if e.key == k {
				return i
			}
		}
		return -1
	}
	for i, o := range ops {
		now := time.Now()
		var live []entry
		for _, e := range model {
			if now.Before(e.expires) {
				live = append(live, e)
			}
		}
		model = live
		got, want := 0, 0
		switch o.kind {
		case "fail":
			e := entry{key: o.key}
			if j := find(o.key); j >= 0 {
				e = model[j]
				model = append(model[:j], model[j+1:]...)
			}
			e.n++
			e.expires = now.Add(ttl)
			if model = append(model, e); len(model) > size {
				model = model[1:]
			}
			got, want = tr.Fail(o.key.event, o.key.organ), e.n
		case "count":
			if j := find(o.key); j >= 0 {
				want = model[j].n
			}
			got = tr.Count(o.key.event, o.key.organ)
		case "forget":
			if j := find(o.key); j >= 0 {
				model = append(model[:j], model[j+1:]...)
			}
			tr.Forget(o.key.event, o.key.organ)
		case "sleep":
			time.Sleep(o.sleep)
			continue
		}
		if got != want {
			return fmt.Sprintf("op %d, %s %v: got %d, want %d", i, o.kind, o.key, got, want)
		}
		if got, want := tr.Len(), len(model); got != want {
			return fmt.Sprintf("after op %d, %s %v: Len() = %d, want %d", i, o.kind, o.key, got, want)
		}
	}
	return ""
}
