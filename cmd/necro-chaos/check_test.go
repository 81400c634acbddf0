package main

import (
	"reflect"
	"testing"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/chaosapp"
)

// TestJudgeCountsEachKindOfMiss gives judge evidence with one of each thing it counts
// and checks each count, so that a check that always passes cannot hide here.
func TestJudgeCountsEachKindOfMiss(t *testing.T) {
	okRoot := mustRoot(t, chaosapp.Directive{Do: chaosapp.DoOK})
	failRoot := mustRoot(t, chaosapp.Directive{Do: chaosapp.DoFail})
	lostRoot := mustRoot(t, chaosapp.Directive{Do: chaosapp.DoOK})
	x, err := expect([]necro.Event{okRoot, failRoot, lostRoot, okRoot})
	if err != nil {
		t.Fatal(err)
	}
	if x.roots != 3 || len(x.want) != 6 || x.dead != 1 {
		t.Fatalf("expectation: %d roots, %d pairs, %d dead; want 3, 6, 1", x.roots, len(x.want), x.dead)
	}
	line := func(id, organ, outcome string) chaosapp.LedgerLine {
		return chaosapp.LedgerLine{ID: id, Organ: organ, Outcome: outcome}
	}
	stranger := mustRoot(t, chaosapp.Directive{Do: chaosapp.DoOK})
	ev := evidence{
		lines: []chaosapp.LedgerLine{
			line(okRoot.ID(), chaosapp.OrganWork, chaosapp.OutcomeOK),
			line(okRoot.ID(), chaosapp.OrganWork, chaosapp.OutcomeOK), // a duplicate
			line(okRoot.ID(), chaosapp.OrganAudit, chaosapp.OutcomeOK),
			line(failRoot.ID(), chaosapp.OrganWork, chaosapp.OutcomeError),
			line(failRoot.ID(), chaosapp.OrganAudit, chaosapp.OutcomeOK),
			line(stranger.ID(), chaosapp.OrganWork, chaosapp.OutcomeOK), // unexpected
			// lostRoot: never handled by work; audit handled it.
			line(lostRoot.ID(), chaosapp.OrganAudit, chaosapp.OutcomeOK),
		},
		dead: []necroredis.DeadLetterEntry{
			{ID: "1-0", DeadLetter: backend.DeadLetter{Event: failRoot, Organ: chaosapp.OrganWork}},
			{ID: "2-0", DeadLetter: backend.DeadLetter{Event: okRoot, Organ: chaosapp.OrganAudit}},    // unexpected
			{ID: "3-0", DeadLetter: backend.DeadLetter{Receipt: "99-0"}, Fields: map[string]string{}}, // poison
			{ID: "4-0", DeadLetter: backend.DeadLetter{Receipt: "98-0"}, Fields: map[string]string{}}, // undecodable, not ours
		},
		pending: 2,
	}
	v := judge(x, ev, map[string]bool{"99-0": true})
	want := verdict{Roots: 3, Expected: 6, Handled: 7, Lost: 1, Unexpected: 3, Duplicated: 1, DeadLettered: 1, DeadWanted: 1,
		Poison: 1, Pending: 2}
	got := v
	got.LostSample, got.UnexpectedSample = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("verdict\n got %+v\nwant %+v", got, want)
	}
	if v.complete() {
		t.Error("complete with a lost pair and 2 pending")
	}
	if len(v.problems(false)) != 3 {
		t.Errorf("problems: %q, want lost, unexpected and pending", v.problems(false))
	}
	if len(v.problems(true)) != 2 {
		t.Errorf("problems with loss allowed: %q, want unexpected and pending", v.problems(true))
	}
}

func mustRoot(t *testing.T, d chaosapp.Directive) necro.Event {
	t.Helper()
	ev, err := chaosapp.NewRoot(d)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
