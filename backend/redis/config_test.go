package redis_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// connLog collects what a store logs, as JSON lines, safely for the store's own
// goroutines.
type connLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *connLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *connLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// logger returns a logger writing to l at every level.
func (l *connLog) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the logged records of the level, each as its decoded fields.
func (l *connLog) records(t *testing.T, level string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["level"] == level {
			out = append(out, rec)
		}
	}
	return out
}

// naming returns the records whose message or attributes mention word.
func naming(recs []map[string]any, word string) []map[string]any {
	var out []map[string]any
	for _, rec := range recs {
		text, _ := json.Marshal(rec)
		if strings.Contains(string(text), word) {
			out = append(out, rec)
		}
	}
	return out
}

// connOpen opens a store on a fresh stream with cfg, within 10s, and closes it when
// the test ends.
func connOpen(t *testing.T, cfg necroredis.Config) (*necroredis.Backend, error) {
	t.Helper()
	if cfg.Stream == "" {
		cfg.Stream = unique("necro:test:")
	}
	if cfg.Group == "" {
		cfg.Group = unique("test-group-")
	}
	if cfg.Block == 0 {
		cfg.Block = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := necroredis.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
			t.Errorf("Close() = %v", err)
		}
	})
	return b, nil
}

// connRoundTrip enqueues one event, pulls it back and acks it, and checks through rdb
// that nothing is left pending.
func connRoundTrip(t *testing.T, b *necroredis.Backend, rdb *goredis.Client) {
	t.Helper()
	ev, err := necro.NewEvent("conn.check", map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Enqueue(t.Context(), ev); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	var ds []backend.Delivery
	deadline := time.Now().Add(5 * time.Second)
	for len(ds) == 0 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		ds, err = b.Pull(ctx, 10)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Pull() = %v", err)
		}
	}
	if len(ds) != 1 || !ds[0].Event.Equal(ev) {
		t.Fatalf("Pull() = %v, want the event enqueued: %v", ds, ev)
	}
	if err := b.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack}); err != nil {
		t.Fatalf("Settle(Ack) = %v", err)
	}
	cfg := b.Config()
	p, err := rdb.XPending(t.Context(), cfg.Stream, cfg.Group).Result()
	if err != nil {
		t.Fatalf("XPENDING = %v", err)
	}
	if p.Count != 0 {
		t.Fatalf("%d entries pending after the ack, want 0", p.Count)
	}
	if m := b.Metrics(); m.Enqueued != 1 || m.Pulled != 1 || m.Acked != 1 {
		t.Fatalf("Metrics() = %+v, want 1 enqueued, pulled and acked", m)
	}
}

// inspector returns a client that checks the server as user, closed when the test ends.
func inspector(t *testing.T, srv *redistest.Server, user, password string) *goredis.Client {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), Username: user, Password: password,
		TLSConfig: srv.TLSConfig()})
	t.Cleanup(func() { _ = rdb.Close() }) // a test client: nothing to report
	return rdb
}

func mustDo(t *testing.T, srv *redistest.Server, args ...string) string {
	t.Helper()
	reply, err := srv.Do(args...)
	if err != nil || strings.HasPrefix(reply, "ERR:") {
		t.Fatalf("%v = %q, %v", args, reply, err)
	}
	return reply
}

