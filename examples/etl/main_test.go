package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wantSample is the program's output for the bundled employees.csv: Frank has no age,
// so 9 of the 10 rows remain. The Spine processes 5 events: the 4 of the chain and
// ETL_COMPLETE, which no organ listens to (the seed's Spine had stopped before it and
// printed 4).
const wantSample = `📊 Starting ETL Pipeline... 📊

=== ETL Summary for 'employees.csv' ===
Total rows processed: 9
Columns: name, age, salary, department

Numeric Statistics:
  age: min=25.00, max=40.00, avg=31.00, sum=279.00
  salary: min=55000.00, max=95000.00, avg=71888.89, sum=647000.00

✅ ETL complete: 5 events processed
`

func TestRunSample(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), nil, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	if got := stdout.String(); got != wantSample {
		t.Errorf("run() printed:\n%s\nwant:\n%s", got, wantSample)
	}
	checkOnlyUnroutedWarning(t, stderr.String())
}

// TestRunRandomFailureFlags: the flags every bundled app takes are accepted; the ETL
// pipeline has no random failures, so they change nothing.
func TestRunRandomFailureFlags(t *testing.T) {
	for _, args := range [][]string{{"-seed", "7"}, {"-no-random-failures"}, {"-seed", "-3", "-no-random-failures"}} {
		var stdout, stderr bytes.Buffer
		if err := run(testContext(t), args, &stdout, &stderr); err != nil {
			t.Fatalf("run(%q) = %v; stderr:\n%s", args, err, stderr.String())
		}
		if got := stdout.String(); got != wantSample {
			t.Errorf("run(%q) printed:\n%s\nwant:\n%s", args, got, wantSample)
		}
	}
}

func TestRunFileQuiet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parts.csv")
	csv := "part, price ,stock\n\"bolt, M6\",0.10,500\nnut,0.05,\nwasher, 0.02 ,1000\n\"O'Ring \"\"large\"\"\",1.5,20\n"
	if err := os.WriteFile(path, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), []string{"-q", "-file", path}, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	want := `=== ETL Summary for 'parts.csv' ===
Total rows processed: 3
Columns: part, price, stock

Numeric Statistics:
  price: min=0.02, max=1.50, avg=0.54, sum=1.62
  stock: min=20.00, max=1000.00, avg=506.67, sum=1520.00

✅ ETL complete: 5 events processed
`
	if got := stdout.String(); got != want {
		t.Errorf("run(-q -file) printed:\n%s\nwant:\n%s", got, want)
	}
}

func TestRunBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(path, []byte("a,b\n\"unclosed,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(testContext(t), []string{"-file", path}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("run(-file bad.csv) = %v, want an error naming %s and line 2", err, path)
	}
	if stdout.Len() != 0 {
		t.Errorf("run(-file bad.csv) printed %q, want nothing", stdout.String())
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}, {"-seed", "x"}} {
		var stdout, stderr bytes.Buffer
		err := run(testContext(t), args, &stdout, &stderr)
		if !errors.As(err, new(usageError)) || stderr.Len() == 0 {
			t.Errorf("run(%q) = %v with stderr %q; want a usage error explained on stderr", args, err, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if err := run(testContext(t), []string{"-h"}, new(bytes.Buffer), &stderr); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(stderr.String(), "-file") {
		t.Errorf("run(-h) = %v with stderr %q; want flag.ErrHelp and the usage", err, stderr.String())
	}
}

// checkOnlyUnroutedWarning checks that a run at the default level logged exactly one
// line: the Spine's warning that no organ listens to ETL_COMPLETE.
func checkOnlyUnroutedWarning(t *testing.T, stderr string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	var rec struct {
		Level     string `json:"level"`
		EventType string `json:"event_type"`
	}
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil || rec.Level != "WARN" || rec.EventType != "ETL_COMPLETE" {
		t.Errorf("run() logged:\n%s\nwant one warning about the unrouted ETL_COMPLETE", stderr)
	}
}

// testContext bounds a run, so that a Spine that never finishes fails the test in
// seconds rather than at the test binary's timeout; a run takes milliseconds.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 10*time.Second, errors.New("the Spine did not finish within 10s"))
	t.Cleanup(cancel)
	return ctx
}
