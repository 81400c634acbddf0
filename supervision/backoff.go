package supervision

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// ErrInvalidPolicy reports a policy that breaks a rule; Validate wraps it with the field
// at fault.
var ErrInvalidPolicy = errors.New("supervision: invalid policy")

// NoJitter as [Backoff.Jitter] turns jitter off, so every delay is exactly
// Base·2^(n−1), capped at Max.
const NoJitter = -1.0

// Defaults of a zero [Backoff].
const (
	defaultBase   = 10 * time.Millisecond
	defaultMax    = 10 * time.Second
	defaultJitter = 0.2
)

// A Backoff spaces out repeated attempts: the n-th consecutive failure waits
// Base·2^(n−1), capped at Max, minus a random share of at most Jitter of that delay.
// The zero value is ready to use: 10ms doubling up to 10s with 20% jitter.
type Backoff struct {
	// Base is the delay after the first failure. Zero means 10ms.
	Base time.Duration
	// Max caps every delay. Zero means 10s, or Base when Base is larger.
	Max time.Duration
	// Jitter is the fraction of each delay that is randomised, in [0, 1]: a delay d
	// becomes d·(1 − Jitter·u) with u in [0, 1). Spreading retries apart keeps organs
	// that failed together from retrying together. Zero means 0.2; [NoJitter] turns it off.
	Jitter float64
}

// Validate reports a negative Base or Max, a Max below Base, or a Jitter outside
// [0, 1] other than [NoJitter], with an error wrapping [ErrInvalidPolicy].
func (b Backoff) Validate() error {
	switch {
	case b.Base < 0:
		return fmt.Errorf("backoff base %v is negative: %w", b.Base, ErrInvalidPolicy)
	case b.Max < 0:
		return fmt.Errorf("backoff max %v is negative: %w", b.Max, ErrInvalidPolicy)
	case b.Max > 0 && b.Max < b.Base:
		return fmt.Errorf("backoff max %v is below base %v: %w", b.Max, b.Base, ErrInvalidPolicy)
	case b.Jitter != NoJitter && !(b.Jitter >= 0 && b.Jitter <= 1): // also catches NaN
		return fmt.Errorf("backoff jitter %v is outside [0, 1]: %w", b.Jitter, ErrInvalidPolicy)
	}
	return nil
}

// resolved returns the settings Delay uses: defaults for zero fields, and the nearest
// valid value for a field that Validate would reject, so Delay never fails.
func (b Backoff) resolved() (base, maxDelay time.Duration, jitter float64) {
	base, maxDelay, jitter = b.Base, b.Max, b.Jitter
	if base <= 0 {
		base = defaultBase
	}
	if maxDelay <= 0 {
		maxDelay = max(defaultMax, base)
	}
	maxDelay = max(maxDelay, base)
	switch {
	case jitter == NoJitter:
		jitter = 0
	case jitter == 0 || math.IsNaN(jitter):
		jitter = defaultJitter
	}
	return base, maxDelay, min(max(jitter, 0), 1)
}

// Delay returns how long to wait after the n-th consecutive failure (n counts from 1;
// smaller n count as 1): Base·2^(n−1), capped at Max and safe from overflow for any n,
// less a share Jitter·u of itself, where u in [0, 1) is derived from seed and n alone.
// The result lies in [(1−Jitter)·d, d] for that capped d and is never below 1ns.
//
// Delay is a pure function: the same Backoff, n and seed always give the same delay.
// Pass a seed that differs between the things being retried, such as [Seed] of the
// event id, so that their retries spread out. It does not allocate.
func (b Backoff) Delay(n int, seed uint64) time.Duration {
	base, maxDelay, jitter := b.resolved()
	shift := max(n, 1) - 1
	d := maxDelay
	// base > maxDelay>>shift means base<<shift would pass maxDelay (or overflow).
	if shift < 63 && base <= maxDelay>>shift {
		d = base << shift
	}
	if jitter == 0 {
		return d
	}
	// u = r/2^53 with r the top 53 bits of the n-th splitmix64 output after seed. The
	// cut d·jitter·u is computed as (d·⌊jitter·r⌋) >> 53 in 128 bits: it stays exact
	// for any d, never exceeds d·jitter, and is below d, so the delay is at least 1ns.
	r := splitmix64(seed+uint64(shift+1)*golden) >> 11
	hi, lo := bits.Mul64(uint64(d), uint64(jitter*float64(r)))
	return d - time.Duration(hi<<11|lo>>53)
}

// golden is the splitmix64 increment, 2^64 divided by the golden ratio.
const golden = 0x9e3779b97f4a7c15

// splitmix64 is the output function of Vigna's SplitMix64 generator: a bijection on
// uint64 that scatters nearby inputs across the whole range.
func splitmix64(x uint64) uint64 {
	x += golden
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Seed hashes s with 64-bit FNV-1a, turning an event id or an organ name into a seed
// for [Backoff.Delay]. It does not allocate.
func Seed(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := range len(s) {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