func TestMaskURL(t *testing.T) {
	tests := []struct {
		name, in, want, password string
	}{
		{"user and password", "redis://user:secret@host:6379/0", "redis://user:xxxxx@host:6379/0", "secret"},
		{"password only", "redis://:secret@h/0", "redis://:xxxxx@h/0", "secret"},
		{"password only, TLS", "rediss://:secret@h:6380/0", "rediss://:xxxxx@h:6380/0", "secret"},
		{"no password", "redis://host:6379/0", "redis://host:6379/0", ""},
		{"user without password", "redis://alice@host:6379/0", "redis://alice@host:6379/0", ""},
		{"query kept", "rediss://u:secret@h:6380/2?dial_timeout=3s", "rediss://u:xxxxx@h:6380/2?dial_timeout=3s", "secret"},
		{"password with @ : and /", "redis://user:p@ss:w/rd@host:6379/0", "redis://user:xxxxx@host:6379/0", "p@ss:w/rd"},
		{"password with @ : and / escaped", "redis://user:p%40ss%3Aw%2Frd@host:6379/0", "redis://user:xxxxx@host:6379/0", "p%40ss%3Aw%2Frd"},
		{"password ending in @", "redis://:secret@@host/0", "redis://:xxxxx@host/0", "secret@"},
		{"bad port", "redis://:secret@host:notaport/0", "redis://:xxxxx@host:notaport/0", "secret"},
		{"unclosed bracket", "redis://:s3cr3t@[::1/0", "redis://:xxxxx@[::1/0", "s3cr3t"},
		{"other scheme", "http://u:secret@host/", "http://u:xxxxx@host/", "secret"},
		{"not a URL", "not a url", "not a url", ""},
		{"empty", "", "", ""},
		{"scheme only", "redis://", "redis://", ""},
		// Text that is not a URL but still holds credentials: the password must not show.
		{"one slash", "redis:/:secret@host:6379/0", "", "secret"},
		{"no scheme", "user:secret@host:6379", "", "secret"},
		{"no colon after scheme", "redis//:secret@host:6379/0", "", "secret"},
		// A password in the query is masked too; the settings of go-redis are kept.
		{"password in the query", "redis://host:6379/0?password=secret", "redis://host:6379/0?password=xxxxx", "secret"},
		{"password in the query beside settings", "redis://u@h/1?dial_timeout=3s&password=secret&db=2",
			"redis://u@h/1?dial_timeout=3s&password=xxxxx&db=2", "secret"},
		{"passwords in the user information and the query", "redis://u:secret@h/0?password=other",
			"redis://u:xxxxx@h/0?password=xxxxx", "other"},
		{"user name in the query kept", "redis://h/0?username=alice&password=secret", "redis://h/0?username=alice&password=xxxxx", "secret"},
		{"escaped parameter name", "redis://h/0?pass%77ord=secret", "redis://h/0?pass%77ord=xxxxx", "secret"},
		{"other parameter names", "redis://h/0?token=secret", "redis://h/0?token=xxxxx", "secret"},
		{"query password with # and @", "redis://h:6379/0?password=se@cr#et", "", "cr#et"},
		{"query password with @, user information too", "redis://u:pw@h/0?password=se@cret", "", "se@cret"},
		{"@ in the query", "redis://h/0?password=se@cret", "", "se@"},
		{"? in a password of the user information", "redis://:pa?db=1@h/0?password=secret", "", "secret"},
		{"query password, bad port", "redis://h:port/0?password=secret", "redis://h:port/0?password=xxxxx", "secret"},
		{"query password, one slash", "redis:/h/0?password=secret", "", "secret"},
		{"query password, bad escape", "redis://%zz@h/0?password=secret", "", "secret"},
		{"query password twice", "redis://h/0?password=first&password=secret", "redis://h/0?password=xxxxx&password=xxxxx", "first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := necroredis.MaskURL(tt.in)
			if tt.want != "" && got != tt.want {
				t.Errorf("MaskURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.password != "" && strings.Contains(got, tt.password) {
				t.Errorf("MaskURL(%q) = %q, which shows the password %q", tt.in, got, tt.password)
			}
			if tt.want == "" && tt.in != "" && got == "" {
				t.Errorf("MaskURL(%q) is empty, want the text with its password masked", tt.in)
			}
		})
	}
}

