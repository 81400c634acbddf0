package necro

import (
	"regexp"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestLowerIDMatchesPattern(t *testing.T) {
	v4 := regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$`)
	valid := rapid.StringMatching(v4.String())
	rapid.Check(t, func(rt *rapid.T) {
		s := []byte(valid.Draw(rt, "id"))
		// Most of the time, break it: a byte changed, dropped or added.
		switch rapid.IntRange(0, 3).Draw(rt, "change") {
		case 1:
			s[rapid.IntRange(0, len(s)-1).Draw(rt, "at")] = rapid.SampledFrom([]byte("0aAfFgG-4789bBcC\x00\xff")).Draw(rt, "byte")
		case 2:
			i := rapid.IntRange(0, len(s)-1).Draw(rt, "at")
			s = append(s[:i], s[i+1:]...)
		case 3:
			s = append(s, 'a')
		}
		var b [36]byte
		err := lowerID(&b, "id", s)
		if want := v4.Match(s); (err == nil) != want {
			rt.Fatalf("lowerID(%q) = %v, want accepted %v", s, err, want)
		}
		if err == nil && string(b[:]) != strings.ToLower(string(s)) {
			rt.Fatalf("lowerID(%q) wrote %q, want it lowercase", s, b[:])
		}
		if got, err2 := parseID("id", string(s)); (err2 == nil) != (err == nil) || err != nil && err.Error() != err2.Error() ||
			err == nil && got != string(b[:]) {
			rt.Fatalf("parseID(%q) = %q, %v; lowerID gives %q, %v", s, got, err2, b[:], err)
		}
	})
}
