package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
)

// wantSample is what the program prints for the bundled sample without random failures,
// less the time lines (see withoutTimes). The app's tests work the figures out.
const wantSample = `============================================================
TRADING ORDER BOOK SYSTEM
============================================================

Submitting 10 orders...

  → alice: BUY 100 AAPL @ 149.50
  → alice: BUY 200 AAPL @ 149.00
  → bob: SELL 100 AAPL @ 150.50
  → bob: SELL 200 AAPL @ 151.00
  → charlie: BUY 50 AAPL @ MKT
  → diana: SELL 75 AAPL @ MKT
  → eve: BUY 30 GOOGL @ 141.00
  → frank: SELL 30 GOOGL @ 141.00
  → grace: BUY 500 TSLA @ 248.00
  → henry: SELL 500 TSLA @ 248.00

Processing orders...

============================================================
EXECUTION RESULTS
============================================================
  Events processed: 38
  Events emitted: 28
  Trades executed: 4
  Settlements: 4
  Settlement failures: 0
  Retries: 0

============================================================
ORDER BOOK STATE (AAPL)
============================================================
  BIDS:
        25 @ $149.50
       200 @ $149.00
  ASKS:
        50 @ $150.50
       200 @ $151.00

============================================================
AUDIT TRAIL SUMMARY
============================================================
  Orders Validated: 10
  Orders Rejected: 0
  Orders Filled: 4
  Orders Partial: 0
  Orders Queued: 6
  Trades Executed: 4
  Settlements: 4
  Risk Alerts: 0
============================================================
`

// withoutTimes drops the lines that depend on the clock: the elapsed time and the
// throughput.
func withoutTimes(s string) string {
	var keep []string
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(line, "  Time elapsed: ") && !strings.HasPrefix(line, "  Throughput: ") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// runOK runs the program and fails the test when it returns an error.
func runOK(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("run(%q) = %v; stderr:\n%s", args, err, errOut.String())
	}
	return out.String(), errOut.String()
}

func TestRunSample(t *testing.T) {
	stdout, stderr := runOK(t, "-no-random-failures", "-settlement-latency=-1ns")
	if got := withoutTimes(stdout); got != wantSample {
		t.Errorf("run() printed:\n%s\nwant:\n%s", got, wantSample)
	}
	if stderr != "" {
		t.Errorf("run() logged at the default level, want nothing:\n%s", stderr)
	}
	for _, want := range []string{"\n  Time elapsed: ", "s\n  Throughput: ", " events/sec\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("run() printed:\n%s\nwant it to contain %q", stdout, want)
		}
	}
}

// TestRunSampleWithLatency runs the sample with the clearing house's latency and random
// failures on, as `go run` does by default but for a shorter latency: the orders come
// out the same, since seed 1 times out none of the four settlements.
func TestRunSampleWithLatency(t *testing.T) {
	stdout, _ := runOK(t, "-settlement-latency=3ms")
	if got := withoutTimes(stdout); got != wantSample {
		t.Errorf("run() printed:\n%s\nwant:\n%s", got, wantSample)
	}
}

func TestRunFiles(t *testing.T) {
	for _, file := range []string{filepath.Join("app", "sample_orders.json"), filepath.Join("app", "sample_orders.csv")} {
		stdout, _ := runOK(t, "-file", file, "-no-random-failures", "-settlement-latency=-1ns")
		want := "📂 Loading orders from: " + file + "\n\n" + wantSample
		if got := withoutTimes(stdout); got != want {
			t.Errorf("run(-file %s) printed:\n%s\nwant:\n%s", file, got, want)
		}
	}
}

func TestRunQuiet(t *testing.T) {
	stdout, _ := runOK(t, "-q", "-no-random-failures", "-settlement-latency=-1ns")
	want := wantSample[strings.Index(wantSample, "\n"+strings.Repeat("=", 60)+"\nEXECUTION RESULTS"):]
	if got := withoutTimes(stdout); got != want {
		t.Errorf("run(-q) printed:\n%s\nwant:\n%s", got, want)
	}
}

// TestRunStress runs random orders with random failures on: the trades of the
// problematic traders are dead-lettered, and the same seed prints the same run.
func TestRunStress(t *testing.T) {
	args := []string{"-stress", "-orders", "300", "-seed", "7", "-settlement-latency=-1ns", "-q"}
	first, _ := runOK(t, args...)
	for _, want := range []string{"🚀 STRESS TEST MODE: 300 orders\n", "\nDEAD LETTER QUEUE\n", "Settlement failed: trader_bad_",
		"\n  Handler errors: SettlementOrgan: "} {
		if !strings.Contains(first, want) {
			t.Errorf("run(%q) printed:\n%s\nwant it to contain %q", args, first, want)
		}
	}
	if strings.Contains(first, "  → ") {
		t.Errorf("run(%q) printed a line per order:\n%s", args, first)
	}
	again, _ := runOK(t, args...)
	if withoutTimes(again) != withoutTimes(first) {
		t.Errorf("run(%q) printed:\n%s\nthe first time, then:\n%s", args, first, again)
	}
	other, _ := runOK(t, "-stress", "-orders", "300", "-seed", "8", "-settlement-latency=-1ns", "-q")
	if withoutTimes(other) == withoutTimes(first) {
		t.Errorf("seeds 7 and 8 printed the same run:\n%s", other)
	}
}

func TestRunErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"unknown flag", []string{"-nope"}, true, "flag provided but not defined"},
		{"extra argument", []string{"orders.json"}, true, "unexpected arguments"},
		{"stress and file", []string{"-stress", "-file", "x.json"}, true, "-stress makes up its orders"},
		{"orders without stress", []string{"-orders", "5"}, true, "-orders applies to -stress only"},
		{"negative orders", []string{"-stress", "-orders", "-1"}, true, "-orders must not be negative"},
		{"missing file", []string{"-file", missing}, false, missing},
		{"unsupported file", []string{"-file", "main.go"}, false, "unsupported file format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			if err == nil || errors.As(err, new(usageError)) != tt.usage || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v; want an error containing %q, usage error %v", tt.args, err, tt.want, tt.usage)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "-settlement-latency") {
		t.Errorf("run(-h) = %v, printed:\n%s\nwant flag.ErrHelp and the flags", err, stderr.String())
	}
}

// TestRunCanceled checks that an interrupted run reports the interruption, not a result.
func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-settlement-latency=-1ns"}, &stdout, &stderr)
	if !errors.Is(err, context.Canceled) || strings.Contains(stdout.String(), "EXECUTION RESULTS") {
		t.Errorf("run(canceled) = %v, printed:\n%s\nwant context.Canceled and no results", err, stdout.String())
	}
}
