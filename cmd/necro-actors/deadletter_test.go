package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro/internal/redistest"
)

// deadLetterLen returns the length of the default dead-letter stream.
func deadLetterLen(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	n, err := srv.Do("XLEN", "necrostack:events:dlq")
	if err != nil {
		t.Fatalf("XLEN: %v", err)
	}
	return n
}

// A worker bounds the dead-letter stream: by --dead-letter-max-len, else by
// NECRO_DEAD_LETTER_MAX_LEN; each dead letter dropped is logged.
func TestWorkerBoundsDeadLetters(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		want string // dead letters left of 5
	}{
		{"flag", []string{"--dead-letter-max-len", "2"}, "", "2"},
		{"environment", nil, "3", "3"},
		{"flag over environment", []string{"--dead-letter-max-len", "1"}, "3", "1"},
		{"flag 0 keeps all", []string{"--dead-letter-max-len", "0"}, "3", "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Config{})
			c := newCLI()
			if tt.env != "" {
				c.vars["NECRO_DEAD_LETTER_MAX_LEN"] = tt.env
			}
			code := c.start(t, append([]string{"worker", "chain", "--redis", srv.URL()}, tt.args...)...)
			if ready := c.stdout.nextJSON(t); ready["event"] != "ready" {
				t.Fatalf("first line %v, want the ready line\n%s", ready, c.output())
			}
			for i := range 5 {
				if _, err := srv.Do("XADD", "necrostack:events", "*", "event", fmt.Sprintf("not json %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			h := openStore(t, srv)
			deadline := time.Now().Add(10 * time.Second)
			for s := h.Health(t.Context()); s.Lag != 0 || s.Pending != 0; s = h.Health(t.Context()) {
				if time.Now().After(deadline) {
					t.Fatalf("the worker did not dead-letter the 5 poison entries: %+v\n%s", s, c.output())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := deadLetterLen(t, srv); got != tt.want {
				t.Errorf("the dead-letter stream holds %s entries, want %s\n%s", got, tt.want, c.output())
			}
			dropped := strings.Contains(c.stderr.String(), "dead letters dropped")
			if want := tt.want != "5"; dropped != want {
				t.Errorf("stderr tells of dropped dead letters: %v, want %v\n%s", dropped, want, c.stderr.String())
			}
			c.signals <- sigterm
			if got := code.wait(t, c); got != exitOK {
				t.Fatalf("exit %d after SIGTERM, want 0\n%s", got, c.output())
			}
		})
	}
}

// A run on Redis bounds the dead-letter stream as a worker does.
func TestRunBoundsDeadLetters(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	input := filepath.Join(t.TempDir(), "nums.json")
	if err := os.WriteFile(input, []byte("[-1, -2, -3, -4, 5]"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	if got := c.run(t, "run", "chain", "--redis", srv.URL(), "--input", input, "--dead-letter-max-len", "2", "--json"); got != exitOK {
		t.Fatalf("exit %d, want 0\n%s", got, c.output())
	}
	if got := deadLetterLen(t, srv); got != "2" {
		t.Errorf("the dead-letter stream holds %s entries, want 2 of the run's 4\n%s", got, c.output())
	}
	if !strings.Contains(c.stderr.String(), "dead letters dropped") {
		t.Errorf("stderr does not tell of the dropped dead letters:\n%s", c.stderr.String())
	}
}

// The bound is the flag's, else the environment's, else 100,000; anything but a count
// is a usage error naming where it came from.
func TestDeadLetterBound(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string
		want    int
		wantErr string
	}{
		{"default", nil, "", 100_000, ""},
		{"environment", nil, "250", 250, ""},
		{"environment 0", nil, "0", 0, ""},
		{"flag", []string{"--dead-letter-max-len", "7"}, "", 7, ""},
		{"flag over environment", []string{"--dead-letter-max-len", "0"}, "250", 0, ""},
		{"negative flag", []string{"--dead-letter-max-len", "-1"}, "", 0, "want a count, 0 or more"},
		{"text flag", []string{"--dead-letter-max-len", "many"}, "", 0, "want a count, 0 or more"},
		{"negative environment", nil, "-5", 0, `NECRO_DEAD_LETTER_MAX_LEN="-5"`},
		{"text environment", nil, "lots", 0, `NECRO_DEAD_LETTER_MAX_LEN="lots"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI()
			c.vars["NECRO_DEAD_LETTER_MAX_LEN"] = tt.env
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(c.stderr)
			var d deadLetterBound
			d.register(fs)
			err := fs.Parse(tt.args)
			var n int
			if err == nil {
				n, err = d.value(c.env())
			}
			switch {
			case tt.wantErr == "" && (err != nil || n != tt.want):
				t.Errorf("bound = %d, %v; want %d", n, err, tt.want)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("bound = %d, %v; want an error with %q", n, err, tt.wantErr)
			}
		})
	}
}

// dlq list and show give the size of a poison entry whose dead letter keeps only the
// start of its text.
func TestDLQShowsPoisonSize(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	const kept = `{"id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2025-01-15T10:30:45.123456+00:00", "event_type": "BIG", "payload": {"blob": "xxxx`
	id, err := srv.Do("XADD", "necrostack:events:dlq", "*", "original_id", "1-0", "event", kept,
		"reason", "poison entry: the entry holds 20971520 bytes, more than MaxEntryBytes (2097152) lets a valid event take",
		"failed_at", "2026-01-02T03:04:05.000006+00:00", "organ", "", "attempts", "0", "error", "too large", "meta", "",
		"receipt", "1-0#1", "size", "20971520")
	if err != nil || strings.HasPrefix(id, "ERR:") {
		t.Fatalf("XADD = %q, %v", id, err)
	}
	c := newCLI()
	if got := c.run(t, "dlq", "show", "--redis", srv.URL(), "--json", id); got != exitOK {
		t.Fatalf("dlq show: exit %d\n%s", got, c.output())
	}
	if m := oneJSON(t, c.stdout.String()); m["size"] != 20971520.0 || m["stored_event"] != kept {
		t.Errorf("dlq show = %v, want size 20971520 and the text kept", m)
	}
	c = newCLI()
	if got := c.run(t, "dlq", "list", "--redis", srv.URL(), "--json"); got != exitOK {
		t.Fatalf("dlq list: exit %d\n%s", got, c.output())
	}
	lines, _ := oneJSON(t, c.stdout.String())["dead_letters"].([]any)
	if len(lines) != 1 || lines[0].(map[string]any)["size"] != 20971520.0 {
		t.Errorf("dlq list = %v, want one dead letter of size 20971520", lines)
	}
}
