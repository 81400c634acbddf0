package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// dlqFixture is a Redis with four dead letters on the default stream, oldest first:
// two order.placed that organ Billing gave up on, a mail.sent that Mailer gave up on
// with a two-line error, and a poison entry.
type dlqFixture struct {
	srv     *redistest.Server
	store   *necroredis.Backend // the test's consumer of the default group
	events  []necro.Event       // the three events, in order
	entries []string            // the four dead-letter entry ids, in order
}

// cardNumber is in the payloads: lists must never show it.
const cardNumber = "4111111111111111"

func newDLQFixture(t *testing.T) *dlqFixture {
	t.Helper()
	f := &dlqFixture{srv: redistest.Start(t, redistest.Config{})}
	var err error
	f.store, err = necroredis.Open(t.Context(), necroredis.Config{URL: f.srv.URL(), Consumer: "dlq-test", TrimInterval: necroredis.Off})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.store.Close() })
	for _, d := range []struct {
		typ, organ, err string
		attempts        int
	}{
		{"order.placed", "Billing", "card declined", 3},
		{"mail.sent", "Mailer", "smtp down\n  at line 2", 2},
		{"order.placed", "Billing", "card declined", 3},
	} {
		ev, err := necro.NewEvent(d.typ, map[string]any{"card": cardNumber, "n": len(f.events)})
		if err != nil {
			t.Fatal(err)
		}
		f.events = append(f.events, ev)
		f.deadLetter(t, ev, d.organ, d.attempts, d.err)
	}
	if got, err := f.srv.Do("XADD", necroredis.DefaultStream+":dlq", "*", "original_id", "1-0", "event", "not json",
		"reason", "poison entry: not JSON", "failed_at", "2026-01-02T03:04:05.000006+00:00"); err != nil || strings.HasPrefix(got, "ERR:") {
		t.Fatalf("XADD poison = %q, %v", got, err)
	}
	for _, l := range f.list(t) {
		f.entries = append(f.entries, l["entry_id"].(string))
	}
	if len(f.entries) != 4 {
		t.Fatalf("the fixture has %d dead letters, want 4", len(f.entries))
	}
	// A live worker of the group mounts the organs, so that replays are not refused.
	if err := f.store.Announce(t.Context(), []backend.OrganRoutes{{Organ: "Billing", Types: []string{"order.placed"}},
		{Organ: "Mailer", Types: []string{"mail.sent"}}}); err != nil {
		t.Fatal(err)
	}
	return f
}

// deadLetter enqueues ev, pulls it and settles it with a dead letter, as the Spine does
// when organ gave up on it.
func (f *dlqFixture) deadLetter(t *testing.T, ev necro.Event, organ string, attempts int, errText string) {
	t.Helper()
	if err := f.store.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	ds, err := f.store.Pull(t.Context(), 1)
	if err != nil || len(ds) != 1 || ds[0].Event.ID() != ev.ID() {
		t.Fatalf("Pull(1) = %v, %v; want %s", ds, err, ev.ID())
	}
	dl := backend.DeadLetter{Event: ds[0].Event, Organ: organ, Attempts: attempts, Error: errText, Reason: "retries exhausted",
		At: time.Now(), Receipt: ds[0].Receipt}
	if err := f.store.Settle(t.Context(), backend.Settlement{Delivery: ds[0], Outcome: backend.Ack, DeadLetters: []backend.DeadLetter{dl}}); err != nil {
		t.Fatal(err)
	}
}

// run runs one dlq command against the fixture's Redis and checks its exit code.
func (f *dlqFixture) run(t *testing.T, want int, args ...string) *cli {
	t.Helper()
	c := newCLI()
	if got := c.run(t, append(append([]string{"dlq"}, args...), "--redis", f.srv.URL())...); got != want {
		t.Fatalf("dlq %s: exit %d, want %d\n%s", strings.Join(args, " "), got, want, c.output())
	}
	return c
}

