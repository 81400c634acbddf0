package supervision

import (
	"errors"
	"hash/fnv"
	"math"
	"math/big"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestBackoffDelayWithoutJitter(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		n    int
		want time.Duration
	}{
		{"zero value first failure", Backoff{Jitter: NoJitter}, 1, 10 * time.Millisecond},
		{"zero value doubles", Backoff{Jitter: NoJitter}, 4, 80 * time.Millisecond},
		{"zero value caps at 10s", Backoff{Jitter: NoJitter}, 11, 10 * time.Second},
		{"n zero counts as first", Backoff{Base: time.Second, Jitter: NoJitter}, 0, time.Second},
		{"negative n counts as first", Backoff{Base: time.Second, Jitter: NoJitter}, -5, time.Second},
		{"just below the cap", Backoff{Base: time.Second, Max: 8 * time.Second, Jitter: NoJitter}, 4, 8 * time.Second},
		{"just past the cap", Backoff{Base: time.Second, Max: 7 * time.Second, Jitter: NoJitter}, 4, 7 * time.Second},
		{"shift of 62", Backoff{Base: 1, Max: math.MaxInt64, Jitter: NoJitter}, 63, 1 << 62},
		{"shift of 63 would overflow", Backoff{Base: 1, Max: math.MaxInt64, Jitter: NoJitter}, 64, math.MaxInt64},
		{"huge n", Backoff{Base: time.Second, Max: time.Hour, Jitter: NoJitter}, math.MaxInt, time.Hour},
		{"base past the default max", Backoff{Base: time.Minute, Jitter: NoJitter}, 3, time.Minute},
		{"max below base is raised to base", Backoff{Base: time.Minute, Max: time.Second, Jitter: NoJitter}, 1, time.Minute},
		{"base equals max", Backoff{Base: time.Second, Max: time.Second, Jitter: NoJitter}, 5, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Delay(tt.n, 42); got != tt.want {
				t.Errorf("%+v.Delay(%d) = %v, want %v", tt.b, tt.n, got, tt.want)
			}
		})
	}
}

func TestBackoffDelayIsMonotoneWithoutJitter(t *testing.T) {
	for _, b := range []Backoff{
		{Jitter: NoJitter},
		{Base: time.Nanosecond, Max: math.MaxInt64, Jitter: NoJitter},
		{Base: 3 * time.Millisecond, Max: time.Second, Jitter: NoJitter},
	} {
		prev := time.Duration(0)
		for n := 1; n <= 200; n++ {
			d := b.Delay(n, uint64(n))
			if d < prev {
				t.Fatalf("%+v: Delay(%d) = %v, below Delay(%d) = %v", b, n, d, n-1, prev)
			}
			prev = d
		}
	}
}

func TestBackoffJitterSpreadsDelays(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Second, Jitter: 0.5}
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for seed := range uint64(10_000) {
		d := b.Delay(1, seed)
		lo, hi = min(lo, d), max(hi, d)
	}
	// 10,000 uniform draws land within 1% of both ends of [0.5s, 1s] with near certainty.
	if lo < 500*time.Millisecond || lo > 505*time.Millisecond || hi > time.Second || hi < 995*time.Millisecond {
		t.Errorf("delays over 10,000 seeds span [%v, %v], want about [500ms, 1s]", lo, hi)
	}
	if b.Delay(1, 7) == b.Delay(2, 7) && b.Delay(2, 7) == b.Delay(3, 7) {
		t.Errorf("Delay(n, 7) = %v for n = 1, 2, 3: jitter ignores n", b.Delay(1, 7))
	}
}

func TestBackoffDelayProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := Backoff{
			Base:   time.Duration(rapid.Int64Range(0, math.MaxInt64).Draw(t, "base")),
			Max:    time.Duration(rapid.Int64Range(0, math.MaxInt64).Draw(t, "max")),
			Jitter: rapid.Float64Range(0, 1).Draw(t, "jitter"),
		}
		if b.Max != 0 && b.Max < b.Base {
			b.Base, b.Max = b.Max, b.Base
		}
		n := rapid.IntRange(-3, 200).Draw(t, "n")
		seed := rapid.Uint64().Draw(t, "seed")
		if err := b.Validate(); err != nil {
			t.Fatalf("%+v.Validate() = %v, want nil", b, err)
		}

		base, maxDelay, jitter := b.resolved()
		nominal := maxDelay // min(Max, Base·2^(n−1)), computed in big integers
		exact := new(big.Int).Lsh(big.NewInt(int64(base)), uint(max(n, 1)-1))
		if exact.Cmp(big.NewInt(int64(maxDelay))) < 0 {
			nominal = time.Duration(exact.Int64())
		}
		got := b.Delay(n, seed)
		if got <= 0 || got > maxDelay {
			t.Fatalf("%+v.Delay(%d, %d) = %v, want in (0, %v]", b, n, seed, got, maxDelay)
		}
		if got > nominal {
			t.Fatalf("%+v.Delay(%d, %d) = %v, above the unjittered %v", b, n, seed, got, nominal)
		}
		if low := (1 - jitter) * float64(nominal); float64(got) < low*(1-1e-12)-1 {
			t.Fatalf("%+v.Delay(%d, %d) = %v, below (1−%v)·%v = %v", b, n, seed, got, jitter, nominal, low)
		}
		if again := b.Delay(n, seed); again != got {
			t.Fatalf("%+v.Delay(%d, %d) = %v, then %v", b, n, seed, got, again)
		}
	})
}

func TestBackoffDelayDoesNotAllocate(t *testing.T) {
	b := Backoff{}
	if allocs := testing.AllocsPerRun(100, func() { _ = b.Delay(7, Seed("event")) }); allocs != 0 {
		t.Errorf("Delay allocates %v times per call, want 0", allocs)
	}
}

func TestBackoffValidate(t *testing.T) {
	tests := []struct {
		name    string
		b       Backoff
		wantErr error
	}{
		{"zero value is valid", Backoff{}, nil},
		{"no jitter", Backoff{Jitter: NoJitter}, nil},
		{"full jitter", Backoff{Jitter: 1}, nil},
		{"base above the default max", Backoff{Base: time.Minute}, nil},
		{"base equals max", Backoff{Base: time.Second, Max: time.Second}, nil},
		{"negative base", Backoff{Base: -time.Second}, ErrInvalidPolicy},
		{"negative max", Backoff{Max: -time.Second}, ErrInvalidPolicy},
		{"max below base", Backoff{Base: time.Second, Max: time.Millisecond}, ErrInvalidPolicy},
		{"jitter above one", Backoff{Jitter: 1.5}, ErrInvalidPolicy},
		{"negative jitter", Backoff{Jitter: -0.1}, ErrInvalidPolicy},
		{"NaN jitter", Backoff{Jitter: math.NaN()}, ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.b.Validate(); !errors.Is(err, tt.wantErr) {
				t.Errorf("%+v.Validate() = %v, want %v", tt.b, err, tt.wantErr)
			}
		})
	}
}

func TestInvalidBackoffStillDelays(t *testing.T) {
	for _, b := range []Backoff{
		{Base: -time.Second, Max: -time.Second, Jitter: math.NaN()},
		{Jitter: 7},
		{Jitter: -0.5},
	} {
		if d := b.Delay(3, 1); d <= 0 || d > defaultMax {
			t.Errorf("%+v.Delay(3, 1) = %v, want in (0, %v]", b, d, defaultMax)
		}
	}
}

func TestSeedIsFNV1a(t *testing.T) {
	for _, s := range []string{"", "a", "foobar", "01JD6W8ZC4Q1V9E7T0R2M3N5P6", "ünïcode"} {
		h := fnv.New64a()
		_, _ = h.Write([]byte(s)) // a hash.Hash never returns an error
		if got, want := Seed(s), h.Sum64(); got != want {
			t.Errorf("Seed(%q) = %#x, want %#x", s, got, want)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = Seed("01JD6W8ZC4Q1V9E7T0R2M3N5P6") }); allocs != 0 {
		t.Errorf("Seed allocates %v times per call, want 0", allocs)
	}
}
