package redisproc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config says how to run a server. Dir is required; every other field's zero value is
// a default.
type Config struct {
	// Dir holds the server's files: the append-only file, the server's log (redis.log),
	// what it printed before its log was open (redis.out) and, with TLS, its
	// certificates. It must exist; the caller owns it, and one server uses it at a time.
	Dir string
	// Port is the loopback port to listen on; zero picks a free one.
	Port int
	// AppendOnly turns on the append-only file; AppendFsync is its fsync policy
	// ("always", "everysec" or "no"; empty means "always"). Without AppendOnly the
	// server keeps nothing on disk, and a restart starts empty.
	AppendOnly  bool
	AppendFsync string
	// Password, when set, is required of every client (requirepass).
	Password string
	// TLS makes the server speak only TLS, with a certificate for 127.0.0.1 and
	// localhost issued by a certificate authority made for this server and written
	// into Dir; [Server.TLSConfig] trusts it. Clients need no certificate of their own.
	TLS bool
	// Args are extra command-line arguments, such as "--maxmemory-policy", "noeviction".
	Args []string
}

// ErrTLSUnsupported is returned by [Start] when Config.TLS asks for TLS from a
// redis-server built without it.
var ErrTLSUnsupported = errors.New("redisproc: redis-server cannot speak TLS (build it with BUILD_TLS=yes)")

// startTimeout bounds the wait for a starting server's first PONG. Loading an
// append-only file of a test or chaos run takes well under a second.
const startTimeout = 10 * time.Second

// stopTimeout bounds the wait for a server that was asked to stop before it is killed.
const stopTimeout = 10 * time.Second

// A Server is one redis-server process. Its methods are safe for concurrent use; Kill,
// Restart and Stop run one at a time.
//
// The owner must end the server with [Server.Stop] or [Server.Kill]; until then a
// goroutine of this package waits for the process.
type Server struct {
	cfg  Config
	bin  string
	port int
	ca   *x509.CertPool // the authority that issued the server's certificate; nil without TLS

	mu   sync.Mutex // guards cmd and done, and serializes Kill, Restart and Stop
	cmd  *exec.Cmd  // nil when no process was started since the last Kill or Stop
	done chan struct{}
}

// Start runs a redis-server and returns once it answers PING. A server that does not
// start within 10s is killed, and the error includes the tail of its log. A missing
// redis-server gives an error matching [exec.ErrNotFound]; TLS from a server built
// without it gives [ErrTLSUnsupported].
func Start(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	s := &Server{cfg: cfg, bin: bin, port: cfg.Port}
	if cfg.TLS {
		if s.ca, err = writeCertificates(cfg.Dir); err != nil {
			return nil, fmt.Errorf("redisproc: make TLS certificates in %s: %w", cfg.Dir, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A free port can be taken by another process before the server binds it; with a
	// port of our own choosing, choose again.
	for attempt := 1; ; attempt++ {
		if cfg.Port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, fmt.Errorf("redisproc: find a free port: %w", err)
			}
		}
		err = s.start()
		switch {
		case err == nil:
			return s, nil
		case cfg.Port != 0 || attempt == 3 || !errors.Is(err, errPortTaken):
			return nil, err
		}
	}
}

func (cfg Config) validate() error {
	if cfg.Dir == "" {
		return errors.New("redisproc: Config.Dir is empty; the server needs a data directory")
	}
	if fi, err := os.Stat(cfg.Dir); err != nil {
		return fmt.Errorf("redisproc: data directory: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("redisproc: data directory %s is not a directory", cfg.Dir)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return fmt.Errorf("redisproc: Config.Port %d is not a TCP port", cfg.Port)
	}
	switch cfg.AppendFsync {
	case "", "always", "everysec", "no":
	default:
		return fmt.Errorf("redisproc: Config.AppendFsync %q is none of always, everysec, no", cfg.AppendFsync)
	}
	if cfg.AppendFsync != "" && !cfg.AppendOnly {
		return fmt.Errorf("redisproc: Config.AppendFsync %q without AppendOnly", cfg.AppendFsync)
	}
	return nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the port the server listens on, the same across restarts.
func (s *Server) Port() int { return s.port }

// Dir returns the server's data directory.
func (s *Server) Dir() string { return s.cfg.Dir }

// URL returns a redis:// URL for the server, or rediss:// with TLS, with the password
// when one is set, and database 0.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.cfg.TLS {
		u.Scheme = "rediss"
	}
	if s.cfg.Password != "" {
		u.User = url.UserPassword("", s.cfg.Password)
	}
	return u.String()
}

// TLSConfig returns a client TLS configuration that trusts the server's certificate
// authority, or nil when the server does not speak TLS. Each call returns a new one.
func (s *Server) TLSConfig() *tls.Config {
	if s.ca == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.ca, MinVersion: tls.VersionTLS12}
}

// Running reports whether the server process is alive: started, and neither ended by
// this package nor exited on its own.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Kill ends the server with SIGKILL, as a crash would, and returns once the process is
// gone. Killing a server that is not running does nothing.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kill()
}