// list returns the dead letters dlq list --json prints.
func (f *dlqFixture) list(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	c := f.run(t, exitOK, append([]string{"list", "--json"}, args...)...)
	var out struct {
		Count int              `json:"count"`
		Lines []map[string]any `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(c.stdout.String()), &out); err != nil {
		t.Fatalf("dlq list --json: %v\n%s", err, c.stdout.String())
	}
	if out.Count != len(out.Lines) {
		t.Errorf("count %d, but %d dead letters", out.Count, len(out.Lines))
	}
	return out.Lines
}

func (f *dlqFixture) listIDs(t *testing.T, args ...string) []string {
	t.Helper()
	var ids []string
	for _, l := range f.list(t, args...) {
		ids = append(ids, l["entry_id"].(string))
	}
	return ids
}

// streamLength is the length of the default stream.
func (f *dlqFixture) streamLength(t *testing.T) string {
	t.Helper()
	n, err := f.srv.Do("XLEN", necroredis.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDLQList(t *testing.T) {
	f := newDLQFixture(t)
	all := f.list(t)
	wantTypes := []string{"order.placed", "mail.sent", "order.placed", ""}
	for i, l := range all {
		if l["event_type"] != wantTypes[i] {
			t.Errorf("dead letter %d has type %v, want %q", i, l["event_type"], wantTypes[i])
		}
	}
	if l := all[1]; l["event_id"] != f.events[1].ID() || l["organ"] != "Mailer" || l["attempts"] != 2.0 ||
		l["reason"] != "retries exhausted" || l["error"] != "smtp down\n  at line 2" || l["failed_at"] == "" {
		t.Errorf("mail.sent dead letter = %v", l)
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--type", "order.placed"}, []string{f.entries[0], f.entries[2]}},
		{[]string{"--type", "order.placed", "--limit", "1"}, []string{f.entries[0]}},
		{[]string{"--since", "1h"}, f.entries},
		{[]string{"--since", "2099-01-01T00:00:00Z"}, nil},
		{[]string{"--type", "no.such.type"}, nil},
	} {
		if got := f.listIDs(t, tt.args...); !slices.Equal(got, tt.want) {
			t.Errorf("dlq list %v = %v, want %v", tt.args, got, tt.want)
		}
	}

	c := f.run(t, exitOK, "list")
	out := c.stdout.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "ENTRY ID") || lines[5] != "4 dead letters" {
		t.Errorf("dlq list printed %d lines, want a header, 4 dead letters and a count:\n%s", len(lines), out)
	}
	if strings.Contains(out, cardNumber) {
		t.Errorf("dlq list shows a payload:\n%s", out)
	}
	if !strings.Contains(lines[2], "smtp down at line 2") || !strings.Contains(lines[2], f.events[1].ID()) || !strings.Contains(lines[2], "Mailer") {
		t.Errorf("the mail.sent line = %q, want its id, organ and the error on one line", lines[2])
	}
	c = f.run(t, exitOK, "list", "--type", "no.such.type")
	if got := c.stdout.String(); got != "no dead letters in necrostack:events:dlq of type no.such.type\n" {
		t.Errorf("an empty list prints %q", got)
	}
	f.run(t, exitUsage, "list", "--since", "yesterday")
	f.run(t, exitUsage, "list", "--limit", "-1")
	f.run(t, exitUsage, "list", "extra")
}

func TestDLQShow(t *testing.T) {
	f := newDLQFixture(t)
	c := f.run(t, exitOK, "show", f.entries[0])
	out := c.stdout.String()
	if !strings.Contains(out, "\n  \"entry_id\"") {
		t.Errorf("dlq show is not indented JSON:\n%s", out)
	}
	var m struct {
		EntryID  string         `json:"entry_id"`
		Organ    string         `json:"organ"`
		Attempts int            `json:"attempts"`
		Error    string         `json:"error"`
		Event    necro.Event    `json:"event"`
		Meta     necro.Metadata `json:"meta"`
		ReplayTo []string       `json:"replay_to"`
		Stored   string         `json:"stored_event"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("dlq show: %v\n%s", err, out)
	}
	if m.EntryID != f.entries[0] || m.Organ != "Billing" || m.Attempts != 3 || m.Error != "card declined" ||
		!m.Event.Equal(f.events[0]) || m.Meta.Attempt != 1 || !slices.Equal(m.ReplayTo, []string{"Billing"}) {
		t.Errorf("dlq show = %+v, want the first dead letter with its event %v", m, f.events[0])
	}
	if !strings.Contains(out, cardNumber) {
		t.Errorf("dlq show lacks the payload:\n%s", out)
	}

	c = f.run(t, exitOK, "show", "--json", f.entries[3])
	if m := oneJSON(t, c.stdout.String()); m["stored_event"] != "not json" || m["event"] != nil || m["reason"] != "poison entry: not JSON" {
		t.Errorf("dlq show of the poison entry = %v", m)
	}
	c = f.run(t, exitFailed, "show", "1-1")
	if !strings.Contains(c.stderr.String(), "no such dead letter") {
		t.Errorf("dlq show of a missing entry says:\n%s", c.stderr.String())
	}
	f.run(t, exitUsage, "show", "not-an-id")
	f.run(t, exitUsage, "show")
	f.run(t, exitUsage, "show", f.entries[0], f.entries[1])
}

