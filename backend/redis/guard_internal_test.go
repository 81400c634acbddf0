package redis

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// guardRun feeds data to a fresh guard in the chunks given by cuts (offsets where a
// new chunk starts) and returns how many bytes it let through and its error.
func guardRun(entry, budget int64, data []byte, cuts ...int) (int, error) {
	var rb readBounds
	rb.set(int(entry), int(budget))
	g := newReplyGuard(&rb)
	passed, start := 0, 0
	for _, end := range append(cuts, len(data)) {
		if end < start || end > len(data) {
			continue
		}
		n, err := g.scan(data[start:end])
		passed += n
		if err != nil {
			if n2, err2 := g.scan(data[end:]); n2 != 0 || err2 != err {
				return passed, fmt.Errorf("after %v the guard let %d more bytes through, with %v", err, n2, err2)
			}
			return passed, err
		}
		start = end
	}
	return passed, nil
}

// guardEverySplit runs data through the guard whole, byte by byte, and split in two
// and in three at every point, and fails unless each run lets wantPassed bytes
// through and ends with an error matching wantErr (nil: none).
func guardEverySplit(t *testing.T, entry, budget int64, data []byte, wantPassed int, wantErr error) {
	t.Helper()
	check := func(how string, passed int, err error) {
		t.Helper()
		if passed != wantPassed || !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Fatalf("%s: guard(entry %d, budget %d) on %q let %d bytes through with %v; want %d with %v",
				how, entry, budget, data, passed, err, wantPassed, wantErr)
		}
	}
	passed, err := guardRun(entry, budget, data)
	check("whole", passed, err)
	var every []int
	for i := range data {
		every = append(every, i)
	}
	passed, err = guardRun(entry, budget, data, every...)
	check("byte by byte", passed, err)
	for i := range len(data) + 1 {
		passed, err = guardRun(entry, budget, data, i)
		check(fmt.Sprintf("split at %d", i), passed, err)
		for j := i; j <= len(data) && len(data) < 80; j++ {
			passed, err = guardRun(entry, budget, data, i, j)
			check(fmt.Sprintf("split at %d and %d", i, j), passed, err)
		}
	}
}

// xreadReply is an XREADGROUP reply of stream s with the given entries (id, then field
// and value pairs), as RESP2 writes it.
func xreadReply(s string, entries ...[]string) string {
	bulk := func(x string) string { return "$" + strconv.Itoa(len(x)) + "\r\n" + x + "\r\n" }
	out := "*1\r\n*2\r\n" + bulk(s) + "*" + strconv.Itoa(len(entries)) + "\r\n"
	for _, e := range entries {
		out += "*2\r\n" + bulk(e[0]) + "*" + strconv.Itoa(len(e)-1) + "\r\n"
		for _, f := range e[1:] {
			out += bulk(f)
		}
	}
	return out
}

func TestReplyGuardPassesWellFormedReplies(t *testing.T) {
	read := xreadReply("necrostack:events",
		[]string{"1-1", "event", `{"id":"a"}`, "meta", ""},
		[]string{"1-2", "event", "with \r\n inside, and $5 and *3"})
	tests := []struct{ name, data string }{
		{"simple string", "+OK\r\n"},
		{"empty simple string", "+\r\n"},
		{"error", "-NOGROUP No such key 'x' or consumer group 'g'\r\n"},
		{"integer", ":-42\r\n"},
		{"string", "$5\r\nhello\r\n"},
		{"empty string", "$0\r\n\r\n"},
		{"null string", "$-1\r\n"},
		{"null array", "*-1\r\n"},
		{"empty array", "*0\r\n"},
		{"nested arrays", "*3\r\n*2\r\n:1\r\n*0\r\n*1\r\n*1\r\n$-1\r\n+x\r\n"},
		{"xreadgroup", read},
		{"hello", "*4\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:2\r\n"},
		{"back to back", "+OK\r\n" + read + "*-1\r\n:1\r\n-ERR no\r\n" + read},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Bounds that each reply meets exactly: at the bound is within it.
			entry, budget := guardNeeds(t, []byte(tt.data))
			guardEverySplit(t, entry, budget, []byte(tt.data), len(tt.data), nil)
			guardEverySplit(t, 0, 0, []byte(tt.data), len(tt.data), nil)
		})
	}
}

