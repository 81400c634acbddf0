package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/backendtest"
	"github.com/necrostack/necro/internal/redistest"
)

// checked returns the commands the permission check runs for a store with every
// feature on, by name.
func checked() map[string]bool {
	cfg := Config{Stream: "s", DeadLetterStream: "s:dlq", DeadLetterMaxLen: 1}
	out := map[string]bool{}
	for _, n := range needs(cfg, "g") {
		out[n.command] = true
	}
	return out
}

// Every command the scripts call, and every command the store sends from Go, is one
// the permission check at Open runs: a command added without it would fail only later,
// as the first script that runs it is refused.
func TestPermissionCheckCoversEveryCommand(t *testing.T) {
	have := checked()
	// The store's own files: the Admin's (admin.go) has needs of its own.
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, "_test.go") || f == "admin.go" })
	// redis.call('XGROUP', 'DELCONSUMER', ...) and the tables handed to unpack:
	// local args = {'XCLAIM', ...}.
	script := regexp.MustCompile(`(?:redis\.p?call\(|local [a-z]+ = \{)'([A-Z]+)'(?:, '([A-Z]+)')?`)
	used := map[string]bool{}
	found := 0
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range script.FindAllStringSubmatch(string(src), -1) {
			found++
			name := c[1]
			if name == "XGROUP" || name == "XINFO" {
				name += " " + c[2]
			}
			used[name] = true
			if !have[name] {
				t.Errorf("%s: a script calls %s, which the permission check does not run: add it to needs", file, name)
			}
		}
	}
	if found < 20 {
		t.Fatalf("found %d commands in the scripts; the pattern no longer matches how they call Redis", found)
	}
	// The Go calls: each go-redis method the store uses, with the command it sends.
	methods := map[string]string{
		"XGroupCreateMkStream": "XGROUP CREATE", "XReadGroup": "XREADGROUP", "XPendingExt": "XPENDING",
		"XRange": "XRANGE", "XRangeN": "XRANGE", "XLen": "XLEN", "XInfoGroups": "XINFO GROUPS", "ZCard": "ZCARD",
		"HDel": "HDEL", "Del": "DEL",
		"Run": "EVALSHA", // and EVAL, when Redis does not know the script
		// Not checked: Open's PING comes first, and CONFIG GET may be refused (Open warns).
		"Ping": "", "ConfigGet": "",
		// Not commands.
		"Pipeline": "", "Exec": "", "Close": "", "AddHook": "", "PoolStats": "", "Options": "", "Do": "",
	}
	call := regexp.MustCompile(`\b(?:b\.rdb|b\.rrd|pipe|[a-z]+Script)\.([A-Z][A-Za-z]*)\(`)
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			cmd, known := methods[m[1]]
			used[cmd] = true
			switch {
			case !known:
				t.Errorf("%s calls go-redis's %s: add the command it sends to needs, and the method to this test", file, m[1])
			case cmd != "" && !have[cmd]:
				t.Errorf("%s sends %s (%s), which the permission check does not run", file, cmd, m[1])
			}
		}
	}
	// And the other way: the check asks for nothing the store does not use.
	used["EVAL"] = used["EVALSHA"] // Run falls back to EVAL when Redis does not know a script
	for c := range have {
		if !used[c] {
			t.Errorf("the permission check runs %s, which the store no longer uses: remove it from needs", c)
		}
	}
}

