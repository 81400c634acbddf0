package redis

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// plainCheckAfter is how long a TLS handshake may go unanswered before a second
// connection checks whether the server speaks plain text. A TLS server answers within
// a round trip; a slow one costs only that check, whose answer is never wrong.
const plainCheckAfter = 250 * time.Millisecond

// errNotTLS says that the server answered a plain PING: it does not speak TLS.
var errNotTLS = errors.New("the server does not speak TLS (use redis:// for it, or its TLS port)")

// tlsDialer returns the dialer of a rediss:// URL. A server that speaks plain text
// takes the TLS handshake for the start of a command and waits for its end, so the
// handshake alone would fail only at its timeout, as a bare "context deadline
// exceeded". The dialer tells that case at once instead: when the handshake has no
// answer after plainCheckAfter, it sends PING in plain text over a second connection
// (no secret goes with it), and a Redis reply there fails the dial with errNotTLS. A
// reply that is no TLS record at all fails it the same way.
func tlsDialer(cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	// The keep-alive go-redis's own dialer uses: a dead peer is noticed within a minute.
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := d.DialContext(ctx, network, addr) // go-redis bounds ctx by its DialTimeout
		if err != nil {
			return nil, err
		}
		c := cfg
		if c.ServerName == "" {
			c = cfg.Clone()
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		conn := tls.Client(raw, c)
		hctx, cancel := context.WithCancelCause(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			t := time.NewTimer(plainCheckAfter)
			defer t.Stop()
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			if speaksPlain(hctx, d, network, addr) {
				cancel(errNotTLS)
			}
		})
		err = conn.HandshakeContext(hctx)
		cancel(nil) // ends the check when the handshake ended first
		wg.Wait()
		if err == nil {
			return conn, nil
		}
		_ = raw.Close() // the handshake's failure is the one to report
		var rh tls.RecordHeaderError
		if errors.Is(context.Cause(hctx), errNotTLS) || errors.As(err, &rh) {
			return nil, fmt.Errorf("TLS handshake with %s failed: %w", addr, errNotTLS)
		}
		return nil, err
	}
}

// speaksPlain reports whether the server at addr answers a PING in plain text, as a
// Redis without TLS does (+PONG, or an error such as -NOAUTH). A TLS server answers
// with an alert or closes the connection.
func speaksPlain(ctx context.Context, d *net.Dialer, network, addr string) bool {
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return false
	}
	defer func() { _ = c.Close() }()                         // a check's connection: its close says nothing
	stop := context.AfterFunc(ctx, func() { _ = c.Close() }) // unblocks the read below
	defer stop()
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(io.LimitReader(c, 512)).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-")) && strings.HasSuffix(line, "\r\n")
}
