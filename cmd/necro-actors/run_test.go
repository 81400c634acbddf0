package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro/internal/redistest"
)

// The chain app in memory: roots 1, 2 and -3 each go through first and second; second
// fails on -3, which is dead-lettered at once (a permanent error). The dead letter is a
// result, so the exit code is 0.
func TestRunMemory(t *testing.T) {
	c := newCLI()
	if got := c.run(t, "run", "chain", "--no-random-failures"); got != exitOK {
		t.Fatalf("exit %d, want 0\n%s", got, c.output())
	}
	want := `chain: 3 roots
  root 1
  root 2
  root -3
processed 6, emitted 3, dead letters 1
done: [1 2]
dead: second chain.next (permanent error)
`
	if got := c.stdout.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

// --quiet reaches the app; flags may come after the app's name or before it.
func TestRunQuietFlagsAnywhere(t *testing.T) {
	for _, args := range [][]string{{"run", "chain", "--quiet"}, {"run", "--quiet", "chain"}} {
		c := newCLI()
		if got := c.run(t, args...); got != exitOK {
			t.Fatalf("%q: exit %d\n%s", args, got, c.output())
		}
		if strings.Contains(c.stdout.String(), "root 1") {
			t.Errorf("%q printed the per-root lines:\n%s", args, c.stdout.String())
		}
	}
}

// run --json prints exactly one JSON object, with the counts, the app's results and
// the dead letters, and nothing else on stdout.
func TestRunJSON(t *testing.T) {
	c := newCLI()
	if got := c.run(t, "run", "chain", "--json"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	for k, want := range map[string]any{"app": "chain", "backend": "memory", "roots": 3.0, "processed": 6.0,
		"emitted": 3.0, "retried": 0.0, "dead_lettered": 1.0, "unrouted": 0.0} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if got, want := m["results"], map[string]any{"done": []any{1.0, 2.0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("results = %v, want %v", got, want)
	}
	if got, want := m["handler_errors"], map[string]any{"second": 1.0}; !reflect.DeepEqual(got, want) {
		t.Errorf("handler_errors = %v, want %v", got, want)
	}
	dead, _ := m["dead_letters"].([]any)
	if len(dead) != 1 {
		t.Fatalf("dead_letters = %v, want one", m["dead_letters"])
	}
	dl := dead[0].(map[string]any)
	if dl["organ"] != "second" || dl["event_type"] != "chain.next" || dl["reason"] != "permanent error" ||
		!strings.Contains(dl["error"].(string), "n -3 is negative") {
		t.Errorf("dead letter = %v", dl)
	}
	if _, ok := m["seconds"].(float64); !ok {
		t.Errorf("seconds = %v, want a number", m["seconds"])
	}
	if _, ok := m["error"]; ok {
		t.Errorf("error = %v in a run that completed", m["error"])
	}
}

// --input reaches the app; a file it cannot read is a usage error naming the file.
func TestRunInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "nums.json")
	if err := os.WriteFile(file, []byte("[4, -5, 6]"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	if got := c.run(t, "run", "chain", "--input", file, "--quiet"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	if !strings.Contains(c.stdout.String(), "done: [4 6]\n") {
		t.Errorf("stdout:\n%s\nwant done: [4 6]", c.stdout.String())
	}

	missing := filepath.Join(dir, "missing.json")
	c = newCLI()
	if got := c.run(t, "run", "chain", "--input", missing); got != exitUsage {
		t.Errorf("missing input: exit %d, want %d\n%s", got, exitUsage, c.output())
	}
	if !strings.Contains(c.stderr.String(), missing) || c.stdout.String() != "" {
		t.Errorf("missing input: the error should name %s and stdout stay empty\n%s", missing, c.output())
	}
}

// A run that exceeds its step budget failed: exit 1, and the JSON says why.
func TestRunBudgetExceeded(t *testing.T) {
	c := newCLI()
	if got := c.run(t, "run", "loop", "--json"); got != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", got, exitFailed, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	if e, _ := m["error"].(string); !strings.Contains(e, "step budget exceeded") {
		t.Errorf("error = %q, want the step budget", m["error"])
	}
	if m["processed"] != 50.0 {
		t.Errorf("processed = %v, want the budget of 50", m["processed"])
	}
	if !strings.Contains(c.stderr.String(), "necro-actors run: loop: necro: step budget exceeded") {
		t.Errorf("stderr lacks the reason:\n%s", c.stderr.String())
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no app", []string{"run"}, "name the app to run: "},
		{"unknown app", []string{"run", "nope"}, `unknown app "nope"; the apps are: `},
		{"two apps", []string{"run", "chain", "loop"}, "one app at a time"},
		{"bad flag", []string{"run", "chain", "--frobnicate"}, "flag provided but not defined: -frobnicate"},
		{"bad idle timeout", []string{"run", "chain", "--idle-timeout", "0s"}, "--idle-timeout must be positive"},
		{"dead-letter bound in memory", []string{"run", "chain", "--dead-letter-max-len", "5"}, "--dead-letter-max-len bounds the dead-letter stream of a run on Redis"},
		{"bad metrics address", []string{"run", "chain", "--metrics-addr", "127.0.0.1:http-ish"}, "--metrics-addr: "},
		{"bad telemetry variable", []string{"run", "chain"}, `OTEL_TRACES_EXPORTER="zipkin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.name, "telemetry") {
				t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
			}
			c := newCLI()
			if got := c.run(t, tt.args...); got != exitUsage {
				t.Errorf("exit %d, want %d\n%s", got, exitUsage, c.output())
			}
			if !strings.Contains(c.stderr.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, c.stderr.String())
			}
		})
	}
}

// On Redis the run enqueues the roots on the stream and ends when the stream stays
// empty; the dead letters it reports are its own, not those of an earlier run.
func TestRunRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	for i := range 2 {
		c := newCLI()
		if got := c.run(t, "run", "chain", "--redis", srv.URL(), "--json"); got != exitOK {
			t.Fatalf("run %d: exit %d\n%s", i+1, got, c.output())
		}
		m := oneJSON(t, c.stdout.String())
		for k, want := range map[string]any{"backend": "redis", "stream": "necrostack:events", "processed": 6.0,
			"emitted": 3.0, "dead_lettered": 1.0} {
			if m[k] != want {
				t.Errorf("run %d: %s = %v, want %v", i+1, k, m[k], want)
			}
		}
		if dead, _ := m["dead_letters"].([]any); len(dead) != 1 {
			t.Errorf("run %d: dead_letters = %v, want this run's one", i+1, m["dead_letters"])
		}
		if got, want := m["results"], map[string]any{"done": []any{1.0, 2.0}}; !reflect.DeepEqual(got, want) {
			t.Errorf("run %d: results = %v, want %v", i+1, got, want)
		}
	}
	h := openStore(t, srv).Health(t.Context())
	if h.Pending != 0 || h.Lag != 0 || h.DeadLetters != 2 {
		t.Errorf("after two runs: pending %d, lag %d, dead letters %d; want 0, 0, 2", h.Pending, h.Lag, h.DeadLetters)
	}
}

// A signal stops a run: the first lets the events in flight finish, the second stops
// it at once (exit 5). The report of what was done is printed either way.
func TestRunSignals(t *testing.T) {
	started := make(chan string, 1) // one slow event
	watch(t, &slowStarted, started)
	file := filepath.Join(t.TempDir(), "nums.json")
	if err := os.WriteFile(file, []byte("[0]"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI()
	p := c.start(t, "run", "chain", "--input", file, "--quiet")
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatalf("the slow organ never started\n%s", c.output())
	}
	c.signals <- sigterm // the slow organ ignores it: it waits for its ctx
	c.signals <- sigterm
	if got := p.wait(t, c); got != exitPending {
		t.Fatalf("exit %d, want %d\n%s", got, exitPending, c.output())
	}
	// Whether the slow event counts as processed depends on whether its failure (its
	// ctx canceled) or the stop came first; its parent's child is counted either way.
	if out := c.stdout.String(); !strings.HasPrefix(out, "chain: 1 roots\n") || !strings.Contains(out, ", emitted 1, dead letters 0\n") {
		t.Errorf("stdout should hold the report:\n%s", out)
	}
	if errs := errorLines(c.stderr.String()); len(errs) != 1 || !strings.Contains(errs[0], "stopped at once by a second signal") {
		t.Errorf("stderr:\n%s", c.stderr.String())
	}
}

// --metrics-addr serves the endpoints during the run; the JSON tells where.
func TestRunMetricsAddr(t *testing.T) {
	c := newCLI()
	if got := c.run(t, "run", "chain", "--json", "--metrics-addr", "127.0.0.1:0"); got != exitOK {
		t.Fatalf("exit %d\n%s", got, c.output())
	}
	if addr, _ := oneJSON(t, c.stdout.String())["metrics_addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("metrics_addr = %q, want the address bound", addr)
	}
}

// Every bundled app runs through the CLI: its report, and its JSON.
func TestBundledApps(t *testing.T) {
	for _, name := range []string{"etl", "notifications", "seance", "trading"} {
		t.Run(name, func(t *testing.T) {
			c := newCLI()
			if got := c.run(t, "run", name, "--quiet"); got != exitOK || c.stdout.String() == "" {
				t.Fatalf("run %s: exit %d\n%s", name, got, c.output())
			}
			c = newCLI()
			if got := c.run(t, "run", name, "--json", "--no-random-failures"); got != exitOK {
				t.Fatalf("run %s --json: exit %d\n%s", name, got, c.output())
			}
			m := oneJSON(t, c.stdout.String())
			if m["app"] != name || m["processed"].(float64) < 1 || m["results"] == nil {
				t.Errorf("run %s --json: app %v, processed %v, results %v", name, m["app"], m["processed"], m["results"])
			}
		})
	}
}
