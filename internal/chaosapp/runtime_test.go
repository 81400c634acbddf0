package chaosapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/internal/chaosapp"
	"github.com/necrostack/necro/spine"
)

// newApp builds an app writing to a ledger in dir as worker, closed when the test ends.
func newApp(t *testing.T, dir, worker string) (*chaosapp.App, string) {
	t.Helper()
	ledger := filepath.Join(dir, worker+".jsonl")
	a, err := chaosapp.New(chaosapp.Options{Ledger: ledger, Worker: worker})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return a, ledger
}

// runApp runs roots through a's organs on a fresh in-memory backend, with a's Config,
// to completion, and returns the dead letters.
func runApp(ctx context.Context, a *chaosapp.App, roots []necro.Event) ([]backend.DeadLetter, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, time.Minute, errors.New("the Spine did not finish within a minute"))
	defer cancel()
	q, err := memory.New(memory.Config{Capacity: memory.Unbounded, DeadLetterCapacity: memory.Unbounded})
	if err != nil {
		return nil, err
	}
	defer q.Close() // the dead letters are read before; nothing left to lose
	sp, err := spine.New(q, a.Mounts(), a.Config(spine.Config{}))
	if err != nil {
		return nil, err
	}
	if err := sp.Emit(ctx, roots...); err != nil {
		return nil, err
	}
	if err := sp.Run(ctx); err != nil {
		return nil, fmt.Errorf("Run() = %w", err)
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return q.DeadLetters(ctx, 0)
}

