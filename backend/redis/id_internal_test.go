package redis

import "testing"

// idLess orders ids exactly across the whole range of both parts, where a comparison
// through float64 would call neighbours equal.
func TestIDLessExact(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"5-1152921504606847105", "5-1152921504606847106", true}, // 2^60+129 and +130: one double
		{"5-1152921504606847106", "5-1152921504606847105", false},
		{"5-18446744073709551614", "5-18446744073709551615", true}, // 2^64-2 and 2^64-1
		{"5-18446744073709551615", "6-0", true},
		{"18446744073709551615-0", "18446744073709551615-1", true},
		{"9007199254740993-0", "9007199254740992-5", false}, // 2^53+1 and 2^53
		{"0", "0-1", true},
		{"5-1", "5-1", false},
	}
	for _, tt := range tests {
		if got := idLess(tt.a, tt.b); got != tt.want {
			t.Errorf("idLess(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
