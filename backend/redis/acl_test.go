package redis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// Open refuses a user that lacks a command the store needs, or access to one of its
// keys, and names every one in a single error; it creates nothing on the way.
func TestOpenRefusesMissingPermissions(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const pw = "acl-u5er-pw"
	tests := []struct {
		name  string
		rules []string // beside "on", the password and "+@all"
		says  []string // each named by the error
		not   []string // named by no part of the error
	}{
		{"no XCLAIM", []string{"~*", "-xclaim"}, []string{"XCLAIM"}, []string{"XPENDING", "XADD", "key"}},
		{"no XCLAIM nor XPENDING", []string{"~*", "-xclaim", "-xpending"}, []string{"XPENDING", "XCLAIM"}, []string{"XADD"}},
		{"no subcommand", []string{"~*", "-xgroup|delconsumer"}, []string{"XGROUP DELCONSUMER"}, []string{"XGROUP CREATE"}},
		{"no scripts", []string{"~*", "-eval", "-evalsha"}, []string{"EVAL", "EVALSHA"}, []string{"XADD"}},
		{"stream keys only", []string{"~{stream}"}, []string{`"{stream}:dlq"`, `"{stream}:delayed"`, "XADD", "ZADD"}, []string{`key "{stream}";`}},
		{"read-only dead letters", []string{"~{stream}", "~{stream}:delayed", "%R~{stream}:dlq"}, []string{`XADD, EVALSHA, EVAL on key "{stream}:dlq"`}, []string{"XRANGE", "XLEN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, group := unique("necro:acl:"), unique("g-")
			user := unique("u-")
			args := []string{"ACL", "SETUSER", user, "on", ">" + pw, "+@all"}
			for _, r := range tt.rules {
				args = append(args, strings.ReplaceAll(r, "{stream}", stream))
			}
			mustDo(t, srv, args...)
			var logs connLog
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			b, err := necroredis.Open(ctx, necroredis.Config{URL: "redis://" + user + ":" + pw + "@" + srv.Addr() + "/0",
				Stream: stream, Group: group, Logger: logs.logger()})
			if err == nil {
				_ = b.Close() // the test fails anyway
				t.Fatalf("Open as a user with %v succeeded, want ErrNoPermission", tt.rules)
			}
			msg := err.Error()
			t.Logf("Open() = %v", msg)
			if !errors.Is(err, necroredis.ErrNoPermission) {
				t.Errorf("Open() = %v, want it to wrap ErrNoPermission", err)
			}
			if !strings.Contains(msg, `user "`+user+`"`) {
				t.Errorf("Open() = %q, want it to name the user %q", msg, user)
			}
			for _, w := range tt.says {
				if w = strings.ReplaceAll(w, "{stream}", stream); !strings.Contains(msg, w) {
					t.Errorf("Open() = %q, want it to name %s", msg, w)
				}
			}
			for _, w := range tt.not {
				if w = strings.ReplaceAll(w, "{stream}", stream); strings.Contains(msg, w) {
					t.Errorf("Open() = %q, which names %s: the user has that permission", msg, w)
				}
			}
			if strings.Contains(msg, pw) || strings.Contains(logs.String(), pw) {
				t.Errorf("the password shows in the error or the logs")
			}
			if got := mustDo(t, srv, "EXISTS", stream); got != "0" {
				t.Errorf("Open created the stream (EXISTS = %s) before refusing", got)
			}
		})
	}
}

// A claim scan that fails, here because the user lost XPENDING after Open, does not
// stop the reading of new entries: it is counted, logged naming the command, and
// reported by Health and Ready until a scan works again.
func TestClaimFailureDoesNotBlockReading(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const pw = "cl4im-pw"
	user := unique("u-")
	mustDo(t, srv, "ACL", "SETUSER", user, "on", ">"+pw, "~*", "+@all")
	var logs connLog
	b, err := connOpen(t, necroredis.Config{URL: "redis://" + user + ":" + pw + "@" + srv.Addr() + "/0",
		ClaimAfter: 40 * time.Millisecond, Logger: logs.logger()})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	mustDo(t, srv, "ACL", "SETUSER", user, "-xpending")
	failures := b.Metrics().Failures

	for i := range 3 {
		ev, err := necro.NewEvent("claim.blocked", map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Enqueue(t.Context(), ev); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		ds, err := b.Pull(ctx, 1)
		cancel()
		if err != nil || len(ds) != 1 || !ds[0].Event.Equal(ev) {
			t.Fatalf("Pull() = %v, %v; want the new entry %v although claiming fails", ds, err, ev)
		}
		if err := b.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack}); err != nil {
			t.Fatalf("Settle() = %v", err)
		}
	}
	if got := b.Metrics().Failures; got <= failures {
		t.Errorf("Metrics().Failures = %d after failed claim scans, want more than %d", got, failures)
	}
	if warned := naming(logs.records(t, "WARN"), "XPENDING"); len(warned) == 0 {
		t.Errorf("no warning names XPENDING; logs:\n%s", logs.String())
	}
	if h := b.Health(t.Context()); h.Healthy || h.Err == nil || !strings.Contains(h.Err.Error(), "XPENDING") {
		t.Errorf("Health() = %+v, want it unhealthy, naming XPENDING", h)
	}
	if err := b.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "XPENDING") {
		t.Errorf("Ready() = %v, want an error naming XPENDING", err)
	}

	// Given back the permission, the next scan works and the store is ready again.
	mustDo(t, srv, "ACL", "SETUSER", user, "+xpending")
	deadline := time.Now().Add(10 * time.Second)
	for b.Ready(t.Context()) != nil && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		_, err := b.Pull(ctx, 1)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Pull() = %v", err)
		}
	}
	if err := b.Ready(t.Context()); err != nil {
		t.Errorf("Ready() = %v after the permission came back, want nil", err)
	}
	if h := b.Health(t.Context()); !h.Healthy {
		t.Errorf("Health() = %+v after the permission came back, want healthy", h)
	}
}
