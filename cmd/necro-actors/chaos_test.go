package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/internal/chaosapp"
	"github.com/necrostack/necro/internal/redistest"
)

// `run chaos` runs the built-in mix in memory and reports every expectation met.
func TestChaosRunMemory(t *testing.T) {
	c := newCLI()
	if got := c.run(t, "run", "chaos"); got != exitOK {
		t.Fatalf("run chaos: exit %d\n%s", got, c.output())
	}
	out := c.stdout.String()
	for _, want := range []string{"Submitting 11 chaos tasks:", "  #8 hang\n", "CHAOS RESULTS",
		"Dead letters by organ: work 5", " 0 missing, 0 unexpected dead letters"} {
		if !strings.Contains(out, want) {
			t.Errorf("run chaos printed no %q:\n%s", want, out)
		}
	}

	c = newCLI()
	if got := c.run(t, "run", "chaos", "--json"); got != exitOK {
		t.Fatalf("run chaos --json: exit %d\n%s", got, c.output())
	}
	m := oneJSON(t, c.stdout.String())
	res, _ := m["results"].(map[string]any)
	dead, _ := m["dead_letters"].([]any)
	if m["app"] != "chaos" || res["roots"] != 11.0 || len(dead) != 5 {
		t.Errorf("run chaos --json: app %v, results %v, %d dead letters; want chaos, 11 roots, 5 dead letters",
			m["app"], res, len(dead))
	}
}

func TestChaosUsage(t *testing.T) {
	unreachable := "redis://127.0.0.1:1" // never dialled: the usage error comes first
	exits := filepath.Join(t.TempDir(), "exits.json")
	if err := os.WriteFile(exits, []byte(`[{"do":"ok"},{"do":"emit","n":1,"child":{"do":"exit"}}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ledger for another app", []string{"worker", "chain", "--redis", unreachable, "--ledger", "l.jsonl"},
			"--ledger is for the chaos app; chain keeps no ledger"},
		{"negative claim-after", []string{"worker", "chaos", "--redis", unreachable, "--claim-after", "-1s"},
			"--claim-after must not be negative"},
		{"exit without a ledger", []string{"run", "chaos", "--input", exits}, "an exit directive needs a ledger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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

// A chaos worker on Redis writes a ledger line, named after its consumer, for every
// Handle call, and the run ends as Expect says: every "ok" in the ledger, every "dead"
// in the dead-letter stream naming its organ.
func TestChaosWorkerLedger(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	ledger := filepath.Join(t.TempDir(), "w1.jsonl")
	c := newCLI()
	code := c.start(t, "worker", "chaos", "--redis", srv.URL(), "--consumer", "w1", "--ledger", ledger, "--claim-after", "2s")
	if ready := c.stdout.nextJSON(t); ready["event"] != "ready" || ready["app"] != "chaos" {
		t.Fatalf("first line %v, want the ready line of app chaos\n%s", ready, c.output())
	}

	type pair struct{ id, organ string }
	wantOK, wantDead := map[pair]bool{}, map[pair]bool{}
	var roots []necro.Event
	for i, d := range []chaosapp.Directive{{Do: chaosapp.DoOK}, {Do: chaosapp.DoFailOnce},
		{Do: chaosapp.DoEmit, N: 2, Child: &chaosapp.Directive{Do: chaosapp.DoFail}}, {Do: chaosapp.DoLoop}} {
		d.Seq = i + 1
		ev, err := chaosapp.NewRoot(d)
		if err != nil {
			t.Fatal(err)
		}
		exps, err := chaosapp.Expect(ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range exps {
			if e.Want == chaosapp.WantOK {
				wantOK[pair{e.ID, e.Organ}] = true
			} else {
				wantDead[pair{e.ID, e.Organ}] = true
			}
		}
		roots = append(roots, ev)
	}
	store := openStore(t, srv)
	if err := store.Enqueue(t.Context(), roots...); err != nil {
		t.Fatal(err)
	}

	// Wait for the ok lines and the dead letters both: a retry waiting for its delay is
	// not in flight, so a drain would leave it behind.
	var lines []chaosapp.LedgerLine
	var dead []backend.DeadLetter
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if lines, err = chaosapp.ReadLedger(ledger); err != nil {
			t.Fatal(err)
		}
		if dead, err = store.DeadLetters(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		missing := len(wantOK)
		for _, l := range lines {
			if l.Outcome == chaosapp.OutcomeOK && wantOK[pair{l.ID, l.Organ}] {
				missing-- // each (event, organ) succeeds once: there is no crash to repeat it
			}
		}
		if missing == 0 && len(dead) >= len(wantDead) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the ledger lacks %d of %d expected ok lines, and %d of %d dead letters are in:\n%+v\n%s",
				missing, len(wantOK), len(dead), len(wantDead), lines, c.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.signals <- sigterm
	if got := code.wait(t, c); got != exitOK {
		t.Fatalf("exit %d after SIGTERM, want 0\n%s", got, c.output())
	}

	for _, l := range lines {
		if l.Worker != "w1" {
			t.Errorf("ledger line %+v: worker %q, want the consumer name w1", l, l.Worker)
		}
	}
	gotDead := map[pair]bool{}
	for _, dl := range dead {
		gotDead[pair{dl.Event.ID(), dl.Organ}] = true
	}
	if len(gotDead) != len(dead) || len(gotDead) != len(wantDead) {
		t.Errorf("%d dead letters (%v), want %v", len(dead), gotDead, wantDead)
	}
	for k := range wantDead {
		if !gotDead[k] {
			t.Errorf("no dead letter of %s for organ %s; got %v", k.id, k.organ, gotDead)
		}
	}
}
