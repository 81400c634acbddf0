package redisproc_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/necrostack/necro/internal/redisproc"
)

// start runs a server in a fresh directory and stops it when the test ends. It skips
// the test when redis-server is missing, unless CI is set.
func start(t *testing.T, cfg redisproc.Config) *redisproc.Server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := redisproc.Start(cfg)
	if errors.Is(err, exec.ErrNotFound) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("Start(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// client returns a go-redis client for s with short timeouts, so that a dead server
// fails a command within a second.
func client(t *testing.T, s *redisproc.Server) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
	opt.MaxRetries = -1
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() }) // the test is over; a close error says nothing
	return c
}

func TestStartAnswersPing(t *testing.T) {
	s := start(t, redisproc.Config{Password: "pa ss/word"})
	if !s.Running() {
		t.Fatal("Running() = false right after Start")
	}
	if got, err := client(t, s).Ping(t.Context()).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING through go-redis with URL() %q = %q, %v; want PONG", s.URL(), got, err)
	}
	if got, err := s.Do(t.Context(), "PING"); err != nil || got != "PONG" {
		t.Fatalf("Do(PING) = %q, %v; want PONG", got, err)
	}
	if !strings.HasSuffix(s.Addr(), ":"+strconv.Itoa(s.Port())) {
		t.Errorf("Addr() = %q does not end in Port() %d", s.Addr(), s.Port())
	}
}

func TestKillRestartKeepsAppendOnlyData(t *testing.T) {
	s := start(t, redisproc.Config{AppendOnly: true, AppendFsync: "always"})
	c := client(t, s)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "before the crash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill() = %v", err)
	}
	if s.Running() {
		t.Error("Running() = true after Kill")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill succeeded, want the server unreachable")
	}
	if err := s.Kill(); err != nil {
		t.Errorf("a second Kill() = %v, want nothing to do", err)
	}
	port := s.Port()
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	if s.Port() != port || !s.Running() {
		t.Fatalf("after Restart: Port() = %d, Running() = %v; want %d, true", s.Port(), s.Running(), port)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "before the crash" {
		t.Fatalf("GET after SIGKILL and restart with appendfsync always = %q, %v; want the value written before", got, err)
	}
}

func TestRestartWhileRunningWithoutPersistenceStartsEmpty(t *testing.T) {
	s := start(t, redisproc.Config{})
	c := client(t, s)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart() of a running server = %v", err)
	}
	if n, err := c.Exists(t.Context(), "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after restart without persistence = %d, %v; want 0", n, err)
	}
}

func TestStopIsGracefulAndFinal(t *testing.T) {
	dir := t.TempDir()
	s := start(t, redisproc.Config{Dir: dir, AppendOnly: true, AppendFsync: "no"})
	c := client(t, s)
	if err := c.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if s.Running() {
		t.Error("Running() = true after Stop")
	}
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Fatal("PING after Stop succeeded, want the server gone")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("a second Stop() = %v, want nothing to do", err)
	}
	log, err := os.ReadFile(filepath.Join(dir, "redis.log"))
	if err != nil || !strings.Contains(string(log), "ready to exit") {
		t.Errorf("redis.log after Stop does not tell of a clean shutdown (%v):\n%s", err, log)
	}
	// A clean stop flushed the append-only file even with appendfsync no.
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart() after Stop = %v", err)
	}
	if got, err := c.Get(t.Context(), "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Stop and Restart = %q, %v; want v", got, err)
	}
}

func TestTwoServersGetTwoPorts(t *testing.T) {
	a, b := start(t, redisproc.Config{}), start(t, redisproc.Config{})
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers share %s", a.Addr())
	}
}

func TestFixedPort(t *testing.T) {
	a := start(t, redisproc.Config{})
	port := a.Port()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	b := start(t, redisproc.Config{Port: port})
	if b.Port() != port {
		t.Fatalf("Port() = %d, want the configured %d", b.Port(), port)
	}
	// A second server on a taken port fails, with the reason from its log.
	_, err := redisproc.Start(redisproc.Config{Dir: t.TempDir(), Port: port})
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Start on the taken port %d = %v; want an error quoting the server's log", port, err)
	}
}

func TestStartFailureQuotesTheLog(t *testing.T) {
	start(t, redisproc.Config{}) // skips without redis-server
	_, err := redisproc.Start(redisproc.Config{Dir: t.TempDir(), Args: []string{"--no-such-directive", "1"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-directive") {
		t.Fatalf("Start with a bad argument = %v; want an error quoting the server's complaint", err)
	}
}

func TestInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  redisproc.Config
		want string
	}{
		{"no directory", redisproc.Config{}, "Dir is empty"},
		{"missing directory", redisproc.Config{Dir: filepath.Join(dir, "missing")}, "no such file"},
		{"a file for a directory", redisproc.Config{Dir: file}, "not a directory"},
		{"port out of range", redisproc.Config{Dir: dir, Port: 70000}, "not a TCP port"},
		{"unknown fsync policy", redisproc.Config{Dir: dir, AppendOnly: true, AppendFsync: "sometimes"}, "sometimes"},
		{"fsync policy without the file", redisproc.Config{Dir: dir, AppendFsync: "always"}, "without AppendOnly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := redisproc.Start(tt.cfg)
			if err == nil {
				_ = s.Kill() // the test failed already
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start(%+v) = %v; want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}