func TestOpenRejectsMalformedURL(t *testing.T) {
	tests := []struct {
		name, url, password string
		says                []string // the error says one of these
	}{
		{"bad scheme", "http://:s3cr3t@127.0.0.1:6379/0", "s3cr3t", []string{"scheme"}},
		{"no scheme", ":s3cr3t@127.0.0.1:6379/0", "s3cr3t", []string{"scheme"}},
		{"one slash", "redis:/:s3cr3t@127.0.0.1:6379/0", "s3cr3t", []string{"scheme"}},
		{"bad port", "redis://:s3cr3t@host:notaport/0", "s3cr3t", []string{"port"}},
		{"space in host", "redis://:s3cr3t@ho st:6379/0", "s3cr3t", []string{"invalid character", "host"}},
		{"unclosed bracket", "redis://:s3cr3t@[::1/0", "s3cr3t", []string{"]"}},
		{"bad database", "redis://:s3cr3t@127.0.0.1:6379/zero", "s3cr3t", []string{"database", "db"}},
		{"bad escape in password", "redis://:%zz@127.0.0.1:6379/0", "%zz", []string{"escape"}},
		{"bad escape inside password", "redis://:ab%zzcd@127.0.0.1:6379/0", "ab%zzcd", []string{"escape"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs connLog
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, necroredis.Config{URL: tt.url, Logger: logs.logger()})
			if err == nil {
				_ = b.Close() // the test fails anyway
				t.Fatalf("Open(%q) succeeded, want an error", necroredis.MaskURL(tt.url))
			}
			if !errors.Is(err, necroredis.ErrInvalidConfig) {
				t.Errorf("Open(%q) = %v, want it to wrap ErrInvalidConfig", necroredis.MaskURL(tt.url), err)
			}
			msg := err.Error()
			if !containsAny(strings.ToLower(msg), tt.says) {
				t.Errorf("Open(%q) = %q, want it to say %q", necroredis.MaskURL(tt.url), msg, tt.says)
			}
			if strings.Contains(msg, tt.password) {
				t.Errorf("Open(...) = %q, which shows the password %q", msg, tt.password)
			}
			if strings.Contains(logs.String(), tt.password) {
				t.Errorf("the logs show the password %q: %s", tt.password, logs.String())
			}
		})
	}
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// A wrong password or user fails Open at once, says authentication failed, and shows
// no password, neither in the error nor in the logs.
func TestOpenWithWrongCredentials(t *testing.T) {
	const right, alicePW = "r1ght-pw-default", "al1ce-pw-right"
	srv := redistest.Start(t, redistest.Config{Password: right})
	mustDo(t, srv, "ACL", "SETUSER", "alice", "on", ">"+alicePW, "~*", "&*", "+@all")
	host := srv.Addr()
	tests := []struct {
		name, url string
		says      []string
	}{
		{"wrong password", "redis://:wr0ng-pw-given@" + host + "/0", []string{"wrongpass", "invalid password", "invalid username-password"}},
		{"unknown user", "redis://mallory:wr0ng-pw-given@" + host + "/0", []string{"wrongpass", "invalid username-password"}},
		{"user with the default password", "redis://mallory:" + right + "@" + host + "/0", []string{"wrongpass", "invalid username-password"}},
		{"ACL user with a wrong password", "redis://alice:wr0ng-pw-given@" + host + "/0", []string{"wrongpass", "invalid username-password"}},
		{"ACL user with the default password", "redis://alice:" + right + "@" + host + "/0", []string{"wrongpass", "invalid username-password"}},
		{"no password", "redis://" + host + "/0", []string{"noauth", "authentication required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs connLog
			start := time.Now()
			b, err := connOpen(t, necroredis.Config{URL: tt.url, Logger: logs.logger()})
			took := time.Since(start)
			if err == nil {
				t.Fatalf("Open(%s) = %v, nil; want an authentication error", necroredis.MaskURL(tt.url), b)
			}
			if took > 5*time.Second {
				t.Errorf("Open took %v to fail, want it to fail at once", took)
			}
			msg := err.Error()
			t.Logf("Open failed after %v: %v", took, err)
			if !containsAny(strings.ToLower(msg), tt.says) {
				t.Errorf("Open(%s) = %q, want it to say authentication failed (%q)", necroredis.MaskURL(tt.url), msg, tt.says)
			}
			if errors.Is(err, necroredis.ErrInvalidConfig) {
				t.Errorf("Open(...) = %v, which wraps ErrInvalidConfig; the config is valid, the credentials are wrong", err)
			}
			for _, pw := range []string{"wr0ng-pw-given", right, alicePW} {
				if strings.Contains(msg, pw) {
					t.Errorf("Open(...) = %q, which shows the password %q", msg, pw)
				}
				if strings.Contains(logs.String(), pw) {
					t.Errorf("the logs show the password %q: %s", pw, logs.String())
				}
			}
		})
	}
}

