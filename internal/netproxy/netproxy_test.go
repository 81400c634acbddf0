package netproxy_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro/internal/netproxy"
)

// An echoServer writes back whatever it reads, and closes a connection once its client
// has finished sending. It counts the bytes it received.
type echoServer struct {
	ln       net.Listener
	received atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			e.mu.Lock()
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Go(func() {
				defer func() {
					e.mu.Lock()
					delete(e.conns, c)
					e.mu.Unlock()
					_ = c.Close() // the client is gone or finished
				}()
				buf := make([]byte, 8<<10)
				for {
					n, err := c.Read(buf)
					e.received.Add(int64(n))
					if _, werr := c.Write(buf[:n]); werr != nil || err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(e.close)
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) close() {
	_ = e.ln.Close() // the test is over
	e.mu.Lock()
	for c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func newProxy(t *testing.T, target string) *netproxy.Proxy {
	t.Helper()
	p, err := netproxy.New(target)
	if err != nil {
		t.Fatalf("New(%q): %v", target, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() }) // may be closed already
	return c
}

// roundTrip writes msg and reads as many bytes back, within a second.
func roundTrip(c net.Conn, msg []byte) ([]byte, error) {
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return nil, err
	}
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return got, err
}

func mustEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	got, err := roundTrip(c, []byte(msg))
	if err != nil || string(got) != msg {
		t.Fatalf("echo of %q through the proxy = %q, %v; want it back", msg, got, err)
	}
}

// readTimesOut reports whether nothing arrives on c for d.
func readTimesOut(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	n, err := c.Read(b[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read during a stall = %d bytes, %v; want a timeout", n, err)
	}
}

// readFails waits up to a second for c to end, and fails the test if it does not.
func readFails(t *testing.T, c net.Conn, what string) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 16))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read on %s = %d bytes, %v; want the connection closed at once", what, n, err)
	}
}

func TestForwardsBothWays(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	c := dial(t, p.Addr())
	mustEcho(t, c, "hello")
	mustEcho(t, c, "again")
	want := netproxy.Stats{Accepted: 1, Open: 1, BytesUp: 10, BytesDown: 10}
	if got := p.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestHalfCloseReachesTheOtherSide(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The echo server answers and closes only once it sees our end of stream.
	_ = c.SetReadDeadline(time.Now().Add(time.Second)) // a live conn: cannot fail
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read after CloseWrite = %q, %v; want the echo then the end of stream", got, err)
	}
	waitFor(t, "the connection to be forgotten", func() bool { return p.Stats().Open == 0 })
}

func TestCutClosesAndRefusesUntilRestore(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	old := dial(t, p.Addr())
	mustEcho(t, old, "before")
	p.Cut()
	readFails(t, old, "a connection open before the cut")
	refused := dial(t, p.Addr()) // the kernel accepts; the proxy closes at once
	readFails(t, refused, "a connection opened during the cut")
	if _, err := roundTrip(refused, []byte("x")); err == nil {
		t.Fatal("a round trip on a connection opened during the cut succeeded")
	}
	got := p.Stats()
	if got.Open != 0 || got.Refused != 1 || got.Accepted != 2 {
		t.Errorf("Stats() after the cut = %+v, want Open 0, Refused 1, Accepted 2", got)
	}
	p.Restore()
	mustEcho(t, dial(t, p.Addr()), "after")
}

func TestStallHoldsBytesInOrderUntilResume(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	before := dial(t, p.Addr())
	mustEcho(t, before, "warm")
	p.Stall()
	if _, err := before.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	during := dial(t, p.Addr())
	if _, err := during.Write([]byte("xyz")); err != nil {
		t.Fatal(err)
	}
	readTimesOut(t, before, 200*time.Millisecond)
	readTimesOut(t, during, 10*time.Millisecond)
	if _, err := before.Write([]byte("def")); err != nil {
		t.Fatal(err)
	}
	if got := e.received.Load(); got != 4 {
		t.Fatalf("the echo server received %d bytes during the stall, want only the 4 sent before it", got)
	}
	if got := p.Stats(); got.Open != 2 || got.Refused != 0 {
		t.Errorf("Stats() during the stall = %+v, want both connections open", got)
	}
	p.Resume()
	for _, tc := range []struct {
		c    net.Conn
		want string
	}{{before, "abcdef"}, {during, "xyz"}} {
		_ = tc.c.SetReadDeadline(time.Now().Add(time.Second)) // a live conn: cannot fail
		got := make([]byte, len(tc.want))
		if _, err := io.ReadFull(tc.c, got); err != nil || string(got) != tc.want {
			t.Errorf("read after Resume = %q, %v; want %q", got, err, tc.want)
		}
	}
	mustEcho(t, before, "still works")
}

