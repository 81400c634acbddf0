package redisproc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Do sends one command over a fresh connection, authenticating first when the server
// has a password, and returns the reply as text: a simple or bulk string, an integer,
// or an error reply prefixed with "ERR:". A nil bulk string is "". Array replies are
// not supported. It lets a program or test inspect the server without a client
// library; ctx bounds the whole exchange.
func (s *Server) Do(ctx context.Context, args ...string) (string, error) {
	conn, err := s.dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline) // a fresh connection: cannot fail
	}
	// A context canceled without a deadline still ends the exchange.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // closing twice is harmless
	defer stop()
	r := bufio.NewReader(conn)
	if s.cfg.Password != "" {
		reply, err := roundTrip(conn, r, "AUTH", s.cfg.Password)
		if err != nil {
			return "", withCause(ctx, err)
		}
		if strings.HasPrefix(reply, "ERR:") {
			return reply, nil
		}
	}
	reply, err := roundTrip(conn, r, args...)
	return reply, withCause(ctx, err)
}

// withCause prefers the context's error to the connection error it caused.
func withCause(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// dial opens a connection to the server, over TLS when the server speaks it.
func (s *Server) dial(ctx context.Context) (net.Conn, error) {
	if s.cfg.TLS {
		d := &tls.Dialer{Config: s.TLSConfig()}
		return d.DialContext(ctx, "tcp", s.Addr())
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.Addr())
}

func roundTrip(conn net.Conn, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("redisproc: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "ERR:" + line[1:], nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("redisproc: bad bulk length %q", line)
		}
		if n < 0 {
			return "", nil // a nil bulk string
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redisproc: reply type %q not supported", line[0])
}