// guardNeeds returns the least bounds under which every reply in data passes: the
// largest entry (an array's strings, or a string or line alone) and the largest reply,
// as the guard counts them.
func guardNeeds(t *testing.T, data []byte) (entry, budget int64) {
	t.Helper()
	r := refReader{data: data}
	for r.pos < len(data) {
		r.total = 0
		if !r.value(0, new(int64)) {
			t.Fatalf("%q is not well-formed RESP2", data)
		}
		budget = max(budget, r.total)
	}
	return max(r.entry, 1), max(budget, 1)
}

func TestReplyGuardCuts(t *testing.T) {
	big := strings.Repeat("x", 100)
	read := xreadReply("s", []string{"1-1", "event", "small"}, []string{"1-2", "event", big}, []string{"1-3", "event", "after"})
	header := strings.Index(read, "$100\r\n")
	before := guardTotal(t, read[:header]) // what the reply counts before the 100-byte value
	tests := []struct {
		name          string
		entry, budget int64
		data          string
		passed        int // bytes let through: those before the byte that passes the bound
		err           error
	}{
		{"string over the entry bound", 4, 0, "$5\r\nhello\r\n", 2, errReadCut},
		{"string at the entry bound", 5, 0, "$5\r\nhello\r\n", 11, nil},
		{"entry value over the bound", 90, 0, read, header + 4, errReadCut},
		{"entry's strings together over the bound", 104, 0, read, header + 4, errReadCut},
		{"entry's strings together at the bound", 105, 0, read, len(read), nil},
		{"reply over the budget", 0, before + 99, read, header + 4, errReadCut},
		{"reply at the budget", 0, guardTotal(t, read), read, len(read), nil},
		{"array elements over the budget", 0, 3*elementBytes - 1, "*3\r\n:1\r\n:2\r\n:3\r\n", 2, errReadCut},
		{"line over the entry bound", 3, 0, "-ERRx\r\n", 4, errReadCut},
		{"line over the budget", 0, 4, "+abcdef\r\n", 5, errReadCut},
		{"each reply its own budget", 0, 6, "$5\r\nhello\r\n$5\r\nworld\r\n", 22, nil},
		{"second reply over the budget", 0, 6, "$5\r\nhello\r\n$7\r\nworlds!\r\n", 13, errReadCut},
		{"null string counts nothing", 1, elementBytes, "*1\r\n$-1\r\n", 9, nil},
		{"unknown type", 0, 0, "+OK\r\n%1\r\n", 5, errReplyMalformed},
		{"line without \\r", 0, 0, "+OK\n", 3, errReplyMalformed},
		{"\\r without \\n", 0, 0, "+OK\rx", 4, errReplyMalformed},
		{"letter in a length", 0, 0, "$1x\r\n", 2, errReplyMalformed},
		{"empty length", 0, 0, "*\r\n", 1, errReplyMalformed},
		{"negative length other than -1", 0, 0, "$-2\r\nab\r\n", 3, errReplyMalformed},
		{"-0", 0, 0, "*-0\r\n", 3, errReplyMalformed},
		{"length too long", 0, 0, "$" + strings.Repeat("9", 19) + "\r\n", 19, errReplyMalformed},
		{"string longer than its length", 0, 0, "$2\r\nabc\r\n", 6, errReplyMalformed},
		{"string without its \\r\\n", 0, 0, "$2\r\nab\n\r", 6, errReplyMalformed},
		{"nested too deep", 0, 0, strings.Repeat("*1\r\n", maxReplyDepth+1) + ":1\r\n", 4*maxReplyDepth + 2, errReplyMalformed},
		{"nested as deep as allowed", 0, 0, strings.Repeat("*1\r\n", maxReplyDepth) + ":1\r\n", 4*maxReplyDepth + 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			guardEverySplit(t, tt.entry, tt.budget, []byte(tt.data), tt.passed, tt.err)
		})
	}
}

