//go:build unix

package chaosapp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/internal/chaosapp"
)

// The environment that turns the test binary into a worker handling one exit root:
// the ledger path and the root's id.
const (
	envExitLedger = "CHAOSAPP_TEST_EXIT_LEDGER"
	envExitID     = "CHAOSAPP_TEST_EXIT_ID"
)

// exitRootID is the id of the root of TestExitKillsTheFirstHandling.
const exitRootID = "0d9c3a57-51c4-4b7e-9f0a-2f6e1c8b4d13"

// TestMain runs the tests, or, when TestExitKillsTheFirstHandling re-executes the
// binary, the worker that must die.
func TestMain(m *testing.M) {
	if ledger := os.Getenv(envExitLedger); ledger != "" {
		err := exitWorker(ledger, os.Getenv(envExitID))
		fmt.Fprintf(os.Stderr, "the exit worker did not die: %v\n", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// exitWorker handles an exit root with id on the in-memory backend; it returns only if
// the process survives.
func exitWorker(ledger, id string) error {
	a, err := chaosapp.New(chaosapp.Options{Ledger: ledger, Worker: "doomed"})
	if err != nil {
		return err
	}
	root, err := necro.Draft{ID: id, Type: chaosapp.EventType, Payload: chaosapp.Directive{Do: chaosapp.DoExit}}.Build()
	if err != nil {
		return err
	}
	_, err = runApp(context.Background(), a, []necro.Event{root})
	return errors.Join(err, a.Close())
}

// The first handling of an exit root writes its ledger line and the marker, then its
// process dies of SIGKILL; the next handling, anywhere, finds the marker and succeeds.
func TestExitKillsTheFirstHandling(t *testing.T) {
	dir := t.TempDir()
	ledger := filepath.Join(dir, "doomed.jsonl")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envExitLedger+"="+ledger, envExitID+"="+exitRootID)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the worker ended with %v, want death by SIGKILL\n%s", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the worker ended with %v, want death by SIGKILL\n%s", ee, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "exit-"+exitRootID)); err != nil {
		t.Errorf("marker: %v", err)
	}
	lines, err := chaosapp.ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	var work []chaosapp.LedgerLine
	for _, l := range lines {
		if l.Organ == chaosapp.OrganWork {
			work = append(work, l)
		}
	}
	if len(work) != 1 || work[0].ID != exitRootID || work[0].Outcome != chaosapp.OutcomeExit || work[0].Worker != "doomed" {
		t.Fatalf("organ work's ledger lines = %+v, want one exit line of worker doomed for %s", work, exitRootID)
	}

	// The event comes back (here: emitted again) to a worker that shares the directory.
	a, ledger2 := newApp(t, dir, "survivor")
	dead, err := runApp(t.Context(), a, []necro.Event{rootWithID(t, exitRootID, chaosapp.Directive{Do: chaosapp.DoExit})})
	if err != nil || len(dead) != 0 {
		t.Fatalf("second handling: dead letters %v, err %v; want none", dead, err)
	}
	lines, err = chaosapp.ReadLedger(ledger2)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, l := range lines {
		if l.Organ == chaosapp.OrganWork && l.ID == exitRootID && l.Outcome == chaosapp.OutcomeOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("second handling's ledger = %+v, want one ok line of organ work", lines)
	}
}
