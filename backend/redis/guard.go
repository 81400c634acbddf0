package redis

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
)

// The reply guard lets the store read new entries with a plain XREADGROUP, Redis's
// cheapest read, and still never take in an entry over MaxEntryBytes nor a reply over
// the Pull's byte budget. It sits between the socket and go-redis's reader on the
// connections of the read client (and only there) and follows the RESP2 replies as
// their bytes arrive. At the length of a string that would pass a bound, it stops:
// the Read that holds that length returns the bytes before it and errReadCut, so
// go-redis never learns the length, allocates nothing for it, drops the connection and
// fails the command. The entries of that read are then pending to this consumer and
// are read again, each measured, by pendingScript (see Backend.recoverLost).

var (
	// errReadCut is the error of a read the guard cut short: its reply would pass
	// MaxEntryBytes or the Pull's budget.
	errReadCut = errors.New("redis: read cut short: the reply passes the read's bounds")
	// errReplyMalformed is the error of a reply the guard cannot follow; it is cut
	// short too, since what cannot be followed cannot be bounded.
	errReplyMalformed = errors.New("redis: malformed reply")
)

// readBounds are the bounds the guards of the read client enforce: the store sets them
// before each read (reads are one at a time), and a guard takes them at the start of
// each reply. Zero means no bound.
type readBounds struct {
	entry  atomic.Int64 // the strings of one array together (an entry's fields), and one string or line
	budget atomic.Int64 // one reply's strings and lines, and its arrays' elements at elementBytes each
}

func (rb *readBounds) set(entry, budget int) {
	rb.entry.Store(int64(entry))
	rb.budget.Store(int64(budget))
}

// elementBytes is what each element an array announces counts against the budget,
// about what go-redis allocates for it when it reads the array's length, before the
// element itself arrives.
const elementBytes = 32

// maxReplyDepth bounds the nesting of arrays; an XREADGROUP reply nests five deep.
const maxReplyDepth = 16

// maxLengthDigits bounds the digits of a length: more could overflow an int64, and no
// reply of Redis comes near.
const maxLengthDigits = 18

type guardState uint8

const (
	gType     guardState = iota // the type byte of the next value
	gLine                       // the text of a simple string, error or integer
	gLineLF                     // the \n that ends it
	gLength                     // the length of a string or an array
	gLengthLF                   // the \n after it
	gString                     // a string's bytes
	gStringCR                   // the \r\n after them
	gStringLF
)

// A frame is an array whose elements are still arriving.
type frame struct {
	left    int64 // elements to come
	strings int64 // bytes of the strings that are its own elements
}

// A replyGuard follows RESP2 replies, one after another, and reports where the first
// byte is that a bound or the grammar does not allow. It is used by one goroutine at a
// time, as a connection is.
type replyGuard struct {
	bounds        *readBounds
	entry, budget int64   // this reply's bounds; 0: none
	total         int64   // counted in this reply so far
	stack         []frame // the arrays this value is inside, outermost first
	state         guardState
	kind          byte  // type of the line or length being read
	n             int64 // the length being read, or the bytes of the string or line left or read
	neg           bool  // the length began with '-'
	digits        int
	err           error // sticky: once cut, the connection is never read again
}

func newReplyGuard(bounds *readBounds) *replyGuard {
	return &replyGuard{bounds: bounds, stack: make([]frame, 0, 8)}
}

// scan follows p and returns how many of its bytes may go on: all of them, or those
// before the byte at which a bound would be passed or the reply is malformed, together
// with the error that says which. After an error it lets nothing more through.
func (g *replyGuard) scan(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	for i := 0; i < len(p); i++ {
		if g.state == gString {
			// The string's bytes pass unread, as many at once as p holds.
			i += g.skipString(int64(len(p)-i)) - 1
			continue
		}
		if err := g.step(p[i]); err != nil {
			return i, g.fail(err)
		}
	}
	return len(p), nil
}

// step takes one byte that is not inside a string's bytes.
func (g *replyGuard) step(c byte) error {
	switch g.state {
	case gType:
		return g.typeByte(c)
	case gLine:
		return g.lineByte(c)
	case gLineLF:
		if c != '\n' {
			return fmt.Errorf("%w: \\r without \\n after a %q line", errReplyMalformed, g.kind)
		}
		g.total += g.n
		g.done()
	case gLength:
		return g.lengthByte(c)
	case gLengthLF:
		if c != '\n' {
			return fmt.Errorf("%w: \\r without \\n after a %q length", errReplyMalformed, g.kind)
		}
		g.opened()
	case gStringCR:
		if c != '\r' {
			return fmt.Errorf("%w: a string longer than its length", errReplyMalformed)
		}
		g.state = gStringLF
	case gStringLF:
		if c != '\n' {
			return fmt.Errorf("%w: a string longer than its length", errReplyMalformed)
		}
		g.done()
	}
	return nil
}

// typeByte starts a value: a line (+ - :) or a length ($ *).
func (g *replyGuard) typeByte(c byte) error {
	if len(g.stack) == 0 {
		g.begin()
	}
	switch c {
	case '+', '-', ':':
		g.kind, g.n, g.state = c, 0, gLine
	case '$', '*':
		g.kind, g.n, g.neg, g.digits, g.state = c, 0, false, 0, gLength
	default:
		return fmt.Errorf("%w: unexpected type byte %q", errReplyMalformed, c)
	}
	return nil
}