// guardTotal returns what a guard without bounds counts of data, in the reply it ends in.
func guardTotal(t *testing.T, data string) int64 {
	t.Helper()
	g := newReplyGuard(new(readBounds))
	if n, err := g.scan([]byte(data)); n != len(data) || err != nil {
		t.Fatalf("scan(%q) = %d, %v", data, n, err)
	}
	return g.total
}

// The bounds a guard takes are those in force when a reply starts.
func TestReplyGuardTakesBoundsPerReply(t *testing.T) {
	var rb readBounds
	rb.set(0, 2*elementBytes+6)
	g := newReplyGuard(&rb)
	first := []byte("*2\r\n$3\r\nabc\r\n")
	if n, err := g.scan(first); n != len(first) || err != nil {
		t.Fatalf("scan(%q) = %d, %v; want all of it", first, n, err)
	}
	rb.set(0, 1) // mid-reply: the reply keeps its budget
	rest := []byte("$3\r\ndef\r\n")
	if n, err := g.scan(rest); n != len(rest) || err != nil {
		t.Fatalf("scan(%q) = %d, %v; want all of it: the reply started under a budget of %d", rest, 2*elementBytes+6, n, err)
	}
	next := []byte("$3\r\nghi\r\n")
	if n, err := g.scan(next); n != 2 || !errors.Is(err, errReadCut) {
		t.Fatalf("scan(%q) = %d, %v; want 2 and errReadCut: the next reply has a budget of 1", next, n, err)
	}
}

// pipeConn is a connection that reads from r and takes any write.
type pipeConn struct {
	net.Conn
	r      io.Reader
	writes int
}

func (c *pipeConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error) { c.writes++; return len(p), nil }

// Through a guarded connection a reader gets every byte before the length that passes a
// bound, never that length's end, and then only the error; nothing more is written.
func TestGuardConnCutsBeforeTheLength(t *testing.T) {
	big := strings.Repeat("y", 5000)
	data := xreadReply("s", []string{"1-1", "event", "ok"}, []string{"1-2", "event", big})
	header := strings.Index(data, "$5000\r\n")
	var rb readBounds
	rb.set(1000, 1<<20)
	for _, small := range []bool{false, true} {
		pc := &pipeConn{r: strings.NewReader(data)}
		if small {
			pc.r = iotest.OneByteReader(strings.NewReader(data))
		}
		c := guard(pc, &rb)
		got, err := io.ReadAll(c)
		if !errors.Is(err, errReadCut) || string(got) != data[:header+5] {
			t.Errorf("one byte a read %v: read %d bytes (%q at the end), %v; want the %d before the length's \\r and errReadCut",
				small, len(got), got[max(0, len(got)-10):], err, header+5)
		}
		if n, err := c.Read(make([]byte, 10)); n != 0 || !errors.Is(err, errReadCut) {
			t.Errorf("Read after the cut = %d, %v; want 0, errReadCut", n, err)
		}
		if _, err := c.Write([]byte("PING\r\n")); !errors.Is(err, errReadCut) || pc.writes != 0 {
			t.Errorf("Write after the cut = %v with %d writes; want errReadCut and none", err, pc.writes)
		}
	}
	// Well within the bounds, the bytes come through unchanged.
	pc := &pipeConn{r: iotest.HalfReader(strings.NewReader(data + data))}
	rb.set(10_000, 1<<20)
	if got, err := io.ReadAll(guard(pc, &rb)); err != nil || string(got) != data+data {
		t.Errorf("ReadAll = %d bytes, %v; want the %d bytes unchanged", len(got), err, 2*len(data))
	}
}

