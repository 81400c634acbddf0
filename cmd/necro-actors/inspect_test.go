package main

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// A pull leaves entries pending in the group; inspect shows them per group and per
// consumer, with the lag of what was not read, and creates nothing.
func TestInspect(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	b, err := necroredis.Open(t.Context(), necroredis.Config{URL: srv.URL(), Consumer: "worker-1", TrimInterval: necroredis.Off})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // closed below; then this is ErrClosed
	evs := make([]necro.Event, 3)
	for i := range evs {
		if evs[i], err = necro.NewEvent("inspect.me", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Enqueue(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	if ds, err := b.Pull(t.Context(), 2); err != nil || len(ds) != 2 {
		t.Fatalf("Pull(2) = %d deliveries, %v", len(ds), err)
	}

	c := newCLI()
	if got := c.run(t, "inspect", "--redis", srv.URL(), "--json"); got != exitOK {
		t.Fatalf("inspect --json: exit %d\n%s", got, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	if m["stream"] != necroredis.DefaultStream || m["exists"] != true || m["length"] != 3.0 || m["dead_letters"] != 0.0 ||
		m["delayed"] != 0.0 || m["next_retry_at"] != nil || m["first_id"] == "" || m["dead_letter_stream"] != necroredis.DefaultStream+":dlq" {
		t.Errorf("inspect --json = %v, want stream %s with 3 entries and nothing else", m, necroredis.DefaultStream)
	}
	groups, _ := m["groups"].([]any)
	if len(groups) != 1 {
		t.Fatalf("groups = %v, want the one group", m["groups"])
	}
	g, _ := groups[0].(map[string]any)
	if g["name"] != necroredis.DefaultGroup || g["pending"] != 2.0 || g["lag"] != 1.0 || g["last_delivered_id"] == "" {
		t.Errorf("group = %v, want %s with 2 pending and lag 1", g, necroredis.DefaultGroup)
	}
	consumers, _ := g["consumers"].([]any)
	if len(consumers) != 1 {
		t.Fatalf("consumers = %v, want worker-1", g["consumers"])
	}
	if cm, _ := consumers[0].(map[string]any); cm["name"] != "worker-1" || cm["pending"] != 2.0 || cm["idle_ms"] == nil || cm["inactive_ms"] == nil {
		t.Errorf("consumer = %v, want worker-1 with 2 pending", cm)
	}

	c = newCLI()
	if got := c.run(t, "inspect", "--redis", srv.URL()); got != exitOK {
		t.Fatalf("inspect: exit %d\n%s", got, c.output())
	}
	out := c.stdout.String()
	for _, want := range []string{"stream", necroredis.DefaultStream, "3 entries", "dead letters", "GROUP", "CONSUMERS", "PENDING", "LAG",
		"LAST DELIVERED", "CONSUMER", "IDLE", "INACTIVE", "worker-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) == 5 && f[0] == necroredis.DefaultGroup && f[1] == "1" && f[2] == "2" && f[3] == "1"
	}) {
		t.Errorf("inspect output has no group line \"%s 1 2 1 <id>\":\n%s", necroredis.DefaultGroup, out)
	}

	// Another stream is only looked at: inspect creates neither it nor a group.
	c = newCLI()
	if got := c.run(t, "inspect", "--redis", srv.URL(), "--stream", "never:made", "--json"); got != exitOK {
		t.Fatalf("inspect --stream never:made: exit %d\n%s", got, c.output())
	}
	if m := oneJSON(t, c.stdout.String()); m["exists"] != false || len(m["groups"].([]any)) != 0 {
		t.Errorf("inspect of a missing stream = %v, want exists false and no groups", m)
	}
	if got, err := srv.Do("EXISTS", "never:made"); err != nil || got != "0" {
		t.Errorf("EXISTS never:made = %q, %v after inspect; want 0", got, err)
	}
}

// The inspection's text shows an unknown lag and inactive time as such, and dates the
// next retry.
func TestPrintInspection(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := necroredis.Inspection{Stream: "s", Exists: true, Length: 2, FirstID: "1-0", LastID: "2-0", DeadLetterStream: "s:dlq",
		DeadLetters: 4, Delayed: 1, NextRetry: now.Add(90 * time.Second), ServerVersion: "7.0.15",
		Groups: []necroredis.GroupInfo{
			{Name: "g", Pending: 1, LastDeliveredID: "2-0", Lag: -1,
				Consumers: []necroredis.ConsumerInfo{{Name: "c1", Pending: 1, Idle: 1500 * time.Millisecond, Inactive: -1}}},
			{Name: "quiet", LastDeliveredID: "0-0"},
		}}
	var b strings.Builder
	if err := printInspection(&b, in, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"2 entries, 1-0 … 2-0", "s:dlq", "4", "1 retry, next due 2026-01-02T03:05:35Z (in 1m30s)",
		"7.0.15", "quiet", "(none)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(out, "\n")
	if !slices.ContainsFunc(lines, func(l string) bool { return slices.Equal(strings.Fields(l), []string{"g", "1", "1", "?", "2-0"}) }) {
		t.Errorf("no group line \"g 1 1 ? 2-0\":\n%s", out)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return slices.Equal(strings.Fields(l), []string{"g", "c1", "1", "1.5s", "-"}) }) {
		t.Errorf("no consumer line \"g c1 1 1.5s -\":\n%s", out)
	}
}

// The operator's commands sort failures to reach Redis into exit codes, in one line of
// stderr that never shows the password.
func TestAdminExitCodes(t *testing.T) {
	const password = "s3cret-admin-pass"
	srv := redistest.Start(t, redistest.Config{Password: password})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close() // nothing listens there any more: that is the point
	wrong := strings.Replace(srv.URL(), password, "wrong-pass", 1)
	for _, u := range []struct {
		name, url string
		want      int
	}{
		{"wrong password", wrong, exitAuth},
		{"unreachable", "redis://:" + password + "@" + closed + "/0", exitUnreachable},
		{"malformed", "redis://:" + password + "@127.0.0.1:port/0", exitUsage},
	} {
		for _, cmd := range [][]string{{"inspect"}, {"dlq", "list"}, {"dlq", "show", "1-0"}, {"dlq", "replay"}, {"dlq", "purge", "--yes"},
			{"bench", "--backend", "redis", "--events", "3"}} {
			t.Run(u.name+"/"+strings.Join(cmd, " "), func(t *testing.T) {
				c := newCLI()
				if got := c.run(t, append(slices.Clone(cmd), "--redis", u.url)...); got != u.want {
					t.Errorf("exit %d, want %d\n%s", got, u.want, c.output())
				}
				if out := c.stdout.String() + c.stderr.String(); strings.Contains(out, password) {
					t.Errorf("the password appears in the output:\n%s", c.output())
				}
				if errs := errorLines(c.stderr.String()); len(errs) != 1 || !strings.HasPrefix(errs[0], "necro-actors "+cmd[0]+": ") {
					t.Errorf("stderr has %d error lines, want one:\n%s", len(errs), c.stderr.String())
				}
			})
		}
	}
	c := newCLI()
	if got := c.run(t, "inspect"); got != exitUsage {
		t.Errorf("inspect without a URL: exit %d, want %d\n%s", got, exitUsage, c.output())
	}
}
