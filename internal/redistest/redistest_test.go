package redistest_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro/internal/redistest"
)

func mustDo(t *testing.T, s *redistest.Server, args ...string) string {
	t.Helper()
	reply, err := s.Do(args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return reply
}

func TestKillAndRestartKeepsAppendOnlyData(t *testing.T) {
	s := redistest.Start(t, redistest.Config{AppendOnly: true, AppendFsync: "always"})
	if got := mustDo(t, s, "SET", "k", "v1"); got != "OK" {
		t.Fatalf("SET = %q, want OK", got)
	}
	s.Kill()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING after Kill succeeded, want the server gone")
	}
	s.Restart()
	if got := mustDo(t, s, "GET", "k"); got != "v1" {
		t.Fatalf("GET after kill -9 and restart with appendfsync always = %q, want v1", got)
	}
}

func TestRestartWithoutPersistenceLosesData(t *testing.T) {
	s := redistest.Start(t, redistest.Config{})
	mustDo(t, s, "SET", "k", "v1")
	s.Restart()
	if got := mustDo(t, s, "GET", "k"); got != "" {
		t.Fatalf("GET after restart without persistence = %q, want nothing", got)
	}
}

func TestPasswordIsRequired(t *testing.T) {
	s := redistest.Start(t, redistest.Config{Password: "s3cret"})
	if got := mustDo(t, s, "PING"); got != "PONG" {
		t.Fatalf("PING with the password = %q, want PONG", got)
	}
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "-NOAUTH") {
		t.Fatalf("PING without the password = %q, %v; want a NOAUTH error", line, err)
	}
	if !strings.Contains(s.URL(), ":s3cret@127.0.0.1:") {
		t.Errorf("URL() = %q, want the password in it", s.URL())
	}
	bare := redistest.Start(t, redistest.Config{})
	if bare.Addr() == s.Addr() {
		t.Fatalf("two servers share %s", s.Addr())
	}
	if strings.Contains(bare.URL(), "@") {
		t.Errorf("URL() without a password = %q, want no credentials", bare.URL())
	}
}

func TestTLSServerSpeaksOnlyTLS(t *testing.T) {
	s := redistest.Start(t, redistest.Config{TLS: true, Password: "tl5pw"})
	if got := mustDo(t, s, "PING"); got != "PONG" {
		t.Fatalf("PING over TLS = %q, want PONG", got)
	}
	if want := "rediss://:tl5pw@" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		cfg := s.TLSConfig()
		cfg.ServerName = name
		conn, err := tls.Dial("tcp", s.Addr(), cfg)
		if err != nil {
			t.Fatalf("TLS dial with ServerName %q and TLSConfig() = %v, want the certificate trusted", name, err)
		}
		_ = conn.Close() // only the handshake was tested
	}
	if _, err := tls.Dial("tcp", s.Addr(), &tls.Config{ServerName: "127.0.0.1"}); err == nil {
		t.Error("TLS dial without the test CA succeeded, want the certificate rejected")
	}
	// Plain text on the TLS port gets no Redis reply.
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second)) // a fresh conn: cannot fail
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")) {
		t.Fatalf("plain PING on the TLS port = %q, want no Redis reply", line)
	}
	plain := redistest.Start(t, redistest.Config{})
	if plain.TLSConfig() != nil {
		t.Error("TLSConfig() of a server without TLS is not nil")
	}
	if !strings.HasPrefix(plain.URL(), "redis://") {
		t.Errorf("URL() of a server without TLS = %q, want redis://", plain.URL())
	}
}

func TestTLSRestartKeepsCertificates(t *testing.T) {
	s := redistest.Start(t, redistest.Config{TLS: true, AppendOnly: true})
	mustDo(t, s, "SET", "k", "v1")
	s.Restart()
	if got := mustDo(t, s, "GET", "k"); got != "v1" {
		t.Fatalf("GET over TLS after restart = %q, want v1", got)
	}
}
