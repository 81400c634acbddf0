package necro

import (
	"bytes"
	"encoding/json"
	"testing"

	"pgregory.net/rapid"
)

func TestAppendJSONString(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := rapid.String().Draw(rt, "s")
		b := appendJSONString([]byte("x"), s)
		var back string
		if b[0] != 'x' || json.Unmarshal(b[1:], &back) != nil || back != s {
			rt.Fatalf("appendJSONString(%q) = %q, which reads back as %q", s, b[1:], back)
		}
		if _, err := scanJSON(b[1:], maxJSONDepth); err != nil {
			rt.Fatalf("scanJSON(appendJSONString(%q)) = %v", s, err)
		}
	})
}

func TestAppendCompactMatchesEncodingJSON(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		b := []byte(genJSON(rt, 4))
		var want bytes.Buffer
		if err := json.Compact(&want, b); err != nil {
			rt.Fatalf("json.Compact(%q) = %v", b, err)
		}
		if got := appendCompact([]byte("x"), b); string(got) != "x"+want.String() {
			rt.Fatalf("appendCompact(x, %q) = %q, want x%q", b, got, want.Bytes())
		}
	})
}

func TestAppendMarshaledStringMatchesEncodingJSON(t *testing.T) {
	check := func(t interface {
		Helper()
		Fatalf(string, ...any)
	}, s string) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("json.Marshal(%q) = %v", s, err)
		}
		if got := appendMarshaledString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("appendMarshaledString(x, %q) = %s, want x%s", s, got, want)
		}
	}
	for _, s := range []string{"", "plain", `"\`, "<a href='x'>&amp;</a>", "\b\f\n\r\t\x00\x01\x1f\x7f",
		"\u2028\u2029", "é🔥", "\xff", "a\xe2\x80", "\xed\xa0\x80", "\ufffd"} {
		check(t, s)
	}
	rapid.Check(t, func(rt *rapid.T) {
		check(rt, rapid.String().Draw(rt, "s"))
		check(rt, string(rapid.SliceOf(rapid.Byte()).Draw(rt, "bytes")))
	})
}
