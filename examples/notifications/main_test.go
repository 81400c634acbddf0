package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testContext bounds a run, so that a Spine that never finishes fails the test in
// seconds rather than at the test binary's timeout; the sample takes a third of a second.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 20*time.Second, errors.New("the run did not finish within 20s"))
	t.Cleanup(cancel)
	return ctx
}

// timeLine is the one line of the output that depends on the clock.
var timeLine = regexp.MustCompile(`(?m)^  Time: \d+\.\d\ds \(\d+\.\d events/sec\)$`)

// runOK runs the program and returns its stdout with the time line masked, and stderr.
func runOK(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(testContext(t), args, &out, &errOut); err != nil {
		t.Fatalf("run(%q) = %v; stderr:\n%s", args, err, errOut.String())
	}
	if !timeLine.MatchString(out.String()) {
		t.Errorf("run(%q) printed no time line:\n%s", args, out.String())
	}
	return timeLine.ReplaceAllString(out.String(), "  Time: <elapsed>"), errOut.String()
}

// sampleHeader is what the program prints before the run for the sample.
const sampleHeader = `============================================================
NOTIFICATION PIPELINE
============================================================

Processing 5 notifications...

  → user_001: [email, sms, push] - Your order #12345 has shipped!...
  → user_002: [email] - Weekly digest: 5 new updates...
  → user_003: [sms, push] - Security alert: New login detected...
  → user_001: [push] - Payment received - $99.99...
  → user_002: [email, push] - Your subscription renews tomorrow...

Processing...
`

// sampleResults are the results for the sample without random failures: 5 requests,
// 5 validated, 9 sends, 8 deliveries and 8 DELIVERY_COMPLETED (35 events, 30 of them
// emitted); user_003's SMS goes to a blocked number and is dead-lettered at once.
const sampleResults = `
============================================================
RESULTS
============================================================
  Events processed: 35
  Events emitted: 30
  Time: <elapsed>
  Handler errors: {SmsOrgan: 1}

  DLQ: 1 failed events
    - SMS_SEND_REQUESTED: SMS delivery permanently failed: recipient is bloc

  Deliveries: 8
`

// sampleResultsSeed1 are the results with random failures on and seed 1: one email
// fails its first attempt and is retried, and the retry delivers it.
const sampleResultsSeed1 = `
============================================================
RESULTS
============================================================
  Events processed: 36
  Events emitted: 30
  Time: <elapsed>
  Handler errors: {EmailOrgan: 1, SmsOrgan: 1}
  Retries: 1

  DLQ: 1 failed events
    - SMS_SEND_REQUESTED: SMS delivery permanently failed: recipient is bloc

  Deliveries: 8
`

func TestRunSample(t *testing.T) {
	stdout, stderr := runOK(t, "-no-random-failures")
	if want := sampleHeader + sampleResults; stdout != want {
		t.Errorf("run() printed:\n%s\nwant:\n%s", stdout, want)
	}
	// At the default level only handled failures are logged, one JSON line each: the
	// dead-lettered SMS, and the DELIVERY_COMPLETED events that no organ listens to (as
	// in the seed), reported once.
	msgs := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", sc.Text(), err)
		}
		if rec.Level != "WARN" {
			t.Errorf("stderr line %q: want level WARN", sc.Text())
		}
		msgs[rec.Msg]++
	}
	if want := map[string]int{"event dead-lettered": 1, "no organ listens to this event type; acked": 1}; !maps.Equal(msgs, want) {
		t.Errorf("stderr messages = %v, want %v", msgs, want)
	}
}

// TestRunRandomFailures runs the default: random failures on, seed 1. The same seed
// prints the same results.
func TestRunRandomFailures(t *testing.T) {
	first, stderr := runOK(t)
	if want := sampleHeader + sampleResultsSeed1; first != want {
		t.Errorf("run() printed:\n%s\nwant:\n%s", first, want)
	}
	if !strings.Contains(stderr, `"msg":"organ failed; retrying"`) || !strings.Contains(stderr, "SMTP connection failed for bob@example.com (attempt 1)") {
		t.Errorf("stderr does not show the retried SMTP failure:\n%s", stderr)
	}
	if again, _ := runOK(t, "-seed", "1"); again != first {
		t.Errorf("run(-seed 1) printed:\n%s\nafter:\n%s", again, first)
	}
}

func TestRunFiles(t *testing.T) {
	for _, name := range []string{"sample_notifications.json", "sample_notifications.csv"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("app", name)
			stdout, _ := runOK(t, "-file", path, "-no-random-failures")
			if want := "📂 Loading from: " + path + "\n\n" + sampleHeader + sampleResults; stdout != want {
				t.Errorf("run(-file %s) printed:\n%s\nwant:\n%s", path, stdout, want)
			}
		})
	}
}

func TestRunQuiet(t *testing.T) {
	if stdout, _ := runOK(t, "-q", "-no-random-failures"); stdout != sampleResults {
		t.Errorf("run(-q) printed:\n%s\nwant only the results:\n%s", stdout, sampleResults)
	}
}

func TestRunStress(t *testing.T) {
	first, _ := runOK(t, "-stress", "-count", "40", "-seed", "5", "-q")
	if !strings.HasPrefix(first, "🚀 STRESS TEST: 40 notifications\n\n====") || !strings.Contains(first, "  Deliveries: ") {
		t.Errorf("run(-stress) printed:\n%s\nwant the banner, then the results with deliveries", first)
	}
	if again, _ := runOK(t, "-stress", "-count", "40", "-seed", "5", "-q"); again != first {
		t.Errorf("run(-stress -seed 5) printed:\n%s\nafter:\n%s", again, first)
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"extra"},
		{"-no-such-flag"},
		{"-stress", "-file", "x.json"},
		{"-count", "5"},
		{"-stress", "-count", "-1"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(testContext(t), args, &stdout, &stderr)
		if !errors.As(err, new(usageError)) || stderr.Len() == 0 || stdout.Len() != 0 {
			t.Errorf("run(%q) = %v, stdout %q, stderr %q; want a usage error explained on stderr", args, err, stdout.String(), stderr.String())
		}
	}
	if err := run(testContext(t), []string{"-h"}, new(bytes.Buffer), new(bytes.Buffer)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v, want flag.ErrHelp", err)
	}
}

func TestRunBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	var stdout bytes.Buffer
	err := run(testContext(t), []string{"-file", missing}, &stdout, new(bytes.Buffer))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) || stdout.Len() != 0 {
		t.Errorf("run(-file missing) = %v, stdout %q; want a not-exist error naming the file, nothing printed", err, stdout.String())
	}
}