// refReader parses RESP2 the plain recursive way, as a reference for the guard: every
// value complete, lines ended by \r\n and free of \r and \n, lengths as the guard takes
// them. It tallies a reply as the guard counts it.
type refReader struct {
	data  []byte
	pos   int
	total int64 // the current reply's count
	entry int64 // the largest entry seen: an array's strings, a string or a line
}

func (r *refReader) line() ([]byte, bool) {
	i := bytes.Index(r.data[r.pos:], []byte("\r\n"))
	if i < 0 {
		return nil, false
	}
	l := r.data[r.pos : r.pos+i]
	r.pos += i + 2
	return l, len(l) > 0 && !bytes.ContainsAny(l, "\r\n")
}

func refLength(b []byte) (int64, bool) {
	if string(b) == "-1" {
		return -1, true
	}
	if len(b) == 0 || len(b) > maxLengthDigits || strings.Trim(string(b), "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

func (r *refReader) value(depth int, siblings *int64) bool {
	l, ok := r.line()
	if !ok {
		return false
	}
	switch l[0] {
	case '+', '-', ':':
		n := int64(len(l) - 1)
		r.total += n
		r.entry = max(r.entry, n)
		return true
	case '$':
		n, ok := refLength(l[1:])
		if !ok || n == -1 {
			return ok
		}
		if int64(len(r.data)-r.pos) < n+2 || string(r.data[r.pos+int(n):r.pos+int(n)+2]) != "\r\n" {
			return false
		}
		r.pos += int(n) + 2
		r.total += n
		*siblings += n
		r.entry = max(r.entry, n, *siblings)
		return true
	case '*':
		n, ok := refLength(l[1:])
		if !ok || n <= 0 {
			return ok
		}
		if depth == maxReplyDepth {
			return false
		}
		r.total += n * elementBytes
		var strs int64
		for range n {
			if !r.value(depth+1, &strs) {
				return false
			}
		}
		return true
	}
	return false
}

// refReplies reports whether data is well-formed RESP2 replies, back to back and
// complete, and whether each meets the bounds (0: none).
func refReplies(data []byte, entry, budget int64) (wellFormed, within bool) {
	r := refReader{data: data}
	within = true
	for r.pos < len(data) {
		r.total = 0
		if !r.value(0, new(int64)) {
			return false, false
		}
		if over(r.total, budget) {
			within = false
		}
	}
	return true, within && !over(r.entry, entry)
}

// genReply writes a well-formed RESP2 value drawn from src, nested at most depth deep.
func genReply(src *[]byte, depth int) []byte {
	take := func() byte {
		if len(*src) == 0 {
			return 0
		}
		c := (*src)[0]
		*src = (*src)[1:]
		return c
	}
	text := func(n int, safe bool) []byte {
		var b []byte
		for range n {
			c := take()
			if safe && (c == '\r' || c == '\n') {
				c = 'x'
			}
			b = append(b, c)
		}
		return b
	}
	switch c := take(); c % 7 {
	case 0:
		return append(append([]byte("+"), text(int(take()%12), true)...), "\r\n"...)
	case 1:
		return append(append([]byte("-"), text(int(take()%12), true)...), "\r\n"...)
	case 2:
		return []byte(":" + strconv.Itoa(int(int8(take()))) + "\r\n")
	case 3:
		p := text(int(take()%40), false)
		return append(append([]byte("$"+strconv.Itoa(len(p))+"\r\n"), p...), "\r\n"...)
	case 4:
		if c&0x80 != 0 {
			return []byte("*-1\r\n")
		}
		return []byte("$-1\r\n")
	default:
		if depth == 0 {
			return []byte("*0\r\n")
		}
		n := int(take() % 5)
		out := []byte("*" + strconv.Itoa(n) + "\r\n")
		for range n {
			out = append(out, genReply(src, depth-1)...)
		}
		return out
	}
}

// FuzzReplyGuard checks the guard against the reference parser on any bytes: it never
// panics, it cuts the same way however the bytes are split, it passes well-formed
// replies within the bounds unchanged and cuts those over them; and replies generated
// from the input pass at exactly the bounds they need and are cut one byte under.
func FuzzReplyGuard(f *testing.F) {
	f.Add([]byte(xreadReply("necrostack:events", []string{"1-1", "event", `{"id":"a"}`, "meta", ""})), uint32(0), uint32(0), uint16(7))
	f.Add([]byte("*3\r\n*2\r\n:1\r\n*0\r\n*1\r\n*1\r\n$-1\r\n+x\r\n"), uint32(4), uint32(200), uint16(3))
	f.Add([]byte("+OK\r\n-ERR x\r\n:12\r\n$-1\r\n*-1\r\n"), uint32(2), uint32(3), uint16(1))
	f.Add([]byte("$20971520\r\nxx"), uint32(2<<20), uint32(8<<20), uint16(4))
	f.Add([]byte("*1\r\n$3\r\nab\r\n"), uint32(0), uint32(0), uint16(0))
	f.Add([]byte("%1\r\n"), uint32(0), uint32(0), uint16(0))
	f.Add([]byte{0x05, 0x03, 0x07, 0x05, 0x01, 0x02, 0x03, 0x00, 0x04}, uint32(0), uint32(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, entry, budget uint32, split uint16) {
		e, bu := int64(entry%(1<<16)), int64(budget%(1<<20))
		whole, wholeErr := guardRun(e, bu, data)
		cut := 0
		if len(data) > 0 {
			cut = int(split) % len(data)
		}
		for _, cuts := range [][]int{{cut}, {cut / 2, cut}, everyByte(len(data))} {
			if n, err := guardRun(e, bu, data, cuts...); n != whole || !sameError(err, wholeErr) {
				t.Fatalf("guard on %q split at %v let %d through with %v; whole, %d with %v", data, cuts, n, err, whole, wholeErr)
			}
		}
		switch wellFormed, within := refReplies(data, e, bu); {
		case wellFormed && within && (whole != len(data) || wholeErr != nil):
			t.Fatalf("guard(entry %d, budget %d) on well-formed %q within the bounds let %d of %d bytes through, %v", e, bu, data, whole, len(data), wholeErr)
		case wellFormed && !within && !errors.Is(wholeErr, errReadCut):
			t.Fatalf("guard(entry %d, budget %d) on well-formed %q over the bounds let %d bytes through, %v; want errReadCut", e, bu, data, whole, wholeErr)
		}

		src := data
		gen := genReply(&src, 5)
		for len(src) > 0 && len(gen) < 4096 {
			gen = append(gen, genReply(&src, 5)...)
		}
		needEntry, needBudget := guardNeeds(t, gen)
		if n, err := guardRun(needEntry, needBudget, gen, cut%(len(gen)+1)); n != len(gen) || err != nil {
			t.Fatalf("guard(entry %d, budget %d) on %q, the bounds it needs, let %d of %d bytes through, %v", needEntry, needBudget, gen, n, len(gen), err)
		}
		if needBudget > 1 {
			if _, err := guardRun(needEntry, needBudget-1, gen); !errors.Is(err, errReadCut) {
				t.Fatalf("guard(entry %d, budget %d) on %q, one byte under the budget it needs: %v, want errReadCut", needEntry, needBudget-1, gen, err)
			}
		}
		if needEntry > 1 {
			if _, err := guardRun(needEntry-1, needBudget, gen); !errors.Is(err, errReadCut) {
				t.Fatalf("guard(entry %d, budget %d) on %q, one byte under the entry bound it needs: %v, want errReadCut", needEntry-1, needBudget, gen, err)
			}
		}
	})
}

func everyByte(n int) []int {
	cuts := make([]int, n)
	for i := range cuts {
		cuts[i] = i
	}
	return cuts
}

// sameError reports whether two errors of the guard say the same thing.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}