// A user allowed exactly the commands the check runs, on the store's keys only, passes
// the check and can do everything the store does: the list is enough.
func TestPermissionCheckIsEnough(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const pw = "m1nimal-pw"
	rules := []string{"ACL", "SETUSER", "minimal", "on", ">" + pw, "resetkeys", "~necro:acl:*", "-@all", "+ping"}
	for c := range checked() {
		rules = append(rules, "+"+strings.ToLower(strings.ReplaceAll(c, " ", "|")))
	}
	if reply, err := srv.Do(rules...); err != nil || strings.HasPrefix(reply, "ERR:") {
		t.Fatalf("%v = %q, %v", rules, reply, err)
	}
	url := "redis://minimal:" + pw + "@" + srv.Addr() + "/0"
	open := func(t *testing.T, cfg Config) *Backend {
		t.Helper()
		if cfg.Stream == "" {
			var r [4]byte
			_, _ = rand.Read(r[:])
			cfg.Stream = "necro:acl:" + hex.EncodeToString(r[:])
		}
		cfg.URL, cfg.Block = url, 20*time.Millisecond
		if cfg.Group == "" {
			cfg.Group = "g"
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b, err := Open(ctx, cfg)
		if err != nil {
			t.Fatalf("Open() as the minimal user = %v", err)
		}
		t.Cleanup(func() { _ = b.Close() }) // a test that closes it first gets ErrClosed here
		return b
	}
	backendtest.Run(t, func(t *testing.T, cfg backendtest.Config) backend.Backend {
		return open(t, Config{Capacity: cfg.Capacity, NackDelay: cfg.NackDelay, DeadLetterMaxLen: 100})
	})

	// What the suite does not: one consumer claims the entry of another that stopped.
	t.Run("claim", func(t *testing.T) {
		cfg := Config{Stream: "necro:acl:claim", ClaimAfter: 50 * time.Millisecond, ForgetConsumersAfter: time.Millisecond}
		first := open(t, cfg)
		ev, err := necro.NewEvent("acl.claim", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Enqueue(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		if ds, err := first.Pull(t.Context(), 1); err != nil || len(ds) != 1 {
			t.Fatalf("Pull() = %v, %v", ds, err)
		}
		second := open(t, cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		// first is stopped without Close: its entry stays pending until second claims it.
		first.bgStop()
		ds, err := second.Pull(ctx, 1)
		if err != nil || len(ds) != 1 || !ds[0].Event.Equal(ev) {
			t.Fatalf("Pull() by the second consumer = %v, %v; want the first one's entry", ds, err)
		}
		if err := second.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack}); err != nil {
			t.Fatal(err)
		}
		if h := second.Health(t.Context()); h.Err != nil || h.Pending != 0 {
			t.Errorf("Health() = %+v, want healthy with nothing pending", h)
		}
		if m := second.Metrics(); m.Failures != 0 {
			t.Errorf("Metrics().Failures = %d as the minimal user, want 0", m.Failures)
		}
	})
}

// The permission check changes nothing: the whole data set has the same digest before
// and after it, on a store with pending entries, dead letters, retries due later, enqueue
// markers and a roster entry, and for every key a stream may have.
func TestPermissionCheckChangesNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{Args: []string{"--enable-debug-command", "yes"}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Background work that would change the data set on its own comes rarely or never.
	b, err := Open(ctx, Config{URL: srv.URL(), Stream: "necro:nothing", Group: "g", DeadLetterMaxLen: 10,
		ClaimAfter: time.Hour, TrimInterval: Off, ForgetConsumersAfter: Off, Heartbeat: time.Hour, MemberTimeout: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // a test store: nothing to report
	var evs []necro.Event
	for i := range 3 {
		ev, err := necro.NewEvent("nothing", map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Pull(t.Context(), 3)
	if err != nil || len(ds) != 3 {
		t.Fatalf("Pull(3) = %v, %v", ds, err)
	}
	err = b.Settle(t.Context(),
		backend.Settlement{Delivery: ds[0], Outcome: backend.Ack, DeadLetters: []backend.DeadLetter{{Event: ds[0].Event, Reason: "test"}}},
		backend.Settlement{Delivery: ds[1], Outcome: backend.Ack, Retries: []backend.Retry{{Event: ds[1].Event, At: time.Now().Add(time.Hour)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Announce(t.Context(), []backend.OrganRoutes{{Organ: "o", Types: []string{"nothing"}}}); err != nil {
		t.Fatal(err)
	}
	before := mustDigest(t, srv)
	keys, _ := srv.Do("DBSIZE")
	if err := b.checkPermissions(t.Context(), ""); err != nil {
		t.Fatalf("checkPermissions() as the default user = %v", err)
	}
	if after := mustDigest(t, srv); after != before {
		t.Errorf("the data set's digest went from %s to %s across the permission check (%s keys before)", before, after, keys)
	}
}

func mustDigest(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	d, err := srv.Do("DEBUG", "DIGEST")
	if err != nil || strings.HasPrefix(d, "ERR:") || strings.Trim(d, "0") == "" {
		t.Fatalf("DEBUG DIGEST = %q, %v", d, err)
	}
	return d
}
