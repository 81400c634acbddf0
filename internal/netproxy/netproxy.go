package netproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what a [Proxy] has done since [New].
type Stats struct {
	Accepted  int64 // connections the proxy accepted, refused ones included
	Refused   int64 // connections closed at once: during a cut, or as the target was unreachable
	Open      int64 // connections being forwarded now
	BytesUp   int64 // bytes delivered from clients to the target
	BytesDown int64 // bytes delivered from the target to clients
}

// dialTimeout bounds the connection to the target that each accepted connection makes.
const dialTimeout = 5 * time.Second

// bufferSize is how much one direction of a connection reads at a time, and so the
// most it holds during a stall; the kernel's socket buffers hold the rest, and then
// the sender blocks, as it would behind a real partition.
const bufferSize = 32 << 10

// A Proxy forwards TCP connections from its own loopback address to a target address.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	accepted, refused, open, bytesUp, bytesDown atomic.Int64
	stalled                                     atomic.Bool // read without mu on the way of every chunk

	mu      sync.Mutex
	links   map[*link]struct{} // every connection being dialed or forwarded
	cut     bool
	resumed chan struct{} // closed by Resume; a fresh one at each Stall
	closed  bool
}

// A link is one client connection and its connection to the target. p.mu guards its
// fields.
type link struct {
	client, server net.Conn // server is nil while the target is dialed
	cancelDial     context.CancelFunc
	halfClosed     int           // directions whose sender has finished
	closed         bool          // both connections are closed; the link is out of p.links
	done           chan struct{} // closed with the link
}

// New listens on a free loopback port and forwards every connection it accepts to
// target, a host:port. The proxy serves at once, from goroutines of its own, until
// [Proxy.Close], which the caller must call.
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("netproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netproxy: listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, links: make(map[*link]struct{})}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr returns the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every open connection, on both sides, and refuses new ones, accepting and
// closing them at once, until [Proxy.Restore]. Bytes held by a stall are dropped with
// their connections.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for l := range p.links {
		p.dropLocked(l)
	}
}

// Restore lets new connections through again after [Proxy.Cut].
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Stall stops every byte, in both directions, on open connections and on those opened
// until [Proxy.Resume]; the connections stay open. A write that was already under way
// when Stall was called may complete; nothing starts moving after Stall returns.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled.Load() {
		p.resumed = make(chan struct{})
		p.stalled.Store(true)
	}
}

// Resume lets bytes move again after [Proxy.Stall], delivering those held first.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled.Load() {
		p.stalled.Store(false)
		close(p.resumed)
	}
}

// Stats returns the proxy's counters. They are read one by one, so a snapshot taken
// while connections come and go may be off by those.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted:  p.accepted.Load(),
		Refused:   p.refused.Load(),
		Open:      p.open.Load(),
		BytesUp:   p.bytesUp.Load(),
		BytesDown: p.bytesDown.Load(),
	}
}

// Close stops accepting, closes every connection and returns once every goroutine of
// the proxy has ended. Closing a closed proxy does nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for l := range p.links {
		p.dropLocked(l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("netproxy: close the listener: %w", err)
	}
	return nil
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: wait rather than spin. Close still ends the
			// loop, at the next Accept.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.accepted.Add(1)
		if l, ctx := p.admit(c); l != nil {
			p.wg.Go(func() { p.forward(ctx, l) })
		}
	}
}

// admit registers a new client connection, or closes it at once during a cut or after
// Close. The context it returns ends the connection's dial when the link is dropped.
func (p *Proxy) admit(c net.Conn) (*link, context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		_ = c.Close() // refused: nothing was read, nothing to report
		p.refused.Add(1)
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	l := &link{client: c, cancelDial: cancel, done: make(chan struct{})}
	p.links[l] = struct{}{}
	return l, ctx
}

// forward dials the target for l and then moves bytes both ways until the link is
// dropped or both sides have finished.
func (p *Proxy) forward(ctx context.Context, l *link) {
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		p.mu.Lock()
		if !l.closed { // not cut meanwhile: the target refused
			p.refused.Add(1)
			p.dropLocked(l)
		}
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	if l.closed { // cut or closed while dialing
		p.mu.Unlock()
		_ = server.Close() // never used
		return
	}
	l.server = server
	p.open.Add(1)
	p.mu.Unlock()
	p.wg.Go(func() { p.pump(l, server, l.client, &p.bytesDown) })
	p.pump(l, l.client, server, &p.bytesUp)
}

// pump copies src to dst for link l, counting into n, until src ends or the link is
// dropped. Each chunk waits for a stall to lift between being read and being written,
// so bytes are held rather than lost, and stay in order.
func (p *Proxy) pump(l *link, src, dst net.Conn, n *atomic.Int64) {
	buf := make([]byte, bufferSize)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if !p.waitFlowing(l) {
				return
			}
			// Count first, so that a peer that has the bytes finds them counted.
			n.Add(int64(k))
			if w, err := dst.Write(buf[:k]); err != nil {
				n.Add(int64(w - k))
				p.drop(l)
				return
			}
		}
		if err == nil {
			continue
		}
		// The end of a stream is news for the other side too, and waits like bytes.
		if !p.waitFlowing(l) {
			return
		}
		if errors.Is(err, io.EOF) {
			p.halfClose(l, dst)
		} else {
			p.drop(l)
		}
		return
	}
}

// waitFlowing waits while the proxy is stalled. It returns false when the link was
// dropped, meanwhile or before.
func (p *Proxy) waitFlowing(l *link) bool {
	for p.stalled.Load() {
		p.mu.Lock()
		if l.closed {
			p.mu.Unlock()
			return false
		}
		resumed := p.resumed
		p.mu.Unlock()
		select {
		case <-resumed:
		case <-l.done:
			return false
		}
	}
	return true
}

// halfClose passes the end of one direction on to dst, so a peer that stops sending
// still gets the answer it waits for; the link ends when both directions have ended.
func (p *Proxy) halfClose(l *link, dst net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.closed {
		return
	}
	l.halfClosed++
	tcp, ok := dst.(*net.TCPConn)
	if l.halfClosed == 2 || !ok || tcp.CloseWrite() != nil {
		p.dropLocked(l)
	}
}

func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked(l)
}

// dropLocked closes both connections of l and forgets it; p.mu is held.
func (p *Proxy) dropLocked(l *link) {
	if l.closed {
		return
	}
	l.closed = true
	delete(p.links, l)
	l.cancelDial()
	// Close errors say only that a peer went first; the link is gone either way.
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
		p.open.Add(-1)
	}
	close(l.done)
}