// TestStallHoldsABulkTransfer stalls a stream that never pauses by itself: no byte may
// reach the server during the stall, and after it every byte arrives, in order.
func TestStallHoldsABulkTransfer(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	c := dial(t, p.Addr())
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a live conn: cannot fail
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := make(chan struct{})
	var sent int64
	var werr error
	wg.Go(func() {
		chunk := make([]byte, 16<<10)
		for {
			select {
			case <-stop:
				werr = c.(*net.TCPConn).CloseWrite()
				return
			default:
			}
			for i := range chunk {
				chunk[i] = byte((sent + int64(i)) % 251)
			}
			n, err := c.Write(chunk)
			sent += int64(n)
			if err != nil {
				werr = err
				return
			}
		}
	})
	var got []byte
	var rerr error
	wg.Go(func() { got, rerr = io.ReadAll(c) })
	waitFor(t, "the transfer to start", func() bool { return e.received.Load() > 0 })
	p.Stall()
	time.Sleep(100 * time.Millisecond) // a write under way when Stall was called may finish
	held := e.received.Load()
	time.Sleep(300 * time.Millisecond)
	if now := e.received.Load(); now != held {
		t.Errorf("the server received %d bytes during the stall, want none", now-held)
	}
	p.Resume()
	waitFor(t, "the transfer to go on", func() bool { return e.received.Load() > held+1<<20 })
	close(stop)
	wg.Wait()
	intact := int64(len(got)) == sent
	for i := 0; intact && i < len(got); i++ {
		intact = got[i] == byte(i%251)
	}
	if werr != nil || rerr != nil || !intact {
		t.Fatalf("after the stall: write %v, read %v; %d of %d bytes came back, in order: %v", werr, rerr, len(got), sent, intact)
	}
	if st := p.Stats(); st.BytesUp != sent || st.BytesDown != sent {
		t.Errorf("Stats() = %+v, want %d bytes each way", st, sent)
	}
}

func TestUnreachableTargetIsRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // now nothing listens there
	p := newProxy(t, target)
	readFails(t, dial(t, p.Addr()), "a connection to an unreachable target")
	waitFor(t, "the refusal to be counted", func() bool { return p.Stats().Refused == 1 })
	if got := p.Stats(); got.Accepted != 1 || got.Open != 0 {
		t.Errorf("Stats() = %+v, want Accepted 1, Open 0", got)
	}
}

func TestNewRejectsABadTarget(t *testing.T) {
	if p, err := netproxy.New("no port"); err == nil {
		_ = p.Close()
		t.Fatal(`New("no port") succeeded, want an error`)
	}
}

// TestCloseLeavesNothingBehind closes a proxy with open, stalled connections holding
// bytes, and one dialing: every goroutine must be gone, and the port closed.
func TestCloseLeavesNothingBehind(t *testing.T) {
	e := startEcho(t)
	baseline := runtime.NumGoroutine()
	p, err := netproxy.New(e.addr())
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 4 {
		c := dial(t, p.Addr())
		mustEcho(t, c, "hi")
		conns = append(conns, c)
	}
	p.Stall()
	for _, c := range conns {
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("a second Close() = %v, want nothing to do", err)
	}
	for _, c := range conns {
		readFails(t, c, "a connection of a closed proxy")
		_ = c.Close()
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		_ = c.Close()
		t.Error("dial after Close succeeded, want the port closed")
	}
	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= baseline })
}

// TestConcurrentTraffic runs many connections at once while the proxy stalls and
// resumes, with Stats read alongside: every echo must come back whole (and -race
// must stay quiet).
func TestConcurrentTraffic(t *testing.T) {
	e := startEcho(t)
	p := newProxy(t, e.addr())
	const clients, rounds = 8, 40
	var total atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var toggler sync.WaitGroup
	toggler.Go(func() {
		for {
			select {
			case <-stop:
				p.Resume()
				return
			case <-time.After(20 * time.Millisecond):
			}
			p.Stall()
			_ = p.Stats()
			time.Sleep(5 * time.Millisecond)
			p.Resume()
		}
	})
	for i := range clients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range rounds {
				msg := make([]byte, 1+rng.IntN(64<<10))
				for j := range msg {
					msg[j] = byte(rng.Uint32())
				}
				if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
					t.Error(err)
					return
				}
				var werr error
				var w sync.WaitGroup
				w.Go(func() { _, werr = c.Write(msg) }) // large messages: read while writing
				got := make([]byte, len(msg))
				_, rerr := io.ReadFull(c, got)
				w.Wait()
				if werr != nil || rerr != nil || !bytes.Equal(got, msg) {
					t.Errorf("client %d: echo of %d bytes: write %v, read %v, intact %v", i, len(msg), werr, rerr, bytes.Equal(got, msg))
					return
				}
				total.Add(int64(len(msg)))
			}
		})
	}
	wg.Wait()
	close(stop)
	toggler.Wait()
	if st := p.Stats(); st.BytesUp != total.Load() || st.BytesDown != total.Load() || st.Accepted != clients {
		t.Errorf("Stats() = %+v, want %d connections and %d bytes each way", st, clients, total.Load())
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