// rootWithID builds a root event carrying d with the given id.
func rootWithID(t *testing.T, id string, d chaosapp.Directive) necro.Event {
	t.Helper()
	ev, err := necro.Draft{ID: id, Type: chaosapp.EventType, Payload: d}.Build()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

type pair struct{ id, organ string }

// The proof that Expect is right: a run of one root of every directive on the real
// Spine ends with exactly what Expect says. Every "ok" expectation has an ok line in the
// ledger and no other (event, organ) has one; the dead letters are exactly the "dead"
// expectations, naming the same organ; and organ work's ledger lines for a dead letter
// are as many as the attempts it records (3 for retries exhausted, 1 for a permanent
// failure, 0 for the depth budget).
func TestExpectMatchesTheSpine(t *testing.T) {
	dir := t.TempDir()
	a, ledger := newApp(t, dir, "test-worker")
	directives := []chaosapp.Directive{
		{Do: chaosapp.DoOK}, {}, {Do: chaosapp.DoFail}, {Do: chaosapp.DoFailOnce}, {Do: chaosapp.DoPanic},
		{Do: chaosapp.DoPanicOnce}, {Do: chaosapp.DoSleep, MS: 10}, {Do: chaosapp.DoSleep, MS: 500},
		{Do: chaosapp.DoHang}, {Do: chaosapp.DoEmit, N: 3}, {Do: chaosapp.DoEmit},
		{Do: chaosapp.DoEmit, N: 2, Child: &chaosapp.Directive{Do: chaosapp.DoEmit, N: 2, Child: &chaosapp.Directive{Do: chaosapp.DoFail}}},
		{Do: chaosapp.DoEmit, N: chaosapp.MaxFanOut + 1}, {Do: chaosapp.DoEmit, N: chaosapp.MaxFanOut},
		{Do: chaosapp.DoLoop}, {Do: chaosapp.DoBomb}, {Do: chaosapp.DoBomb, N: 150, Child: &chaosapp.Directive{Do: chaosapp.DoFail}},
		{Do: chaosapp.DoEmit, N: 1, Child: &chaosapp.Directive{Do: chaosapp.DoLoop, Pad: "xxxx"}},
		{Do: chaosapp.DoExit},
	}
	var roots []necro.Event
	wantOK, wantDead := map[pair]bool{}, map[pair]bool{}
	for i, d := range directives {
		d.Seq = i + 1
		ev, err := chaosapp.NewRoot(d)
		if err != nil {
			t.Fatal(err)
		}
		if d.Do == chaosapp.DoExit {
			// A handling that killed its process came first: this one must succeed.
			if err := os.WriteFile(filepath.Join(dir, "exit-"+ev.ID()), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		roots = append(roots, ev)
		exps, err := chaosapp.Expect(ev)
		if err != nil {
			t.Fatalf("Expect(%v) = %v", d, err)
		}
		for _, e := range exps {
			k := pair{e.ID, e.Organ}
			if wantOK[k] || wantDead[k] {
				t.Fatalf("Expect(%v) names %v twice", d, k)
			}
			if e.Want == chaosapp.WantOK {
				wantOK[k] = true
			} else {
				wantDead[k] = true
			}
		}
	}

	dead, err := runApp(t.Context(), a, roots)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := chaosapp.ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}

	gotOK, workLines := map[pair]bool{}, map[string]int{}
	for _, l := range lines {
		k := pair{l.ID, l.Organ}
		if !wantOK[k] && !wantDead[k] {
			t.Errorf("ledger: %s handled %s (%s, depth %d), which Expect does not name", l.Organ, l.ID, l.Do, l.Depth)
		}
		if l.Outcome == chaosapp.OutcomeOK {
			gotOK[k] = true
		}
		if l.Organ == chaosapp.OrganWork {
			workLines[l.ID]++
		}
		if l.Worker != "test-worker" || l.Type != chaosapp.EventType {
			t.Errorf("ledger line %+v: want worker test-worker and type %s", l, chaosapp.EventType)
		}
	}
	for k := range wantOK {
		if !gotOK[k] {
			t.Errorf("Expect says %s handles %s with success; the ledger has no such line", k.organ, k.id)
		}
	}
	for k := range gotOK {
		if !wantOK[k] {
			t.Errorf("%s handled %s with success; Expect says it is dead-lettered", k.organ, k.id)
		}
	}

	gotDead := map[pair]bool{}
	for _, dl := range dead {
		k := pair{dl.Event.ID(), dl.Organ}
		if gotDead[k] {
			t.Errorf("dead letter %v twice", k)
		}
		gotDead[k] = true
		if !wantDead[k] {
			t.Errorf("dead letter of %s for organ %q (%s, attempts %d), which Expect does not predict",
				dl.Event.ID(), dl.Organ, dl.Reason, dl.Attempts)
		}
		if dl.Organ == chaosapp.OrganWork && workLines[dl.Event.ID()] != dl.Attempts {
			t.Errorf("dead letter of %s (%s): %d attempts, but %d ledger lines of organ work",
				dl.Event.ID(), dl.Reason, dl.Attempts, workLines[dl.Event.ID()])
		}
	}
	for k := range wantDead {
		if !gotDead[k] {
			t.Errorf("Expect says %s dead-letters %s; the store has no such dead letter", k.organ, k.id)
		}
	}
	reasons := map[string]int{}
	for _, dl := range dead {
		reasons[dl.Reason]++
	}
	t.Logf("%d expectations (%d ok, %d dead), %d ledger lines, dead letters by reason %v",
		len(wantOK)+len(wantDead), len(wantOK), len(wantDead), len(lines), reasons)
	// The run covered every way to a dead letter, or the comparison above proved little.
	for _, reason := range []string{"retries exhausted", "permanent error", "depth budget exceeded"} {
		if reasons[reason] == 0 {
			t.Errorf("no dead letter with reason %q among %v", reason, reasons)
		}
	}
}

// The built-in mix runs to the end with every expectation met, as the report says.
func TestBuiltinMixMeetsItsExpectations(t *testing.T) {
	a, err := chaosapp.New(chaosapp.Options{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() }) // no ledger: nothing to close but the hangs
	roots, err := a.Roots()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	dead, err := runApp(t.Context(), a, roots)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := a.Report(&out, spine.Stats{}, dead, time.Since(start)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), " 0 missing, 0 unexpected dead letters") {
		t.Errorf("report:\n%s\nwant every expectation met", out.String())
	}
	b, err := json.Marshal(a.Results())
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Roots    int                       `json:"roots"`
		Outcomes map[string]map[string]int `json:"outcomes"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Roots != len(roots) || res.Outcomes["work"]["hang"] != chaosapp.MaxAttempts || res.Outcomes["work"]["bomb"] != 1 {
		t.Errorf("Results() = %s; want %d roots, %d hangs and 1 bomb by work", b, len(roots), chaosapp.MaxAttempts)
	}
	t.Logf("%d roots in %v\n%s", len(roots), time.Since(start), out.String())
}

// A ledger opened again is appended to; lines of every worker name their worker.
func TestLedgerAppends(t *testing.T) {
	dir := t.TempDir()
	ev := rootWithID(t, "6a1f2b9c-3d4e-4f50-8a6b-7c8d9e0f1a2b", chaosapp.Directive{Do: chaosapp.DoOK})
	for _, worker := range []string{"w1", "w2"} {
		a, err := chaosapp.New(chaosapp.Options{Ledger: filepath.Join(dir, "ledger.jsonl"), Worker: worker})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := runApp(t.Context(), a, []necro.Event{ev}); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	lines, err := chaosapp.ReadLedger(filepath.Join(dir, "ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.Worker+"/"+l.Organ)
	}
	slices.Sort(got)
	if want := []string{"w1/audit", "w1/work", "w2/audit", "w2/work"}; !slices.Equal(got, want) {
		t.Errorf("ledger lines by worker/organ = %q, want %q", got, want)
	}
}

// An input file is a JSON list of directives, one root each; New names the file it
// cannot use.
func TestNewInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	a, err := chaosapp.New(chaosapp.Options{Input: write("good.json", `[{"seq":7,"do":"fail"},{"seq":8,"do":"emit","n":2}]`)})
	if err != nil {
		t.Fatal(err)
	}
	roots, err := a.Roots()
	if err != nil || len(roots) != 2 {
		t.Fatalf("Roots() = %d roots, %v; want 2", len(roots), err)
	}
	var d chaosapp.Directive
	if err := roots[1].DecodePayload(&d); err != nil || d.Seq != 8 || d.Do != chaosapp.DoEmit || d.N != 2 {
		t.Errorf("second root carries %+v (%v), want seq 8, emit, n 2", d, err)
	}

	for _, path := range []string{write("bad.json", `{"do":"ok"}`), write("exit.json", `[{"do":"exit"}]`),
		filepath.Join(dir, "missing.json")} {
		if _, err := chaosapp.New(chaosapp.Options{Input: path}); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("New(input %s) = %v, want an error naming the file", path, err)
		}
	}
	a, err = chaosapp.New(chaosapp.Options{Input: write("unknown.json", `[{"do":"explode"}]`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Roots(); !errors.Is(err, chaosapp.ErrBadDirective) {
		t.Errorf("Roots() of an unknown directive = %v, want ErrBadDirective", err)
	}
}
