package supervision

import (
	"errors"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// steady is a OneForOne without jitter, so delays are exact.
var steady = OneForOne{MaxRestarts: 3, Window: time.Minute, Backoff: Backoff{Jitter: NoJitter}}

// decideAll feeds failures at the given offsets from t0 to p and returns the decisions.
func decideAll(t *testing.T, p OneForOne, h *History, offsets ...time.Duration) []Decision {
	t.Helper()
	var got []Decision
	for _, off := range offsets {
		got = append(got, p.Decide(h, t0.Add(off), 1))
	}
	return got
}

func restart(d time.Duration) Decision    { return Decision{Directive: Restart, Delay: d} }
func quarantine(d time.Duration) Decision { return Decision{Directive: Quarantine, Delay: d} }

func TestOneForOneDecide(t *testing.T) {
	ms, s := time.Millisecond, time.Second
	tests := []struct {
		name    string
		p       OneForOne
		offsets []time.Duration
		want    []Decision
	}{
		{"restarts back off within the window", steady,
			[]time.Duration{0, s, 2 * s},
			[]Decision{restart(10 * ms), restart(20 * ms), restart(40 * ms)}},
		{"one failure past max restarts quarantines", steady,
			[]time.Duration{0, s, 2 * s, 3 * s},
			[]Decision{restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(5 * s)}},
		{"failures outside the window do not count", steady,
			[]time.Duration{0, 61 * s, 122 * s, 183 * s, 244 * s},
			[]Decision{restart(10 * ms), restart(10 * ms), restart(10 * ms), restart(10 * ms), restart(10 * ms)}},
		{"a failure exactly one window old has left it", steady,
			[]time.Duration{0, 30 * s, 40 * s, 60 * s},
			[]Decision{restart(10 * ms), restart(20 * ms), restart(40 * ms), restart(40 * ms)}},
		{"a failure just under one window old still counts", steady,
			[]time.Duration{0, 30 * s, 40 * s, 60*s - 1},
			[]Decision{restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(5 * s)}},
		{"the window slides", steady,
			[]time.Duration{0, 50 * s, 55 * s, 70 * s, 111 * s, 114 * s},
			[]Decision{restart(10 * ms), restart(20 * ms), restart(40 * ms), restart(40 * ms), restart(40 * ms), quarantine(5 * s)}},
		{"quarantine clears the history", steady,
			[]time.Duration{0, 1 * s, 2 * s, 3 * s, 10 * s, 11 * s},
			[]Decision{restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(5 * s), restart(10 * ms), restart(20 * ms)}},
		{"consecutive quarantines double", steady,
			[]time.Duration{0, 0, 0, 0, 10 * s, 10 * s, 10 * s, 10 * s, 30 * s, 30 * s, 30 * s, 30 * s},
			[]Decision{
				restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(5 * s),
				restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(10 * s),
				restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(20 * s),
			}},
		{"a window after release ends the streak", steady,
			// released at 5s; the next quarantine begins at 65s, a full window later.
			[]time.Duration{0, 0, 0, 0, 65 * s, 65 * s, 65 * s, 65 * s},
			[]Decision{
				restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(5 * s),
				restart(10 * ms), restart(20 * ms), restart(40 * ms), quarantine(5 * s),
			}},
		{"quarantine is capped",
			OneForOne{MaxRestarts: 1, Window: time.Hour, Backoff: Backoff{Jitter: NoJitter}, Quarantine: 40 * s, MaxQuarantine: time.Minute},
			[]time.Duration{0, 0, 0, 0, 0, 0},
			[]Decision{restart(10 * ms), quarantine(40 * s), restart(10 * ms), quarantine(time.Minute), restart(10 * ms), quarantine(time.Minute)}},
		{"zero value allows ten restarts a minute",
			OneForOne{Backoff: Backoff{Jitter: NoJitter}},
			[]time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 59 * s, 59 * s},
			[]Decision{
				restart(10 * ms), restart(20 * ms), restart(40 * ms), restart(80 * ms), restart(160 * ms),
				restart(320 * ms), restart(640 * ms), restart(1280 * ms), restart(2560 * ms), restart(5120 * ms),
				quarantine(5 * s),
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h History
			got := decideAll(t, tt.p, &h, tt.offsets...)
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Fatalf("failures at %v: decision %d = %v, want %v (all: %v)", tt.offsets, i, got[i], tt.want[i], got)
				}
			}
		})
	}
}

func TestOneForOneJitteredDelaysStayInBounds(t *testing.T) {
	p := OneForOne{MaxRestarts: 3, Window: time.Minute, Backoff: Backoff{Jitter: 0.5}}
	for seed := range uint64(1000) {
		var h History
		for i, want := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 5 * time.Second} {
			d := p.Decide(&h, t0, seed)
			if d.Delay > want || d.Delay < want/2 {
				t.Fatalf("seed %d, failure %d: %v, want a delay in [%v, %v]", seed, i+1, d, want/2, want)
			}
		}
	}
}

func TestOneForOneFailuresAndQuarantines(t *testing.T) {
	var h History
	decideAll(t, steady, &h, 0, 10*time.Second, 20*time.Second)
	if got := steady.Failures(&h, t0.Add(65*time.Second)); got != 2 {
		t.Errorf("Failures 65s after failures at 0s, 10s, 20s = %d, want 2", got)
	}
	if got := h.Quarantines(); got != 0 {
		t.Errorf("Quarantines() = %d before any quarantine, want 0", got)
	}
	steady.Decide(&h, t0.Add(21*time.Second), 1)
	if got, fails := h.Quarantines(), steady.Failures(&h, t0.Add(21*time.Second)); got != 1 || fails != 0 {
		t.Errorf("after the fourth failure: Quarantines() = %d, Failures = %d; want 1 and 0", got, fails)
	}
}

