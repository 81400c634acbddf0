package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortTier runs the short tier of every scenario, as CI does: real redis-server,
// real worker processes, real faults. Every scenario must pass: 0 lost, 0 unexpected,
// the dead letters the directives demand, nothing pending.
func TestShortTier(t *testing.T) {
	if testing.Short() {
		t.Skip("the short tier takes minutes; -short skips it")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH, and CI is set: .ci/run must install it (%v)", err)
		}
		t.Skipf("redis-server not found on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	out := filepath.Join(dir, "results.json")
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--tier", "short", "--json", out, "--dir", filepath.Join(dir, "runs"), "-v"}, &stdout, &stderr)
	t.Logf("results:\n%s", stdout.String())
	if code != 0 {
		t.Errorf("necro-chaos --tier short exited %d\nprogress:\n%s", code, lastLines(stderr.String(), 60))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var results []result
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	if want := len(scenarios(shortTier)); len(results) != want {
		t.Fatalf("%d results, want one per scenario (%d)", len(results), want)
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s failed: %s", r.Scenario, strings.Join(r.Problems, "; "))
		}
		v := r.Verdict
		if v == nil {
			continue
		}
		if v.Roots == 0 || v.Handled == 0 {
			t.Errorf("%s: %d roots, %d handlings: the scenario did no work", r.Scenario, v.Roots, v.Handled)
		}
		if v.Lost != 0 && !strings.Contains(r.Scenario, "everysec") || v.Unexpected != 0 {
			t.Errorf("%s: lost %d, unexpected %d", r.Scenario, v.Lost, v.Unexpected)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