// An ACL user works end to end; one denied CONFIG still works and says that it cannot
// check the server's settings.
func TestOpenAsACLUser(t *testing.T) {
	const defaultPW, alicePW, bobPW = "d3fault-pw", "al1ce-pw", "b0b-pw"
	const carolPW = "c@rol:p/w%" // written escaped in the URL
	srv := redistest.Start(t, redistest.Config{Password: defaultPW})
	mustDo(t, srv, "ACL", "SETUSER", "alice", "on", ">"+alicePW, "~*", "&*", "+@all")
	// bob may touch only necro:* keys and run nothing dangerous (CONFIG, CLIENT KILL...).
	mustDo(t, srv, "ACL", "SETUSER", "bob", "on", ">"+bobPW, "~necro:*", "&*", "+@all", "-@dangerous")
	mustDo(t, srv, "ACL", "SETUSER", "carol", "on", ">"+carolPW, "~*", "&*", "+@all")
	rdb := inspector(t, srv, "", defaultPW)
	tests := []struct {
		user, password string // the password as written in the URL
		cannotCheck    bool
	}{
		{"alice", alicePW, false},
		{"bob", bobPW, true},
		{"carol", url.QueryEscape(carolPW), false},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			var logs connLog
			u := "redis://" + tt.user + ":" + tt.password + "@" + srv.Addr() + "/0"
			b, err := connOpen(t, necroredis.Config{URL: u, Logger: logs.logger(), Consumer: unique(tt.user + "-")})
			if err != nil {
				t.Fatalf("Open as %s = %v", tt.user, err)
			}
			connRoundTrip(t, b, rdb)
			if err := b.Health(t.Context()).Err; err != nil {
				t.Errorf("Health() as %s = %v", tt.user, err)
			}
			clients := mustDo(t, srv, "CLIENT", "LIST")
			if !strings.Contains(clients, "user="+tt.user+" ") {
				t.Errorf("CLIENT LIST shows no connection of %s:\n%s", tt.user, clients)
			}
			warned := naming(logs.records(t, "WARN"), "cannot")
			if tt.cannotCheck && len(warned) == 0 {
				t.Errorf("no warning that the settings cannot be checked; logs:\n%s", logs.String())
			}
			if !tt.cannotCheck && len(warned) > 0 {
				t.Errorf("warned %v, want the settings checked", warned)
			}
			for _, pw := range []string{defaultPW, alicePW, bobPW, carolPW, tt.password} {
				if strings.Contains(logs.String(), pw) {
					t.Errorf("the logs show the password %q: %s", pw, logs.String())
				}
			}
		})
	}
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	tests := []struct {
		field string
		cfg   necroredis.Config
	}{
		{"NackDelay", necroredis.Config{NackDelay: -time.Second}},
		{"NackDelay", necroredis.Config{NackDelay: necroredis.Off}}, // Off is not for NackDelay
		{"ClaimAfter", necroredis.Config{ClaimAfter: -time.Millisecond}},
		{"TrimInterval", necroredis.Config{TrimInterval: -time.Second}},
		{"ForgetConsumersAfter", necroredis.Config{ForgetConsumersAfter: -time.Hour}},
		{"Block", necroredis.Config{Block: -time.Millisecond}},
		{"Block", necroredis.Config{Block: 500 * time.Microsecond}},
		{"SettleRetryFor", necroredis.Config{SettleRetryFor: -time.Second}},
		{"Capacity", necroredis.Config{Capacity: -1}},
		{"MaxDeliveries", necroredis.Config{MaxDeliveries: -3}},
		{"DeadLetterMaxLen", necroredis.Config{DeadLetterMaxLen: -1}},
		{"PoolSize", necroredis.Config{PoolSize: -1}},
		{"MaxEntryBytes", necroredis.Config{MaxEntryBytes: -2}}, // -1 is Off
		{"MaxPullBytes", necroredis.Config{MaxPullBytes: -1}},
		{"MaxPullBytes", necroredis.Config{MaxEntryBytes: 4 << 20, MaxPullBytes: 4<<20 - 1}},
		{"PoisonKeepBytes", necroredis.Config{PoisonKeepBytes: -1}},
		{"DeadLetterStream", necroredis.Config{Stream: "necro:s", DeadLetterStream: "necro:s"}},
		{"DeadLetterStream", necroredis.Config{DeadLetterStream: necroredis.DefaultStream}},
		{"Stream", necroredis.Config{Stream: " necro:s"}},
		{"Stream", necroredis.Config{Stream: "   "}},
		{"Group", necroredis.Config{Group: "g\t"}},
		{"Consumer", necroredis.Config{Consumer: " c "}},
		{"DeadLetterStream", necroredis.Config{DeadLetterStream: "necro:dlq\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			// Nothing listens there: the config must be refused before any dial.
			tt.cfg.URL = "redis://:s3cr3t@127.0.0.1:1/0"
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, tt.cfg)
			if err == nil {
				_ = b.Close() // the test fails anyway
				t.Fatalf("Open(%+v) succeeded, want an error", tt.cfg)
			}
			if !errors.Is(err, necroredis.ErrInvalidConfig) {
				t.Errorf("Open(...) = %v, want it to wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Open(...) = %q, want it to name %s", err, tt.field)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("Open(...) = %q, which shows the password", err)
			}
		})
	}
}

