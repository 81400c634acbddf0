package necro

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// checkScanAgainstEncodingJSON fails when scanJSON and encoding/json disagree about b:
// for valid UTF-8, scanJSON must accept exactly what json.Valid accepts, and report
// white space exactly when json.Compact would change the text.
func checkScanAgainstEncodingJSON(t testing.TB, b []byte) {
	t.Helper()
	spaced, err := scanJSON(b, maxJSONDepth)
	if !utf8.Valid(b) {
		if err == nil {
			t.Fatalf("scanJSON(%q) accepted invalid UTF-8", b)
		}
		return
	}
	if valid := json.Valid(b); (err == nil) != valid {
		t.Fatalf("scanJSON(%q) = %v, but json.Valid = %v", b, err, valid)
	}
	if err != nil {
		return
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatalf("json.Compact(%q) = %v after json.Valid accepted it", b, err)
	}
	if changed := !bytes.Equal(compact.Bytes(), b); spaced != changed {
		t.Fatalf("scanJSON(%q) spaced = %v, but json.Compact changes it: %v (%q)", b, spaced, changed, compact.Bytes())
	}
}

func TestScanJSON(t *testing.T) {
	tests := []struct {
		in     string
		valid  bool
		spaced bool
	}{
		{`{}`, true, false},
		{`[]`, true, false},
		{`{ }`, true, true},
		{`[ ]`, true, true},
		{` {}`, true, true},
		{"{}\n", true, true},
		{`{"a":1}`, true, false},
		{`{"a" :1}`, true, true},
		{`{"a": 1}`, true, true},
		{`{"a":1 }`, true, true},
		{`{"a":1, "b":2}`, true, true},
		{`{"a b":"c d"}`, true, false},
		{`[1,2.5,-0,-0.0e+1,1E-9,0.1,true,false,null,"",{},[]]`, true, false},
		{`"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDD25"`, true, false},
		{`"\ud800"`, true, false}, // a lone surrogate escape is syntax encoding/json accepts
		{"\"\u2028é🔥\"", true, false},
		{`0`, true, false},
		{`-1`, true, false},
		{`1e5`, true, false},
		{``, false, false},
		{` `, false, false},
		{`{`, false, false},
		{`}`, false, false},
		{`{"a"}`, false, false},
		{`{"a":}`, false, false},
		{`{"a":1,}`, false, false},
		{`[1,]`, false, false},
		{`[,1]`, false, false},
		{`{,}`, false, false},
		{`{1:2}`, false, false},
		{`{'a':1}`, false, false},
		{`[1 2]`, false, false},
		{`{"a":1}{}`, false, false},
		{`{"a":1} x`, false, false},
		{`[}`, false, false},
		{`{]`, false, false},
		{`01`, false, false},
		{`-`, false, false},
		{`1.`, false, false},
		{`.5`, false, false},
		{`1e`, false, false},
		{`1e+`, false, false},
		{`+1`, false, false},
		{`NaN`, false, false},
		{`Infinity`, false, false},
		{`-Infinity`, false, false},
		{`tru`, false, false},
		{`nul`, false, false},
		{`True`, false, false},
		{`"abc`, false, false},
		{`"\q"`, false, false},
		{`"\u12"`, false, false},
		{`"\u12g4"`, false, false},
		{"\"\x01\"", false, false},
		{"\"\x7f\"", true, false},
		{"\"\xff\"", false, false},
		{"\ufeff{}", false, false},
		{"{}\x00", false, false},
		{"\v{}", false, false},
	}
	for _, tt := range tests {
		spaced, err := scanJSON([]byte(tt.in), maxJSONDepth)
		if (err == nil) != tt.valid || (err == nil && spaced != tt.spaced) {
			t.Errorf("scanJSON(%q) = %v, %v; want valid %v, spaced %v", tt.in, spaced, err, tt.valid, tt.spaced)
		}
		checkScanAgainstEncodingJSON(t, []byte(tt.in))
	}
}

func TestScanJSONDepthMatchesEncodingJSON(t *testing.T) {
	for _, depth := range []int{1, 2, 100, maxJSONDepth - 1, maxJSONDepth, maxJSONDepth + 1, 3 * maxJSONDepth} {
		for _, b := range [][]byte{
			[]byte(strings.Repeat("[", depth) + strings.Repeat("]", depth)),
			[]byte(strings.Repeat(`{"a":`, depth-1) + "{ }" + strings.Repeat("}", depth-1)),
			[]byte(strings.Repeat(`[{"a":`, depth/2) + "1" + strings.Repeat("}]", depth/2)),
		} {
			checkScanAgainstEncodingJSON(t, b)
		}
	}
	deep := []byte(strings.Repeat("[", 11) + strings.Repeat("]", 11))
	if _, err := scanJSON(deep, 10); err == nil || !strings.Contains(err.Error(), "deep") {
		t.Errorf("scanJSON(11 levels, limit 10) = %v, want an error about depth", err)
	}
	if _, err := scanJSON(deep[1:len(deep)-1], 10); err != nil {
		t.Errorf("scanJSON(10 levels, limit 10) = %v, want accepted", err)
	}
}