// lineByte takes a byte of a simple string, an error or an integer.
func (g *replyGuard) lineByte(c byte) error {
	switch c {
	case '\r':
		g.state = gLineLF
	case '\n':
		return fmt.Errorf("%w: a line ends in \\n without \\r", errReplyMalformed)
	default:
		g.n++
		if over(g.n, g.entry) || over(g.total+g.n, g.budget) {
			return fmt.Errorf("%w: a %q line of more than %d bytes", errReadCut, g.kind, g.n-1)
		}
	}
	return nil
}

// lengthByte takes a byte of a string's or an array's length, and checks the length at
// its \r, before its \n lets the reader see it.
func (g *replyGuard) lengthByte(c byte) error {
	switch {
	case c >= '0' && c <= '9':
		if g.digits == maxLengthDigits {
			return fmt.Errorf("%w: a length of more than %d digits", errReplyMalformed, maxLengthDigits)
		}
		g.n = g.n*10 + int64(c-'0')
		g.digits++
	case c == '-' && g.digits == 0 && !g.neg:
		g.neg = true
	case c == '\r' && g.digits > 0:
		if err := g.length(); err != nil {
			return err
		}
		g.state = gLengthLF
	default:
		return fmt.Errorf("%w: unexpected byte %q in a %q length", errReplyMalformed, c, g.kind)
	}
	return nil
}

// skipString lets up to k bytes of a string's body pass and returns how many it took.
func (g *replyGuard) skipString(k int64) int {
	k = min(k, g.n)
	g.n -= k
	if g.n == 0 {
		g.state = gStringCR
	}
	return int(k)
}

// over reports whether n passes the bound; 0 is none.
func over(n, bound int64) bool { return bound > 0 && n > bound }

// begin starts a reply: it takes the bounds in force now.
func (g *replyGuard) begin() {
	g.entry, g.budget, g.total = g.bounds.entry.Load(), g.bounds.budget.Load(), 0
}

// length checks a length just read, before its \n lets the reader see it.
func (g *replyGuard) length() error {
	if g.neg {
		if g.n != 1 {
			return fmt.Errorf("%w: length -%d", errReplyMalformed, g.n)
		}
		return nil // a null string or array
	}
	if g.kind == '*' {
		if len(g.stack) == maxReplyDepth && g.n > 0 {
			return fmt.Errorf("%w: arrays nested more than %d deep", errReplyMalformed, maxReplyDepth)
		}
		// The multiplication cannot overflow: n has at most 18 digits, elementBytes 2.
		if over(g.total+g.n*elementBytes, g.budget) {
			return fmt.Errorf("%w: an array of %d elements with %d bytes before it, over the budget of %d",
				errReadCut, g.n, g.total, g.budget)
		}
		return nil
	}
	var siblings int64
	if len(g.stack) > 0 {
		siblings = g.stack[len(g.stack)-1].strings
	}
	switch {
	case over(g.n, g.entry):
		return fmt.Errorf("%w: a string of %d bytes, over MaxEntryBytes (%d)", errReadCut, g.n, g.entry)
	case over(siblings+g.n, g.entry):
		return fmt.Errorf("%w: an entry of more than %d bytes, over MaxEntryBytes (%d)", errReadCut, siblings+g.n, g.entry)
	case over(g.total+g.n, g.budget):
		return fmt.Errorf("%w: a reply of more than %d bytes, over the budget of %d", errReadCut, g.total+g.n, g.budget)
	}
	return nil
}

// opened acts on a length whose \n has passed.
func (g *replyGuard) opened() {
	switch {
	case g.neg || g.n == 0 && g.kind == '*':
		g.done() // null, or an empty array: complete already
	case g.kind == '*':
		g.total += g.n * elementBytes
		g.stack = append(g.stack, frame{left: g.n})
		g.state = gType
	default:
		g.total += g.n
		if len(g.stack) > 0 {
			g.stack[len(g.stack)-1].strings += g.n
		}
		g.state = gString
		if g.n == 0 {
			g.state = gStringCR
		}
	}
}

// done completes a value, and each array it completes in turn.
func (g *replyGuard) done() {
	g.state = gType
	for len(g.stack) > 0 {
		top := &g.stack[len(g.stack)-1]
		if top.left--; top.left > 0 {
			return
		}
		g.stack = g.stack[:len(g.stack)-1]
	}
}

func (g *replyGuard) fail(err error) error {
	g.err = err
	return err
}

// guardConn is a connection whose incoming bytes pass a replyGuard.
type guardConn struct {
	net.Conn
	guard *replyGuard
}

func (c *guardConn) Read(p []byte) (int, error) {
	if c.guard.err != nil {
		return 0, c.guard.err
	}
	n, err := c.Conn.Read(p)
	ok, gerr := c.guard.scan(p[:n])
	if gerr != nil {
		return ok, gerr
	}
	return n, err
}

func (c *guardConn) Write(p []byte) (int, error) {
	if c.guard.err != nil {
		return 0, c.guard.err // the stream is cut: nothing more is sent on it either
	}
	return c.Conn.Write(p)
}

// guardSyscallConn is a guardConn over a socket: go-redis's pool checks an idle
// connection by peeking at its socket (MSG_PEEK, which consumes nothing the guard
// would then miss).
type guardSyscallConn struct {
	guardConn
	sys syscall.Conn
}

func (c *guardSyscallConn) SyscallConn() (syscall.RawConn, error) { return c.sys.SyscallConn() }

// guard wraps a connection of the read client in a reply guard with the given bounds.
func guard(c net.Conn, bounds *readBounds) net.Conn {
	gc := guardConn{Conn: c, guard: newReplyGuard(bounds)}
	if sys, ok := c.(syscall.Conn); ok {
		return &guardSyscallConn{guardConn: gc, sys: sys}
	}
	return &gc
}
