// Package redistest runs a real, throwaway redis-server for tests: on a free loopback
// port, in its own temporary directory, with the persistence a test asks for, and with
// kill -9 and restart on demand so that fault tests can take Redis away and bring it
// back. It is a thin testing wrapper around internal/redisproc, which runs the process.
//
// With Config.TLS the server speaks only TLS, with a certificate from a throwaway
// certificate authority made for the test; [Server.TLSConfig] trusts that authority.
//
// When redis-server is not installed, or a TLS test finds one built without TLS, the
// test is skipped, except when the CI environment variable is set: there a missing
// server fails the test, so CI can never pass by skipping what it was meant to run.
package redistest

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/necrostack/necro/internal/redisproc"
)

// Config says how to run the server. The zero value keeps nothing on disk.
type Config struct {
	// AppendOnly turns on the append-only file; AppendFsync is its fsync policy
	// ("always", "everysec" or "no"; empty means "always").
	AppendOnly  bool
	AppendFsync string
	// Password, when set, is required of every client (requirepass).
	Password string
	// TLS makes the server speak only TLS, with a certificate for 127.0.0.1 and
	// localhost issued by a certificate authority made for this server. Clients do not
	// need a certificate of their own.
	TLS bool
	// Args are extra command-line arguments, such as "--maxmemory-policy", "noeviction".
	Args []string
}

// A Server is one redis-server process. Its methods are for the test goroutine.
type Server struct {
	t    testing.TB
	proc *redisproc.Server
}

// Start runs a redis-server for the test and stops it when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	proc, err := redisproc.Start(redisproc.Config{
		Dir:         t.TempDir(),
		AppendOnly:  cfg.AppendOnly,
		AppendFsync: cfg.AppendFsync,
		Password:    cfg.Password,
		TLS:         cfg.TLS,
		Args:        cfg.Args,
	})
	if err != nil {
		skipOrFatal(t, err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Error(err)
		}
	})
	return &Server{t: t, proc: proc}
}

// skipOrFatal ends a test whose server did not start: skipped when what is missing is
// redis-server or its TLS, failed when CI is set or anything else went wrong.
func skipOrFatal(t testing.TB, err error) {
	t.Helper()
	missing := errors.Is(err, exec.ErrNotFound) || errors.Is(err, redisproc.ErrTLSUnsupported)
	switch {
	case missing && os.Getenv("CI") != "":
		t.Fatalf("%v; CI is set, so this fails rather than skips: .ci/run must install a redis-server that can do this", err)
	case missing:
		t.Skip(err)
	default:
		t.Fatal(err)
	}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.proc.Addr() }

// URL returns a redis:// URL for the server, or rediss:// with TLS, with the password
// when one is set.
func (s *Server) URL() string { return s.proc.URL() }

// TLSConfig returns a client TLS configuration that trusts the server's certificate
// authority, or nil when the server does not speak TLS. Each call returns a new one.
func (s *Server) TLSConfig() *tls.Config { return s.proc.TLSConfig() }

// Kill ends the server with SIGKILL, as a crash would, and waits until it is gone.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.proc.Kill(); err != nil {
		s.t.Fatalf("kill redis-server: %v", err)
	}
}

// Restart starts the server again on the same port and directory, so that an
// append-only file written before a Kill is read back. It waits until the server
// answers.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.proc.Restart(); err != nil {
		s.t.Fatalf("restart redis-server: %v", err)
	}
}

// Do sends one command over a fresh connection, authenticating first when the server
// has a password, and returns the reply as text: a simple or bulk string, an integer,
// or an error reply prefixed with "ERR:". It is for tests to inspect the server without
// depending on the client library under test; a reply takes at most 5s.
func (s *Server) Do(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.proc.Do(ctx, args...)
}