// jsonTokens are fragments, valid and broken, that random texts are made of.
var jsonTokens = []string{
	"{", "}", "[", "]", ",", ":", `"a"`, `"k"`, `""`, `"\u00e9"`, `"\ud83d\udd25"`, `"\n"`, `"\"`, `"`, `\`,
	"0", "1", "-1", "12.5", "-0.0e+3", "1E9", "01", "-", "1.", ".5", "1e", "+1",
	"true", "false", "null", "tru", "nul", "NaN", "Infinity",
	" ", "\n", "\t", "\r", "\v", "\x00", "\x01", "é", "🔥", "\u2028", "x",
}

func TestScanJSONMatchesEncodingJSONOnFragments(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		parts := rapid.SliceOfN(rapid.SampledFrom(jsonTokens), 0, 24).Draw(rt, "tokens")
		checkScanAgainstEncodingJSON(t, []byte(strings.Join(parts, "")))
	})
}

// genJSON draws a valid JSON value of bounded depth, with white space between tokens
// when the draws ask for it.
func genJSON(rt *rapid.T, depth int) string {
	ws := func() string {
		return rapid.SampledFrom([]string{"", "", "", " ", "\n  ", "\t", "\r\n"}).Draw(rt, "space")
	}
	kind := rapid.IntRange(0, 6).Draw(rt, "kind")
	if depth == 0 && kind >= 5 {
		kind = 0
	}
	switch kind {
	case 0:
		return rapid.SampledFrom([]string{"null", "true", "false"}).Draw(rt, "literal")
	case 1:
		return rapid.StringMatching(`-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?`).Draw(rt, "number")
	case 2, 3:
		s := rapid.String().Draw(rt, "string")
		b, _ := json.Marshal(s)
		return string(b)
	case 4:
		return `"` + rapid.StringMatching(`(\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}|[a-z ])*`).Draw(rt, "escapes") + `"`
	case 5:
		n := rapid.IntRange(0, 4).Draw(rt, "len")
		parts := make([]string, n)
		for i := range parts {
			parts[i] = ws() + genJSON(rt, depth-1) + ws()
		}
		return "[" + ws() + strings.Join(parts, ",") + "]"
	default:
		n := rapid.IntRange(0, 4).Draw(rt, "len")
		parts := make([]string, n)
		for i := range parts {
			k, _ := json.Marshal(rapid.StringN(0, 5, -1).Draw(rt, "key"))
			parts[i] = ws() + string(k) + ws() + ":" + ws() + genJSON(rt, depth-1) + ws()
		}
		return "{" + ws() + strings.Join(parts, ",") + "}"
	}
}

func TestScanJSONMatchesEncodingJSONOnValues(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		b := []byte(genJSON(rt, 4))
		if !json.Valid(b) {
			rt.Fatalf("generator made invalid JSON %q", b)
		}
		checkScanAgainstEncodingJSON(t, b)
		// A single-byte change usually breaks the text; the verdicts must still agree.
		if len(b) > 0 {
			i := rapid.IntRange(0, len(b)-1).Draw(rt, "at")
			c := rapid.SampledFrom([]byte(`{}[],:" \\0-.eE+tfnx`)).Draw(rt, "byte")
			mutated := append(append(append([]byte(nil), b[:i]...), c), b[i+1:]...)
			checkScanAgainstEncodingJSON(t, mutated)
			checkScanAgainstEncodingJSON(t, b[:i])
		}
	})
}

func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{ "a" : [1, 2.5e-3, "x\u00e9"], "b": null }`, `[`, `"\ud83d\udd25"`, `-0.0E+1`,
		`{"a":1}{}`, "\xff", `NaN`, strings.Repeat("[", 20) + strings.Repeat("]", 20)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkScanAgainstEncodingJSON(t, b)
	})
}

func TestScanValueStopsAfterTheValue(t *testing.T) {
	tests := []struct {
		in     string
		at     int
		end    int
		spaced bool
	}{
		{`{"a":1}, "b"`, 0, 7, false},
		{`x: { "a" : [1] } }`, 2, 16, true},
		{`[1,2]]`, 0, 5, false},
		{`"s" ,`, 0, 3, false},
		{`12.5e3}`, 0, 6, false},
		{` null `, 0, 5, true},
	}
	for _, tt := range tests {
		end, spaced, err := scanValue([]byte(tt.in), tt.at, maxJSONDepth)
		if err != nil || end != tt.end || spaced != tt.spaced {
			t.Errorf("scanValue(%q, %d) = %d, %v, %v; want %d, %v, nil", tt.in, tt.at, end, spaced, err, tt.end, tt.spaced)
		}
	}
	if _, _, err := scanValue([]byte(`{"a":`), 0, maxJSONDepth); err == nil {
		t.Error(`scanValue({"a":) accepted a truncated object`)
	}
}

func TestSkipPlainMatchesByteLoop(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		b := rapid.SliceOfN(rapid.SampledFrom([]byte("ab \x00\x1f\x20\"\\\x7f\x80\xff")), 0, 40).Draw(rt, "b")
		i := rapid.IntRange(0, len(b)).Draw(rt, "i")
		want := i
		for want < len(b) && plainStringByte[b[want]] {
			want++
		}
		if got := skipPlain(b, i); got != want {
			rt.Fatalf("skipPlain(%q, %d) = %d, want %d", b, i, got, want)
		}
	})
}
