package redis_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// countingListener accepts connections on a loopback port of its own, counts them and
// closes them at once: a URL that should reach no server can be pointed at its port
// to prove that nothing was sent.
type countingListener struct {
	ln       net.Listener
	accepted atomic.Int64
	done     chan struct{}
}

func listenCounting(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			l.accepted.Add(1)
			_ = c.Close() // a probe has nothing to say
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close() // ends the accept loop
		<-l.done
	})
	return l
}

// port returns the listener's port.
func (l *countingListener) port() string {
	_, p, _ := net.SplitHostPort(l.ln.Addr().String())
	return p
}

// A URL without a host is refused before any dial: go-redis would connect to
// localhost instead, a server that has nothing to do with the command.
func TestOpenRefusesURLWithoutHost(t *testing.T) {
	l := listenCounting(t)
	p := l.port()
	for _, u := range []string{
		"redis://:" + p + "/0",
		"redis://:" + p,
		"redis://@:" + p + "/0",
		"redis://user:s3cr3t@:" + p + "/0",
		"rediss://:s3cr3t@:" + p,
		"redis://[]:" + p + "/0",
	} {
		t.Run(u, func(t *testing.T) {
			before := l.accepted.Load()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, necroredis.Config{URL: u, Stream: unique("necro:test:")})
			if err == nil {
				_ = b.Close() // the test fails anyway
			}
			if !errors.Is(err, necroredis.ErrInvalidConfig) || !strings.Contains(err.Error(), "host") {
				t.Errorf("Open(%s) = %v, want ErrInvalidConfig naming the missing host", necroredis.MaskURL(u), err)
			}
			if n := l.accepted.Load() - before; n != 0 {
				t.Errorf("Open(%s) connected %d times to localhost:%s, want no connection", necroredis.MaskURL(u), n, p)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("Open(...) = %q, which shows the password", err)
			}
		})
	}
}

// A port out of range is a mistake in the URL, not a server that cannot be reached.
func TestOpenRefusesBadPort(t *testing.T) {
	for _, u := range []string{
		"redis://127.0.0.1:0/0",
		"redis://127.0.0.1:65536/0",
		"redis://127.0.0.1:99999999999/0",
		"rediss://:s3cr3t@127.0.0.1:70000",
	} {
		t.Run(u, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, necroredis.Config{URL: u, Stream: unique("necro:test:")})
			if err == nil {
				_ = b.Close() // the test fails anyway
			}
			if !errors.Is(err, necroredis.ErrInvalidConfig) || !strings.Contains(err.Error(), "port") {
				t.Errorf("Open(%s) = %v, want ErrInvalidConfig naming the port", necroredis.MaskURL(u), err)
			}
		})
	}
}

// A database the server does not have, or a negative one, is a mistake in the URL,
// and the error names it.
func TestOpenRefusesBadDatabase(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{Args: []string{"--databases", "4"}})
	tests := []struct {
		name, url, says string
	}{
		{"path beyond the databases", "redis://" + srv.Addr() + "/4", "database 4"},
		{"query beyond the databases", "redis://" + srv.Addr() + "/0?db=99", "database 99"},
		{"negative path", "redis://" + srv.Addr() + "/-1", "database -1"},
		{"negative query", "redis://" + srv.Addr() + "/?db=-2", "database -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := unique("necro:test:")
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, necroredis.Config{URL: tt.url, Stream: stream})
			if err == nil {
				_ = b.Close() // the test fails anyway
			}
			if !errors.Is(err, necroredis.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("Open(%s) = %v, want ErrInvalidConfig naming %q", tt.url, err, tt.says)
			}
			if got := mustDo(t, srv, "EXISTS", stream); got != "0" {
				t.Errorf("the stream exists in database 0 after Open(%s) failed (EXISTS = %s)", tt.url, got)
			}
		})
	}
	// The last database is fine.
	b, err := connOpen(t, necroredis.Config{URL: "redis://" + srv.Addr() + "/3"})
	if err != nil {
		t.Fatalf("Open(database 3 of 4) = %v", err)
	}
	db3 := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), DB: 3})
	t.Cleanup(func() { _ = db3.Close() }) // a test client: nothing to report
	connRoundTrip(t, b, db3)
}

// No error that prints the URL shows a password given in its query, wherever the URL
// goes wrong. go-redis takes no password from the query, so each is refused.
func TestURLErrorsMaskQueryPassword(t *testing.T) {
	const secret = "qu3ry-s3cr3t"
	l := listenCounting(t)
	tests := []struct {
		name string
		cfg  necroredis.Config
	}{
		{"password in the query", necroredis.Config{URL: "redis://127.0.0.1:" + l.port() + "/0?password=" + secret}},
		{"bad scheme", necroredis.Config{URL: "http://127.0.0.1:1/0?password=" + secret}},
		{"bad escape", necroredis.Config{URL: "redis://127.0.0.1:1/0?password=" + secret + "&x=%zz"}},
		{"bad escape in the host", necroredis.Config{URL: "redis://%zz:1/0?password=" + secret}},
		{"non-numeric port", necroredis.Config{URL: "redis://127.0.0.1:port/0?password=" + secret}},
		{"port out of range", necroredis.Config{URL: "redis://127.0.0.1:70000/0?password=" + secret}},
		{"no host", necroredis.Config{URL: "redis://:" + l.port() + "/0?password=" + secret}},
		{"bad database", necroredis.Config{URL: "redis://127.0.0.1:1/x?password=" + secret}},
		{"bad setting", necroredis.Config{URL: "redis://127.0.0.1:1/0?dial_timeout=x&password=" + secret}},
		{"unknown option", necroredis.Config{URL: "redis://127.0.0.1:1/0?token=" + secret}},
		{"leading space", necroredis.Config{URL: " redis://127.0.0.1:1/0?password=" + secret}},
		{"TLS without rediss", necroredis.Config{URL: "redis://127.0.0.1:1/0?password=" + secret, TLS: &tls.Config{MinVersion: tls.VersionTLS12}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs connLog
			tt.cfg.Logger = logs.logger()
			tt.cfg.Stream = unique("necro:test:")
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, tt.cfg)
			if err == nil {
				_ = b.Close() // the test fails anyway
				t.Fatalf("Open(%s) succeeded, want an error", necroredis.MaskURL(tt.cfg.URL))
			}
			if !errors.Is(err, necroredis.ErrInvalidConfig) {
				t.Errorf("Open(...) = %v, want ErrInvalidConfig", err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
				t.Errorf("the password in the query shows in the error %q or the logs %s", err, logs.String())
			}
			a, err := necroredis.OpenAdmin(ctx, tt.cfg)
			if err == nil {
				_ = a.Close() // the test fails anyway
				t.Fatalf("OpenAdmin(%s) succeeded, want an error", necroredis.MaskURL(tt.cfg.URL))
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("OpenAdmin(...) = %q, which shows the password in the query", err)
			}
		})
	}
	if n := l.accepted.Load(); n != 0 {
		t.Errorf("%d connections were made, want none: every URL is refused before a dial", n)
	}
}
