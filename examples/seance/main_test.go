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

// wantDefault is the program's output for the seed's ritual. The Spine processes 5
// events: the 4 of the chain and SEANCE_COMPLETE, which no organ listens to (the seed's
// Spine had stopped before it and printed 4).
const wantDefault = `🕯️  Beginning the Séance... 🕯️


==================================================
🔮 SÉANCE COMPLETE 🔮
==================================================
Spirit: Ancient One
Omen: The words of Ancient One foretell: A great change approaches.
Interpretation: The spirits suggest patience and vigilance. (Based on: The Ancient One speaks in response to 'What wisdom...)
==================================================


✨ Séance complete: 5 events processed
`

// ravenBlock is the output for the spirit Raven asked "Will it rain?": the
// interpretation quotes the answer to that question, which the seed replaced with the
// default one.
const ravenBlock = `
==================================================
🔮 SÉANCE COMPLETE 🔮
==================================================
Spirit: Raven
Omen: The words of Raven foretell: A great change approaches.
Interpretation: The spirits suggest patience and vigilance. (Based on: The Raven speaks in response to 'Will it rain?': '...)
==================================================


✨ Séance complete: 5 events processed
`

func TestRunDefault(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), nil, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v; stderr:\n%s", err, stderr.String())
	}
	if got := stdout.String(); got != wantDefault {
		t.Errorf("run() printed:\n%s\nwant:\n%s", got, wantDefault)
	}
	checkOnlyUnroutedWarning(t, stderr.String())
}

// TestRunRandomFailureFlags: the flags every bundled app takes are accepted; the
// séance has no random failures, so they change nothing.
func TestRunRandomFailureFlags(t *testing.T) {
	for _, args := range [][]string{{"-seed", "7"}, {"-no-random-failures"}} {
		var stdout, stderr bytes.Buffer
		if err := run(testContext(t), args, &stdout, &stderr); err != nil {
			t.Fatalf("run(%q) = %v; stderr:\n%s", args, err, stderr.String())
		}
		if got := stdout.String(); got != wantDefault {
			t.Errorf("run(%q) printed:\n%s\nwant:\n%s", args, got, wantDefault)
		}
	}
}

func TestRunRitualFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-q", "-spirit", "Raven", "-question", "Will it rain?", "-ritual", "Dawn Chant"}
	if err := run(testContext(t), args, &stdout, &stderr); err != nil {
		t.Fatalf("run(%q) = %v; stderr:\n%s", args, err, stderr.String())
	}
	if got := stdout.String(); got != ravenBlock {
		t.Errorf("run(%q) printed:\n%s\nwant:\n%s", args, got, ravenBlock)
	}
}

func TestRunFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ritual.json")
	if err := os.WriteFile(path, []byte(`{"ritual": "Dawn Chant", "spirit_name": "Raven", "question": "Will it rain?"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), []string{"-q", "-file", path}, &stdout, &stderr); err != nil {
		t.Fatalf("run(-file) = %v; stderr:\n%s", err, stderr.String())
	}
	if got := stdout.String(); got != ravenBlock {
		t.Errorf("run(-file) printed:\n%s\nwant:\n%s", got, ravenBlock)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"spirit": "Raven"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if err := run(testContext(t), []string{"-file", bad}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("run(-file with an unknown key) = %v, want an error naming %s", err, bad)
	}
	if stdout.Len() != 0 {
		t.Errorf("run(-file bad.json) printed %q, want nothing", stdout.String())
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}, {"-file", "ritual.json", "-spirit", "Raven"}} {
		var stdout, stderr bytes.Buffer
		err := run(testContext(t), args, &stdout, &stderr)
		if !errors.As(err, new(usageError)) || stderr.Len() == 0 || stdout.Len() != 0 {
			t.Errorf("run(%q) = %v with stderr %q; want a usage error explained on stderr", args, err, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if err := run(testContext(t), []string{"-h"}, new(bytes.Buffer), &stderr); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(stderr.String(), "-question") {
		t.Errorf("run(-h) = %v with stderr %q; want flag.ErrHelp and the usage", err, stderr.String())
	}
}

// checkOnlyUnroutedWarning checks that a run at the default level logged exactly one
// line: the Spine's warning that no organ listens to SEANCE_COMPLETE.
func checkOnlyUnroutedWarning(t *testing.T, stderr string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	var rec struct {
		Level     string `json:"level"`
		EventType string `json:"event_type"`
	}
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil || rec.Level != "WARN" || rec.EventType != "SEANCE_COMPLETE" {
		t.Errorf("run() logged:\n%s\nwant one warning about the unrouted SEANCE_COMPLETE", stderr)
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