func TestHistoryFollowsAChangedPolicy(t *testing.T) {
	var h History
	wide := OneForOne{MaxRestarts: 5, Window: time.Minute, Backoff: Backoff{Jitter: NoJitter}}
	narrow := OneForOne{MaxRestarts: 2, Window: time.Minute, Backoff: Backoff{Jitter: NoJitter}}
	decideAll(t, wide, &h, 0, time.Second, 2*time.Second, 3*time.Second)
	// The ring shrinks to narrow's 3 slots, keeping the latest failures: 2s, 3s and 4s.
	if got := narrow.Decide(&h, t0.Add(4*time.Second), 1); got != quarantine(5*time.Second) {
		t.Errorf("narrowed policy after 5 failures in 4s: %v, want quarantine for 5s", got)
	}
	decideAll(t, narrow, &h, 10*time.Second, 11*time.Second)
	if got := wide.Decide(&h, t0.Add(12*time.Second), 1); got != restart(40*time.Millisecond) {
		t.Errorf("widened policy, third failure since quarantine: %v, want restart after 40ms", got)
	}
}

func TestOneForOneDecideDoesNotAllocate(t *testing.T) {
	var h History
	p := OneForOne{}
	now := t0
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		_ = p.Decide(&h, now, 5)
	})
	if allocs != 0 {
		t.Errorf("Decide allocates %v times per call once the history has its ring, want 0", allocs)
	}
}

// TestOneForOneMatchesModel checks Decide against a model that keeps every failure
// since the last quarantine and the end of every quarantine.
func TestOneForOneMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := OneForOne{
			MaxRestarts: rapid.IntRange(1, 6).Draw(t, "maxRestarts"),
			Window:      time.Duration(rapid.IntRange(1, 120).Draw(t, "windowSeconds")) * time.Second,
			Backoff:     Backoff{Base: time.Millisecond, Max: 64 * time.Millisecond, Jitter: NoJitter},
			Quarantine:  time.Second,
		}
		var (
			h        History
			now      = t0
			failures []time.Time // since the last quarantine
			streak   int
			released time.Time
		)
		for i := range rapid.IntRange(1, 60).Draw(t, "failures") {
			now = now.Add(time.Duration(rapid.IntRange(0, 90_000).Draw(t, "gapMillis")) * time.Millisecond)
			failures = append(failures, now)
			k := 0
			for _, f := range failures {
				if now.Sub(f) < p.Window {
					k++
				}
			}
			want := restart(p.Backoff.Delay(k, 0))
			if k > p.MaxRestarts {
				if streak == 0 || now.Sub(released) >= p.Window {
					streak = 0
				}
				streak++
				want = quarantine(min(time.Duration(1<<(streak-1))*time.Second, p.resolved().MaxQuarantine))
				released, failures = now.Add(want.Delay), nil
			}
			if got := p.Decide(&h, now, 0); got != want {
				t.Fatalf("failure %d at %v: %v, want %v", i, now.Sub(t0), got, want)
			}
		}
	})
}

func TestOneForOneValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       OneForOne
		wantErr error
	}{
		{"zero value is valid", OneForOne{}, nil},
		{"style guide example", OneForOne{MaxRestarts: 3, Window: time.Minute}, nil},
		{"quarantine above the default max", OneForOne{Quarantine: time.Hour}, nil},
		{"negative restarts", OneForOne{MaxRestarts: -1}, ErrInvalidPolicy},
		{"negative window", OneForOne{Window: -time.Second}, ErrInvalidPolicy},
		{"negative quarantine", OneForOne{Quarantine: -time.Second}, ErrInvalidPolicy},
		{"negative max quarantine", OneForOne{MaxQuarantine: -time.Second}, ErrInvalidPolicy},
		{"max quarantine below quarantine", OneForOne{Quarantine: time.Minute, MaxQuarantine: time.Second}, ErrInvalidPolicy},
		{"invalid backoff", OneForOne{Backoff: Backoff{Base: -1}}, ErrInvalidPolicy},
		// 10ms + 20ms + … + 5.12s = 10.23s of restart delays.
		{"window holds the restart delays", OneForOne{Window: 10231 * time.Millisecond}, nil},
		{"window equals the restart delays", OneForOne{Window: 10230 * time.Millisecond}, ErrInvalidPolicy},
		// 1s + 2s + 4s + 8s + 6×10s = 75s.
		{"capped delays fit", OneForOne{Backoff: Backoff{Base: time.Second}, Window: 76 * time.Second}, nil},
		{"capped delays overflow the window", OneForOne{Backoff: Backoff{Base: time.Second}, Window: 75 * time.Second}, ErrInvalidPolicy},
		{"huge restart count", OneForOne{MaxRestarts: math.MaxInt, Window: time.Hour}, ErrInvalidPolicy},
		{"huge window", OneForOne{MaxRestarts: 1 << 20, Window: math.MaxInt64}, nil},
		{"restart delays past the largest duration", OneForOne{MaxRestarts: 1 << 40, Window: math.MaxInt64}, ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); !errors.Is(err, tt.wantErr) {
				t.Errorf("%+v.Validate() = %v, want %v", tt.p, err, tt.wantErr)
			}
		})
	}
}

func TestDirectiveString(t *testing.T) {
	for d, want := range map[Directive]string{Restart: "restart", Quarantine: "quarantine", 0: "Directive(0)"} {
		if got := d.String(); got != want {
			t.Errorf("Directive(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}