// kill is Kill with s.mu held.
func (s *Server) kill() error {
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("redisproc: kill redis-server on %s: %w", s.Addr(), err)
	}
	<-s.done
	s.cmd = nil
	return nil
}

// Restart kills the server if it is running and starts it again on the same port and
// directory, so that an append-only file written before is read back. It returns once
// the server answers PING.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		return err
	}
	return s.start()
}

// Stop ends the server cleanly with SIGTERM, which flushes the append-only file, and
// returns once the process is gone. A server still running after 10s is killed, and
// Stop says so. Stopping a server that is not running does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	_ = s.cmd.Process.Signal(syscall.SIGTERM) // it may have exited already; done tells
	select {
	case <-s.done:
		return nil
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill() // the error would only say that it exited meanwhile
		<-s.done
		return fmt.Errorf("redisproc: redis-server on %s did not stop within %v of SIGTERM; killed it", s.Addr(), stopTimeout)
	}
}

// errPortTaken marks a start that failed because the port was in use.
var errPortTaken = errors.New("port in use")

// start runs the process on s.port and waits for PONG; s.mu is held.
func (s *Server) start() error {
	dir := s.cfg.Dir
	cmd := exec.Command(s.bin, s.args()...)
	dieWithParent(cmd)
	// Errors in the arguments go to stderr, not to the log file. Each start begins the
	// file anew, so that it holds this start's complaints only.
	out, err := os.Create(filepath.Join(dir, "redis.out"))
	if err != nil {
		return fmt.Errorf("redisproc: %w", err)
	}
	defer out.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = out, out
	logStart := fileSize(filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisproc: start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a killed server says nothing new
		close(done)
	}()
	s.cmd, s.done = cmd, done
	return s.waitReady(logStart)
}

// args returns the server's command line.
func (s *Server) args() []string {
	dir := s.cfg.Dir
	args := []string{
		"--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"),
	}
	if s.cfg.TLS {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", filepath.Join(dir, "server.crt"),
			"--tls-key-file", filepath.Join(dir, "server.key"),
			"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"),
			"--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
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
	return append(args, s.cfg.Args...)
}

// waitReady waits until the process just started answers PING, and kills it when it
// does not within startTimeout. logStart is the size of its log file before it started.
func (s *Server) waitReady(logStart int64) error {
	pid, done := strconv.Itoa(s.cmd.Process.Pid), s.done
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		reply, err := s.Do(ctx, "PING")
		if err == nil && reply == "PONG" {
			// Another server may hold the port this one failed to bind: the answer
			// counts only if it comes from our process.
			reply, err = s.Do(ctx, "INFO", "server")
			if err == nil && infoField(reply, "process_id") == pid {
				cancel()
				return nil
			}
			if err == nil {
				err = errors.New("another process answers on that port")
			}
		} else if err == nil {
			err = fmt.Errorf("PING answered %q", reply)
		}
		cancel()
		select {
		case <-done:
			s.cmd = nil
			log := s.logSince(logStart)
			switch {
			case s.cfg.TLS && withoutTLS(log):
				return fmt.Errorf("%w: %s: %s", ErrTLSUnsupported, s.bin, log)
			case strings.Contains(log, "Address already in use"):
				return fmt.Errorf("redisproc: redis-server could not listen on %s (%w): %s", s.Addr(), errPortTaken, log)
			}
			return fmt.Errorf("redisproc: redis-server on %s exited at start: %s", s.Addr(), log)
		default:
		}
		if time.Now().After(deadline) {
			_ = s.kill() // the error to report is that it did not start
			return fmt.Errorf("redisproc: redis-server on %s did not answer PING within %v (%v); its log ends: %s",
				s.Addr(), startTimeout, err, s.logSince(logStart))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logSince returns the tail of what this start of the server wrote: its stderr and
// what its log file gained after offset.
func (s *Server) logSince(offset int64) string {
	stderr, _ := os.ReadFile(filepath.Join(s.cfg.Dir, "redis.out")) // a missing file is an empty one
	logged, _ := os.ReadFile(filepath.Join(s.cfg.Dir, "redis.log"))
	if offset <= int64(len(logged)) {
		logged = logged[offset:]
	}
	return tail(strings.TrimSpace(string(stderr)+"\n"+string(logged)), 20)
}

// infoField returns the value of one field of an INFO reply, or "".
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// tail returns the last n lines of text.
func tail(text string, n int) string {
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// fileSize returns the size of the file at path, or 0 when it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// freePort asks the kernel for a free loopback port. Another process could take it
// before redis-server binds it; Start then tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withoutTLS reports redis-server output that says the server cannot speak TLS: an
// unknown tls-* directive (built without TLS), or a missing TLS connection type (TLS
// built as a module that is not loaded).
func withoutTLS(out string) bool {
	l := strings.ToLower(out)
	if !strings.Contains(l, "tls") {
		return false
	}
	for _, sign := range []string{"bad directive", "failed finding connection listener", "not supported", "not enabled", "not built"} {
		if strings.Contains(l, sign) {
			return true
		}
	}
	return false
}
