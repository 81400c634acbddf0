package redis_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

const tlsPassword = "tl5-s3cr3t-pw"

// A rediss:// URL with the server's certificate authority works end to end, whether the
// URL names the server by IP address or by name.
func TestTLSOpen(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{TLS: true, Password: tlsPassword})
	rdb := inspector(t, srv, "", tlsPassword)
	named := func(name string) *tls.Config {
		c := srv.TLSConfig()
		c.ServerName = name
		return c
	}
	tests := []struct {
		name string
		url  string
		tls  *tls.Config
	}{
		{"IP address", srv.URL(), srv.TLSConfig()},
		{"host name", strings.Replace(srv.URL(), "127.0.0.1", "localhost", 1), srv.TLSConfig()},
		{"ServerName of its own", srv.URL(), named("localhost")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.HasPrefix(tt.url, "rediss://") {
				t.Fatalf("URL %q of a TLS server is not rediss://", necroredis.MaskURL(tt.url))
			}
			var logs connLog
			b, err := connOpen(t, necroredis.Config{URL: tt.url, TLS: tt.tls, Logger: logs.logger()})
			if err != nil {
				t.Fatalf("Open(%s) with the CA = %v", necroredis.MaskURL(tt.url), err)
			}
			connRoundTrip(t, b, rdb)
			if h := b.Health(t.Context()); !h.Healthy || h.Err != nil {
				t.Errorf("Health() = %+v, want healthy", h)
			}
			if strings.Contains(logs.String(), tlsPassword) {
				t.Errorf("the logs show the password: %s", logs.String())
			}
		})
	}
}

// Without the certificate authority, or for another server name, the certificate is
// refused, and the error says so.
func TestTLSOpenRefusesUntrustedCertificate(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{TLS: true, Password: tlsPassword})
	otherName := srv.TLSConfig()
	otherName.ServerName = "redis.example.com"
	tests := []struct {
		name string
		tls  *tls.Config
	}{
		{"no TLS config", nil},
		{"system roots only", &tls.Config{MinVersion: tls.VersionTLS12}},
		{"another server name", otherName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs connLog
			err := openWithin(t, necroredis.Config{URL: srv.URL(), TLS: tt.tls, Logger: logs.logger()})
			if err == nil {
				t.Fatal("Open() with an untrusted certificate succeeded, want an error")
			}
			t.Logf("Open() = %v", err)
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("Open() = %q, want it to mention the certificate", err)
			}
			if strings.Contains(err.Error(), tlsPassword) || strings.Contains(logs.String(), tlsPassword) {
				t.Errorf("the password shows in the error %q or the logs %s", err, logs.String())
			}
		})
	}
}

// The wrong protocol on either side fails Open within its context's deadline: plain
// text against a TLS port, and TLS against a plain port.
func TestTLSProtocolMismatchFails(t *testing.T) {
	tlsSrv := redistest.Start(t, redistest.Config{TLS: true})
	plainSrv := redistest.Start(t, redistest.Config{})
	tests := []struct {
		name string
		cfg  necroredis.Config
	}{
		{"redis:// against the TLS port", necroredis.Config{URL: "redis://" + tlsSrv.Addr() + "/0"}},
		{"redis:// with a TLS config against the TLS port", necroredis.Config{URL: "redis://" + tlsSrv.Addr() + "/0", TLS: tlsSrv.TLSConfig()}},
		{"rediss:// against a plain port", necroredis.Config{URL: "rediss://" + plainSrv.Addr() + "/0", TLS: tlsSrv.TLSConfig()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := openWithin(t, tt.cfg); err == nil {
				t.Fatalf("Open(%s) succeeded, want an error", tt.cfg.URL)
			} else {
				t.Logf("Open(%s) = %v", tt.cfg.URL, err)
			}
		})
	}
}

// openWithin opens a store that is expected to fail, with a context of 3s, and fails
// the test when Open runs much past that deadline or hangs. A store that opens is
// closed at once.
func openWithin(t *testing.T, cfg necroredis.Config) error {
	t.Helper()
	const deadline, slack = 3 * time.Second, 3 * time.Second
	cfg.Stream = unique("necro:test:")
	cfg.Group = unique("test-group-")
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	type result struct {
		b   *necroredis.Backend
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		b, err := necroredis.Open(ctx, cfg)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		if took := time.Since(start); took > deadline+slack {
			t.Errorf("Open took %v, want it to end by its context's deadline of %v", took, deadline)
		}
		if r.err == nil {
			_ = r.b.Close() // the caller reports the unexpected success
		}
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatalf("Open(%s) hangs: no answer after 30s with a context of %v", necroredis.MaskURL(cfg.URL), deadline)
		return errors.New("unreachable")
	}
}

// rediss:// against a server that speaks plain text fails at once, saying that the
// server does not speak TLS, rather than waiting out the context: the server takes the
// handshake for the start of a command and never answers it.
func TestTLSAgainstPlainServerSaysSo(t *testing.T) {
	tlsSrv := redistest.Start(t, redistest.Config{TLS: true})
	for name, password := range map[string]string{"no password": "", "password": "pl4in-pw"} {
		t.Run(name, func(t *testing.T) {
			plain := redistest.Start(t, redistest.Config{Password: password})
			u := "rediss://" + plain.Addr() + "/0"
			if password != "" {
				u = "rediss://:" + password + "@" + plain.Addr() + "/0"
			}
			// A long deadline: the error must come from the check, not from the deadline.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, necroredis.Config{URL: u, TLS: tlsSrv.TLSConfig(), Stream: unique("necro:test:")})
			if err == nil {
				_ = b.Close() // the test fails anyway
				t.Fatal("Open(rediss:// against a plain server) succeeded, want an error")
			}
			if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "does not speak TLS") {
				t.Errorf("Open(rediss:// against a plain server) = %v, want an error saying the server does not speak TLS", err)
			}
			if password != "" && strings.Contains(err.Error(), password) {
				t.Errorf("Open(...) = %q, which shows the password", err)
			}
		})
	}
	// The check does not get in the way of a TLS server.
	b, err := connOpen(t, necroredis.Config{URL: tlsSrv.URL(), TLS: tlsSrv.TLSConfig()})
	if err != nil {
		t.Fatalf("Open(TLS server) = %v", err)
	}
	connRoundTrip(t, b, inspector(t, tlsSrv, "", ""))
}
