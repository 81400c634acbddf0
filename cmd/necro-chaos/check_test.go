package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/chaosapp"
	"github.com/necrostack/necro/internal/redistest"
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
		Poison: 1, PoisonCount: 1, Pending: 2}
	got := v
	got.LostSample, got.UnexpectedSample, got.PoisonSample = nil, nil, nil
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

// TestJudgePoisonEntryByEntry writes two poison entries and gives judge two dead
// letters of the first and none of the second: the counts agree, the entries do not,
// and the verdict must fail.
func TestJudgePoisonEntryByEntry(t *testing.T) {
	x, err := expect(nil)
	if err != nil {
		t.Fatal(err)
	}
	poisonDL := func(dlID, original string) necroredis.DeadLetterEntry {
		return necroredis.DeadLetterEntry{ID: dlID, DeadLetter: backend.DeadLetter{Receipt: original + "#1"},
			Fields: map[string]string{"original_id": original, "event": "[1, 2, 3]"}}
	}
	written := map[string]bool{"10-0": true, "11-0": true}
	ev := evidence{dead: []necroredis.DeadLetterEntry{poisonDL("1-0", "10-0"), poisonDL("2-0", "10-0")}}
	v := judge(x, ev, written)
	if v.complete() && len(v.problems(false)) == 0 {
		t.Errorf("two dead letters of poison entry 10-0 and none of 11-0 pass: %+v", v)
	}
	if v.Poison != 2 || v.PoisonMissed != 1 || v.PoisonExtra != 1 {
		t.Errorf("poison: %d dead letters, %d entries missed, %d extra; want 2, 1, 1", v.Poison, v.PoisonMissed, v.PoisonExtra)
	}
	if len(v.problems(true)) == 0 {
		t.Error("a poison entry dead-lettered twice passes where loss is allowed")
	}

	ev.dead = []necroredis.DeadLetterEntry{poisonDL("1-0", "10-0"), poisonDL("2-0", "11-0")}
	if p := judge(x, ev, written).problems(false); len(p) != 0 {
		t.Errorf("one dead letter of each poison entry: problems %q, want none", p)
	}
}

// TestGatherCountsUnreadWhenRedisCannotTellTheLag leaves the group a lag Redis cannot
// tell (an entry deleted after the group's last-delivered id) and checks that gather
// counts the entries still unread, and only those.
func TestGatherCountsUnreadWhenRedisCannotTellTheLag(t *testing.T) {
	cases := []struct {
		name      string
		groupAt   string   // the group's last-delivered id
		deleted   []string // entries deleted after the group was made
		want      int64
		wantFinal bool // judge says the run is complete
	}{
		{"two unread", "2-0", []string{"4-0"}, 2, false},        // 3-0 and 5-0 are unread
		{"none unread", "3-0", []string{"4-0", "5-0"}, 0, true}, // the newest left is 3-0
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Config{})
			cfg := necroredis.Config{URL: srv.URL(), Stream: "chaos:events", Group: "chaos"}
			do := func(args ...string) {
				t.Helper()
				if reply, err := srv.Do(args...); err != nil || strings.HasPrefix(reply, "ERR:") {
					t.Fatalf("%q: %q, %v", args, reply, err)
				}
			}
			for i := 1; i <= 5; i++ {
				do("XADD", cfg.Stream, fmt.Sprintf("%d-0", i), "data", "x")
			}
			do("XGROUP", "CREATE", cfg.Stream, cfg.Group, tc.groupAt)
			do(append([]string{"XDEL", cfg.Stream}, tc.deleted...)...)
			if lag := groupLag(t, cfg); lag != -1 {
				t.Fatalf("Redis tells the lag (%d); the case needs one it cannot tell", lag)
			}

			ev, err := gather(t.Context(), nil, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if ev.lag != tc.want {
				t.Errorf("gather counts %d unread, want %d", ev.lag, tc.want)
			}
			x, err := expect(nil)
			if err != nil {
				t.Fatal(err)
			}
			v := judge(x, ev, nil)
			if v.complete() != tc.wantFinal {
				t.Errorf("complete = %v with %d unread, want %v", v.complete(), tc.want, tc.wantFinal)
			}
			if !tc.wantFinal && len(v.problems(false)) == 0 {
				t.Errorf("%d entries unread, and no problem reported", tc.want)
			}
		})
	}
}

// groupLag returns the lag Redis reports for cfg's group.
func groupLag(t *testing.T, cfg necroredis.Config) int64 {
	t.Helper()
	admin, err := necroredis.OpenAdmin(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	in, err := admin.Inspect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Groups) != 1 {
		t.Fatalf("%d groups, want 1", len(in.Groups))
	}
	return in.Groups[0].Lag
}

// TestStopProblemsTellsEachEndApart feeds the check of the drain's stop one end of each
// kind: only a worker that got the SIGTERM and exited 0 passes, and a kill that lands
// during the drain is named as such, not as a bad drain.
func TestStopProblemsTellsEachEndApart(t *testing.T) {
	cases := []struct {
		name string
		end  exitRecord
		want string // in the one problem; "" for none
	}{
		{"drained", exitRecord{Worker: "w1", Code: 0, Term: true}, ""},
		{"exit 5 at SIGTERM", exitRecord{Worker: "w1", Code: 5, Term: true}, "did not drain cleanly at SIGTERM: w1: exit 5"},
		{"still running, killed", exitRecord{Worker: "w1", Code: -1, Signal: "killed (still running 30s after SIGTERM)", ByUs: true, Term: true},
			"did not drain cleanly"},
		{"killed during the drain", exitRecord{Worker: "w2", Code: -1, Signal: "killed", Term: true},
			"died while it drained at SIGTERM, of a signal the harness did not send: w2: killed"},
		{"down at the stop", exitRecord{Worker: "w3", Code: -1, Signal: "killed", ByUs: true, Down: true},
			"w3 had no process when the drain stopped the workers (w3: down, its last process ended by killed)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := stopProblems([]exitRecord{tc.end})
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("problems %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("problems %q, want one containing %q", got, tc.want)
			}
		})
	}
}
