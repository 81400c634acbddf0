package main

import (
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/necrostack/necro/internal/redistest"
)

// acceptCounter listens on a loopback port of its own and counts the connections it
// gets, closing each at once: a command pointed at it must make none.
func acceptCounter(t *testing.T) (port string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			accepted.Add(1)
			_ = c.Close() // nothing to say to it
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close() // ends the accept loop
		<-done
	})
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, accepted
}

// A Redis URL that cannot work is a usage error (exit 2) for every command, in one
// line that shows no password, and nothing reaches any server: not a server on
// localhost for a URL without a host, not the one in NECRO_REDIS_URL for an empty
// --redis.
func TestRedisConfigMistakesExitUsage(t *testing.T) {
	const secret = "c0nfig-s3cret"
	srv := redistest.Start(t, redistest.Config{Args: []string{"--databases", "2"}})
	port, accepted := acceptCounter(t)
	emptyFile := t.TempDir() + "/url"
	if err := os.WriteFile(emptyFile, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string // the URL flags
		env  string   // NECRO_REDIS_URL
		says string
	}{
		{"no host", []string{"--redis", "redis://:" + secret + "@:" + port + "/0"}, "", "host"},
		{"no host, port only", []string{"--redis", "redis://:" + port}, "", "host"},
		{"port 0", []string{"--redis", "redis://127.0.0.1:0/0"}, "", "port"},
		{"port out of range", []string{"--redis", "redis://:" + secret + "@127.0.0.1:70000/0"}, "", "port"},
		{"database out of range", []string{"--redis", "redis://" + srv.Addr() + "/5"}, "", "database 5"},
		{"negative database", []string{"--redis", "redis://" + srv.Addr() + "/-1"}, "", "database -1"},
		{"password in the query", []string{"--redis", "redis://127.0.0.1:" + port + "/0?password=" + secret}, "", "query"},
		{"empty --redis", []string{"--redis", ""}, srv.URL(), "--redis is empty"},
		{"blank --redis", []string{"--redis", "  "}, srv.URL(), "--redis is empty"},
		{"empty URL file", []string{"--redis-url-file", emptyFile}, srv.URL(), "holds no URL"},
		{"blank NECRO_REDIS_URL", nil, " ", "NECRO_REDIS_URL is blank"},
	}
	commands := [][]string{{"run", "chain"}, {"worker", "chain"}, {"emit", "--type", "t"}, {"inspect"}}
	for _, tt := range tests {
		for _, cmd := range commands {
			t.Run(tt.name+"/"+cmd[0], func(t *testing.T) {
				c := newCLI()
				if tt.env != "" {
					c.vars["NECRO_REDIS_URL"] = tt.env
				}
				got := runOrStop(t, c, append(slices.Clone(cmd), tt.args...)...)
				if got != exitUsage {
					t.Errorf("exit %d, want %d\n%s", got, exitUsage, c.output())
				}
				errs := errorLines(c.stderr.String())
				if len(errs) != 1 || !strings.HasPrefix(errs[0], "necro-actors "+cmd[0]+": ") || !strings.Contains(errs[0], tt.says) {
					t.Errorf("stderr has %d error lines, want one naming %q:\n%s", len(errs), tt.says, c.stderr.String())
				}
				if out := c.stdout.String() + c.stderr.String(); strings.Contains(out, secret) {
					t.Errorf("the password shows in the output:\n%s", c.output())
				}
			})
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections reached localhost:%s, want none", n, port)
	}
	if got, err := srv.Do("DBSIZE"); err != nil || got != "0" {
		t.Errorf("the server holds %s keys (%v), want none: no command may have reached it", got, err)
	}
}

// rediss:// against a server without TLS fails at once with the auth/TLS exit code,
// saying the server does not speak TLS.
func TestTLSAgainstPlainServerExitsAuth(t *testing.T) {
	plain := redistest.Start(t, redistest.Config{})
	for _, cmd := range [][]string{{"emit", "--type", "t"}, {"inspect"}} {
		t.Run(cmd[0], func(t *testing.T) {
			c := newCLI()
			got := c.run(t, append(slices.Clone(cmd), "--redis", "rediss://"+plain.Addr()+"/0")...)
			if got != exitAuth {
				t.Errorf("exit %d, want %d\n%s", got, exitAuth, c.output())
			}
			if !strings.Contains(c.stderr.String(), "does not speak TLS") {
				t.Errorf("stderr does not say the server does not speak TLS:\n%s", c.output())
			}
		})
	}
}

// A worker whose Redis user lacks a command the store needs does not start: no ready
// line, exit 4, and the error names the command.
func TestWorkerRefusesUserWithoutPermissions(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const pw = "w0rker-pw"
	if got, err := srv.Do("ACL", "SETUSER", "necro", "on", ">"+pw, "~*", "&*", "+@all", "-xclaim"); err != nil || got != "OK" {
		t.Fatalf("ACL SETUSER = %q, %v", got, err)
	}
	c := newCLI()
	if got := runOrStop(t, c, "worker", "chain", "--redis", "redis://necro:"+pw+"@"+srv.Addr()+"/0"); got != exitAuth {
		t.Errorf("exit %d, want %d\n%s", got, exitAuth, c.output())
	}
	if !strings.Contains(c.stderr.String(), "XCLAIM") {
		t.Errorf("stderr does not name XCLAIM:\n%s", c.output())
	}
	if strings.Contains(c.stdout.String()+c.stderr.String(), pw) {
		t.Errorf("the password shows in the output:\n%s", c.output())
	}
}

// runOrStop runs a command that is expected to fail at once and returns its exit code.
// A worker that starts all the same (it prints its ready line) fails the test and is
// stopped, so that the test ends.
func runOrStop(t *testing.T, c *cli, args ...string) int {
	t.Helper()
	p := c.start(t, args...)
	for {
		select {
		case <-p.done:
			return p.code
		case line := <-c.stdout.lines:
			if strings.Contains(line, `"event":"ready"`) {
				t.Errorf("%s started: %s; want it refused", args[0], line)
				c.signals <- sigterm // a drain, then a stop at once
				c.signals <- sigterm
				return p.wait(t, c)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%q neither started nor ended within 30s\n%s", args, c.output())
		}
	}
}
