package redistest_test

import (
	"bufio"
	"net"
	"strings"
	"testing"

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
