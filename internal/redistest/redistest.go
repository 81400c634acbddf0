// Package redistest runs a real, throwaway redis-server for tests: on a free loopback
// port, in its own temporary directory, with the persistence a test asks for, and with
// kill -9 and restart on demand so that fault tests can take Redis away and bring it
// back.
//
// With Config.TLS the server speaks only TLS, with a certificate from a throwaway
// certificate authority made for the test; [Server.TLSConfig] trusts that authority.
//
// When redis-server is not installed, or a TLS test finds one built without TLS, the
// test is skipped, except when the CI environment variable is set: there a missing
// server fails the test, so CI can never pass by skipping what it was meant to run.
package redistest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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
	cfg  Config
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}  // closed when the process has exited
	ca   *x509.CertPool // the authority that issued the server's certificate; nil without TLS
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
	if cfg.TLS {
		if s.ca, err = writeCertificates(s.dir); err != nil {
			t.Fatalf("make TLS certificates: %v", err)
		}
	}
	s.start(bin)
	t.Cleanup(s.stop)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns a redis:// URL for the server, or rediss:// with TLS, with the password
// when one is set.
func (s *Server) URL() string {
	scheme := "redis"
	if s.cfg.TLS {
		scheme = "rediss"
	}
	if s.cfg.Password != "" {
		return fmt.Sprintf("%s://:%s@%s/0", scheme, s.cfg.Password, s.Addr())
	}
	return fmt.Sprintf("%s://%s/0", scheme, s.Addr())
}

// TLSConfig returns a client TLS configuration that trusts the server's certificate
// authority, or nil when the server does not speak TLS. Each call returns a new one.
func (s *Server) TLSConfig() *tls.Config {
	if s.ca == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.ca, MinVersion: tls.VersionTLS12}
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
		"--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"),
	}
	if s.cfg.TLS {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", filepath.Join(s.dir, "server.crt"),
			"--tls-key-file", filepath.Join(s.dir, "server.key"),
			"--tls-ca-cert-file", filepath.Join(s.dir, "ca.crt"),
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
	args = append(args, s.cfg.Args...)
	cmd := exec.Command(bin, args...)
	dieWithParent(cmd)
	// Errors in the arguments go to stderr, not to the log file.
	out, err := os.Create(filepath.Join(s.dir, "redis.out"))
	if err != nil {
		s.t.Fatalf("create redis-server output file: %v", err)
	}
	defer out.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = out, out
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
			stdout, _ := os.ReadFile(filepath.Join(s.dir, "redis.out"))
			logged, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			log := strings.TrimSpace(string(stdout) + "\n" + string(logged))
			s.cmd = nil
			if s.cfg.TLS && withoutTLS(log) {
				msg := fmt.Sprintf("redis-server %s cannot speak TLS (build it with BUILD_TLS=yes): %s", bin, log)
				if os.Getenv("CI") != "" {
					s.t.Fatalf("%s; CI is set, so this fails rather than skips", msg)
				}
				s.t.Skip(msg)
			}
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
	conn, err := s.dial()
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

// dial opens a connection to the server, over TLS when the server speaks it.
func (s *Server) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if s.cfg.TLS {
		return tls.DialWithDialer(d, "tcp", s.Addr(), s.TLSConfig())
	}
	return d.Dial("tcp", s.Addr())
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

// writeCertificates makes a certificate authority and a server certificate it issues,
// for 127.0.0.1 and localhost and valid for a day, and writes ca.crt, server.crt and
// server.key into dir. It returns a pool holding the authority.
func writeCertificates(dir string) (*x509.CertPool, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	files := []struct {
		name, typ string
		der       []byte
	}{{"ca.crt", "CERTIFICATE", caDER}, {"server.crt", "CERTIFICATE", der}, {"server.key", "PRIVATE KEY", keyDER}}
	for _, f := range files {
		data := pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})
		if err := os.WriteFile(filepath.Join(dir, f.name), data, 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}
