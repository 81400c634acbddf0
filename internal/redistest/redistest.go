// Package redistest runs a real, throwaway redis-server for tests: on a free loopback
// port, in its own temporary directory, with the persistence a test asks for, and with
// kill -9 and restart on demand so that fault tests can take Redis away and bring it
// back.
//
// When redis-server is not installed the test is skipped, except when the CI
// environment variable is set: there a missing server fails the test, so CI can never
// pass by skipping what it was meant to run.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Config says how to run the server. The zero value keeps nothing on disk.
type Config struct {
	// AppendOnly turns on the append-only file; AppendFsync is its fsync policy
	// ("always", "everysec" or "no"; empty means "always").
	AppendOnly  bool
	AppendFsync string
	// Password, when set, is required of every client (requirepass).
	Password string
	// Args are extra command-line arguments, such as "--maxmemory-policy", "noeviction".
	Args []string
}

// A Server is one redis-server process. Its methods are for the test goroutine.
type Server struct {
	t    testing.TB
	cfg  Config
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// Start runs a redis-server for the test and stops it when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH, and CI is set: .ci/run must install it (%v)", err)
		}
		t.Skipf("redis-server not found on PATH: %v", err)
	}
	s := &Server{t: t, cfg: cfg, dir: t.TempDir()}
	s.port, err = freePort()
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	s.start(bin)
	t.Cleanup(s.stop)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns a redis:// URL for the server, with the password when one is set.
func (s *Server) URL() string {
	if s.cfg.Password != "" {
		return fmt.Sprintf("redis://:%s@%s/0", s.cfg.Password, s.Addr())
	}
	return fmt.Sprintf("redis://%s/0", s.Addr())
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it is gone.
func (s *Server) Kill() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL) // it may have exited already; Wait tells
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port and directory, so that an
// append-only file written before a Kill is read back. It waits until the server
// answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	s.start(bin)
}

func (s *Server) start(bin string) {
	s.t.Helper()
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"),
	}
	if s.cfg.AppendOnly {
		fsync := s.cfg.AppendFsync
		if fsync == "" {
			fsync = "always"
		}
		args = append(args, "--appendonly", "yes", "--appendfsync", fsync)
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.cfg.Password != "" {
		args = append(args, "--requirepass", s.cfg.Password)
	}
	args = append(args, s.cfg.Args...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a killed server says nothing new
		close(done)
	}()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := s.Do("PING")
		if err == nil && (reply == "PONG" || strings.Contains(reply, "NOAUTH")) {
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer within 10s: %v", s.Addr(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM) // a clean stop; Kill follows if it hangs
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		s.cmd = nil
	}
}

// Do sends one command over a fresh connection, authenticating first when the server
// has a password, and returns the reply as text: a simple or bulk string, an integer,
// or an error reply prefixed with "ERR:". It is for tests to inspect the server without
// depending on the client library under test.
func (s *Server) Do(args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second)) // a fresh conn: cannot fail
	r := bufio.NewReader(conn)
	if s.cfg.Password != "" {
		if _, err := roundTrip(conn, r, "AUTH", s.cfg.Password); err != nil {
			return "", err
		}
	}
	return roundTrip(conn, r, args...)
}

func roundTrip(conn net.Conn, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "ERR:" + line[1:], nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", line)
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
	return "", fmt.Errorf("reply type %q not supported by this helper", line[0])
}

// freePort asks the kernel for a free loopback port. Another process could take it
// before redis-server binds it; start then fails loudly rather than silently.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