func TestDLQReplay(t *testing.T) {
	f := newDLQFixture(t)
	length := f.streamLength(t)

	c := f.run(t, exitOK, "replay", "--type", "order.placed", "--dry-run")
	out := c.stdout.String()
	if strings.Count(out, ": order.placed ") != 2 || !strings.Contains(out, "to organ Billing") || !strings.Contains(out, "nothing changed") {
		t.Errorf("dry run printed:\n%s", out)
	}
	if got := f.listIDs(t); !slices.Equal(got, f.entries) || f.streamLength(t) != length {
		t.Fatalf("after a dry run: dead letters %v, stream length %s; want %v and %s", got, f.streamLength(t), f.entries, length)
	}

	c = f.run(t, exitOK, "replay", "--type", "order.placed", "--json")
	res := oneJSON(t, c.stdout.String())
	if res["matched"] != 2.0 || len(res["replayed"].([]any)) != 2 || res["dry_run"] != false {
		t.Errorf("replay --json = %v, want 2 replayed", res)
	}
	if got := f.listIDs(t); !slices.Equal(got, []string{f.entries[1], f.entries[3]}) {
		t.Errorf("dead letters after the replay = %v, want the mail.sent and the poison entry", got)
	}
	// The events are back with their ids, for the organ that gave up, at attempt 1.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ds, err := f.store.Pull(ctx, 10)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Pull after the replay = %d deliveries, %v; want the 2 replayed", len(ds), err)
	}
	for i, d := range ds {
		want := f.events[2*i]
		if m := d.Event.Meta(); d.Event.ID() != want.ID() || !slices.Equal(m.Targets, []string{"Billing"}) || m.Attempt != 1 {
			t.Errorf("replayed event %d = %s with %+v, want %s for Billing at attempt 1", i, d.Event.ID(), m, want.ID())
		}
	}

	// Running it again finds nothing: safe to re-run.
	length = f.streamLength(t)
	c = f.run(t, exitOK, "replay", "--type", "order.placed")
	if got := c.stdout.String(); got != "no dead letters match; nothing to replay\n" || f.streamLength(t) != length {
		t.Errorf("second replay printed %q, stream length %s; want nothing done (length %s)", got, f.streamLength(t), length)
	}

	// By id, with one that is gone; a rate that lets it through at once.
	c = f.run(t, exitOK, "replay", "--id", f.entries[1], "--id", f.entries[0], "--rate", "1000/s")
	if out := c.stdout.String(); !strings.Contains(out, "replayed "+f.entries[1]) || !strings.Contains(out, "replayed 1 of 1") {
		t.Errorf("replay --id printed:\n%s", out)
	}
	// The poison entry cannot be replayed: the command fails and the entry stays.
	c = f.run(t, exitFailed, "replay")
	if !strings.Contains(c.stdout.String(), "cannot replay "+f.entries[3]) || !strings.Contains(c.stderr.String(), "could not be replayed") {
		t.Errorf("replay of the poison entry:\n%s", c.output())
	}
	if got := f.listIDs(t); !slices.Equal(got, []string{f.entries[3]}) {
		t.Errorf("dead letters left = %v, want the poison entry", got)
	}
	f.run(t, exitUsage, "replay", "--rate", "fast")
	f.run(t, exitUsage, "replay", "--id", "x-1")
}

func TestDLQPurge(t *testing.T) {
	f := newDLQFixture(t)
	c := f.run(t, exitUsage, "purge", "--type", "order.placed")
	if !strings.Contains(c.stderr.String(), "would delete 2 dead letters") || !strings.Contains(c.stderr.String(), "--yes") {
		t.Errorf("purge without --yes says:\n%s", c.stderr.String())
	}
	if got := f.listIDs(t); !slices.Equal(got, f.entries) {
		t.Fatalf("purge without --yes deleted something: %v left", got)
	}
	c = f.run(t, exitOK, "purge", "--type", "order.placed", "--yes")
	if got := c.stdout.String(); !strings.Contains(got, "deleted 2 dead letters") {
		t.Errorf("purge --yes printed %q", got)
	}
	if got := f.listIDs(t); !slices.Equal(got, []string{f.entries[1], f.entries[3]}) {
		t.Errorf("dead letters left = %v, want the mail.sent and the poison entry", got)
	}
	c = f.run(t, exitOK, "purge", "--id", f.entries[3], "--yes", "--json")
	if m := oneJSON(t, c.stdout.String()); m["matched"] != 1.0 || m["deleted"] != 1.0 {
		t.Errorf("purge --id --json = %v", m)
	}
	if got := f.listIDs(t); !slices.Equal(got, []string{f.entries[1]}) {
		t.Errorf("dead letters left = %v, want the mail.sent", got)
	}
}

func TestDLQUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"dlq"}, exitUsage},
		{[]string{"dlq", "bogus"}, exitUsage},
		{[]string{"dlq", "-h"}, exitOK},
		{[]string{"dlq", "replay", "-h"}, exitOK},
	} {
		c := newCLI()
		if got := c.run(t, tt.args...); got != tt.want {
			t.Errorf("%v: exit %d, want %d\n%s", tt.args, got, tt.want, c.output())
		}
	}
	c := newCLI()
	c.run(t, "dlq", "replay", "-h")
	for _, want := range []string{"-dry-run", "-rate", "-every-organ", "-id", "original id", "never enqueues an event twice"} {
		if !strings.Contains(c.stderr.String(), want) {
			t.Errorf("dlq replay -h lacks %q:\n%s", want, c.stderr.String())
		}
	}
}

// The whole path: an event two organs handle, one of which gives up on it, is
// dead-lettered by a Spine; replayed, it goes to that organ only, which handles it now,
// and the other organ does not handle it twice.
func TestDLQReplayReachesTheOrganThatGaveUp(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	var billingOK atomic.Bool
	var billed, audited atomic.Int64
	mounts := []necro.Mount{
		{Name: "Billing", Organ: necro.NewOrgan([]string{"order.placed"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			if !billingOK.Load() {
				return nil, necro.Permanent(errFailOnPurpose)
			}
			billed.Add(1)
			return nil, nil
		})},
		{Name: "Audit", Organ: necro.NewOrgan([]string{"order.placed"}, func(context.Context, necro.Event) ([]necro.Event, error) {
			audited.Add(1)
			return nil, nil
		})},
	}
	serve := func() {
		t.Helper()
		b, err := necroredis.Open(t.Context(), necroredis.Config{URL: srv.URL(), Consumer: "replay-test"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = b.Close() }()
		sp, err := spine.New(b, mounts, spine.Config{Retry: supervision.RetryPolicy{MaxAttempts: supervision.NoRetry},
			IdleTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	c := newCLI()
	if got := c.run(t, "emit", "--type", "order.placed", "--payload", `{"n":1}`, "--redis", srv.URL()); got != exitOK {
		t.Fatalf("emit: exit %d\n%s", got, c.output())
	}
	serve()
	if billed.Load() != 0 || audited.Load() != 1 {
		t.Fatalf("first run: billed %d, audited %d; want 0 and 1", billed.Load(), audited.Load())
	}
	// No worker runs now, so none would handle the event: the replay is refused, naming
	// the organ, unless forced.
	c = newCLI()
	if got := c.run(t, "dlq", "replay", "--redis", srv.URL()); got != exitFailed || !strings.Contains(c.stderr.String(), `organ "Billing"`) {
		t.Fatalf("dlq replay with no worker running: exit %d, want 1 naming the organ\n%s", got, c.output())
	}
	c = newCLI()
	if got := c.run(t, "dlq", "replay", "--force", "--redis", srv.URL()); got != exitOK || !strings.Contains(c.stdout.String(), "to organ Billing") {
		t.Fatalf("dlq replay --force: exit %d\n%s", got, c.output())
	}
	billingOK.Store(true)
	serve()
	if billed.Load() != 1 || audited.Load() != 1 {
		t.Errorf("after the replay: billed %d, audited %d; want 1 and 1 (Audit had handled it already)", billed.Load(), audited.Load())
	}
}

var errFailOnPurpose = errors.New("fails on purpose")

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"2025-12-31T23:00:00Z", time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC), true},
		{"2025-12-31T23:00:00.5+01:00", time.Date(2025, 12, 31, 22, 0, 0, 5e8, time.UTC), true},
		{"-1h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	} {
		got, err := parseSince(tt.in, now)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"", 0, true}, {"50/s", 50, true}, {"2.5", 2.5, true}, {"0", 0, false}, {"-3/s", 0, false}, {"fast", 0, false},
	} {
		got, err := parseRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseRate(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// A pacer lets the first call through at once and spaces the next ones by 1/rate; a
// signal stops it.
func TestPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(50) // 20ms apart
		start := time.Now()
		for i := range 3 {
			if err := p.wait(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			if got, want := time.Since(start), time.Duration(i)*20*time.Millisecond; got != want {
				t.Errorf("call %d came after %v, want %v", i, got, want)
			}
		}
		signals := make(chan os.Signal, 1)
		go func() {
			time.Sleep(5 * time.Millisecond)
			signals <- sigterm
		}()
		if err := p.wait(t.Context(), signals); err == nil || time.Since(start) != 45*time.Millisecond {
			t.Errorf("wait with a signal 5ms in = %v after %v, want an error after 45ms", err, time.Since(start))
		}
	})
	if err := newPacer(0).wait(t.Context(), nil); err != nil {
		t.Errorf("wait without a rate = %v", err)
	}
}