// Open warns about settings that lose events, and only about those.
func TestOpenWarnsAboutUnsafeSettings(t *testing.T) {
	tests := []struct {
		name    string
		server  redistest.Config
		warn    []string // each named by a warning of its own
		notWarn []string
	}{
		{
			name:   "eviction and no persistence",
			server: redistest.Config{Args: []string{"--maxmemory-policy", "allkeys-lru"}},
			warn:   []string{"maxmemory-policy", "appendonly"},
		},
		{
			name:   "volatile eviction",
			server: redistest.Config{AppendOnly: true, Args: []string{"--maxmemory-policy", "volatile-ttl"}},
			warn:   []string{"maxmemory-policy"}, notWarn: []string{"appendonly", "appendfsync"},
		},
		{
			name:   "appendfsync no",
			server: redistest.Config{AppendOnly: true, AppendFsync: "no", Args: []string{"--maxmemory-policy", "noeviction"}},
			warn:   []string{"appendfsync"}, notWarn: []string{"maxmemory-policy"},
		},
		{
			name:    "safe: appendfsync always",
			server:  redistest.Config{AppendOnly: true, AppendFsync: "always", Args: []string{"--maxmemory-policy", "noeviction"}},
			notWarn: []string{"maxmemory-policy", "appendonly", "appendfsync", "cannot"},
		},
		{
			name:    "safe: appendfsync everysec",
			server:  redistest.Config{AppendOnly: true, AppendFsync: "everysec"},
			notWarn: []string{"maxmemory-policy", "appendonly", "appendfsync", "cannot"},
		},
		{
			name:   "CONFIG renamed away",
			server: redistest.Config{Args: []string{"--rename-command", "CONFIG", ""}},
			warn:   []string{"cannot"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t, tt.server)
			var logs connLog
			b, err := connOpen(t, necroredis.Config{URL: srv.URL(), Logger: logs.logger()})
			if err != nil {
				t.Fatalf("Open() = %v", err)
			}
			connRoundTrip(t, b, inspector(t, srv, "", ""))
			warns := logs.records(t, "WARN")
			seen := map[string]bool{}
			for _, w := range tt.warn {
				found := naming(warns, w)
				if len(found) == 0 {
					t.Errorf("no warning names %s; logs:\n%s", w, logs.String())
				}
				for _, rec := range found {
					msg, _ := rec["msg"].(string)
					if seen[msg] {
						t.Errorf("one warning names %v together, want one warning each: %s", tt.warn, msg)
					}
					seen[msg] = true
				}
			}
			for _, w := range tt.notWarn {
				if found := naming(warns, w); len(found) > 0 {
					t.Errorf("warned about %s on a safe server: %v", w, found)
				}
			}
		})
	}
}
