package chaosapp_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/internal/chaosapp"
)

func ExampleExpect() {
	root, err := necro.Draft{ID: "3f1c2b4a-9d8e-4f7a-b6c5-d4e3f2a1b0c9", Type: chaosapp.EventType,
		Payload: chaosapp.Directive{Seq: 1, Do: chaosapp.DoEmit, N: 2, Child: &chaosapp.Directive{Do: chaosapp.DoFail}}}.Build()
	if err != nil {
		panic(err)
	}
	exps, err := chaosapp.Expect(root)
	if err != nil {
		panic(err)
	}
	for _, e := range exps {
		fmt.Println(e.ID, e.Organ, e.Want)
	}
	// Output:
	// 3f1c2b4a-9d8e-4f7a-b6c5-d4e3f2a1b0c9 audit ok
	// 3f1c2b4a-9d8e-4f7a-b6c5-d4e3f2a1b0c9 work ok
	// 3e48d596-2067-471e-bec4-023d08b540f8 audit ok
	// 3e48d596-2067-471e-bec4-023d08b540f8 work dead
	// a8ad243f-3446-46f3-91d5-1a6036446646 audit ok
	// a8ad243f-3446-46f3-91d5-1a6036446646 work dead
}

// count tallies expectations as "organ/want".
func count(exps []chaosapp.Expectation) map[string]int {
	m := map[string]int{}
	for _, e := range exps {
		m[e.Organ+"/"+e.Want]++
	}
	return m
}

func TestExpect(t *testing.T) {
	tests := []struct {
		name    string
		d       chaosapp.Directive
		want    map[string]int
		wantErr bool
	}{
		{"ok", chaosapp.Directive{Do: chaosapp.DoOK}, map[string]int{"audit/ok": 1, "work/ok": 1}, false},
		{"fail", chaosapp.Directive{Do: chaosapp.DoFail}, map[string]int{"audit/ok": 1, "work/dead": 1}, false},
		{"hang", chaosapp.Directive{Do: chaosapp.DoHang}, map[string]int{"audit/ok": 1, "work/dead": 1}, false},
		{"long hang", chaosapp.Directive{Do: chaosapp.DoHang, MS: 5000}, map[string]int{"audit/ok": 1, "work/dead": 1}, false},
		{"short sleep", chaosapp.Directive{Do: chaosapp.DoSleep, MS: 99}, map[string]int{"audit/ok": 1, "work/ok": 1}, false},
		{"long sleep", chaosapp.Directive{Do: chaosapp.DoSleep, MS: 400}, map[string]int{"audit/ok": 1, "work/dead": 1}, false},
		{"emit none", chaosapp.Directive{Do: chaosapp.DoEmit}, map[string]int{"audit/ok": 1, "work/ok": 1}, false},
		{"emit", chaosapp.Directive{Do: chaosapp.DoEmit, N: chaosapp.MaxFanOut}, map[string]int{"audit/ok": 101, "work/ok": 101}, false},
		{"emit too many", chaosapp.Directive{Do: chaosapp.DoEmit, N: chaosapp.MaxFanOut + 1}, map[string]int{"audit/ok": 1, "work/dead": 1}, false},
		{"bomb", chaosapp.Directive{Do: chaosapp.DoBomb}, map[string]int{"audit/ok": 1, "work/dead": 1}, false},
		{"small bomb", chaosapp.Directive{Do: chaosapp.DoBomb, N: 2}, map[string]int{"audit/ok": 3, "work/ok": 3}, false},
		// Depths 0 to MaxDepth are handled; the child at MaxDepth+1 is dead-lettered by
		// the depth budget, which names the organ that emitted it.
		{"loop", chaosapp.Directive{Do: chaosapp.DoLoop}, map[string]int{"audit/ok": chaosapp.MaxDepth + 1,
			"work/ok": chaosapp.MaxDepth + 1, "work/dead": 1}, false},
		{"exit", chaosapp.Directive{Do: chaosapp.DoExit}, map[string]int{"audit/ok": 1, "work/ok": 1}, false},
		{"unknown", chaosapp.Directive{Do: "explode"}, nil, true},
		{"unknown child", chaosapp.Directive{Do: chaosapp.DoEmit, N: 1, Child: &chaosapp.Directive{Do: "explode"}}, nil, true},
		{"sleep near the timeout", chaosapp.Directive{Do: chaosapp.DoSleep, MS: 200}, nil, true},
		{"hang too short", chaosapp.Directive{Do: chaosapp.DoHang, MS: 300}, nil, true},
		{"negative n", chaosapp.Directive{Do: chaosapp.DoEmit, N: -1}, nil, true},
		{"too large a tree", chaosapp.Directive{Do: chaosapp.DoEmit, N: 100, Child: &chaosapp.Directive{Do: chaosapp.DoEmit, N: 100,
			Child: &chaosapp.Directive{Do: chaosapp.DoEmit, N: 100}}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := chaosapp.NewRoot(tt.d)
			if err != nil {
				t.Fatal(err)
			}
			exps, err := chaosapp.Expect(root)
			if tt.wantErr {
				if !errors.Is(err, chaosapp.ErrBadDirective) {
					t.Errorf("Expect(%v) = %v, want an error matching ErrBadDirective", tt.d, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Expect(%v) = %v", tt.d, err)
			}
			if got := count(exps); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Expect(%v) counts %v, want %v", tt.d, got, tt.want)
			}
			if exps[0].ID != root.ID() {
				t.Errorf("Expect(%v) starts with %v, want the root %s", tt.d, exps[0], root.ID())
			}
		})
	}
}

// A payload that is no directive is an error naming the event.
func TestExpectBadPayload(t *testing.T) {
	root, err := necro.NewEvent(chaosapp.EventType, map[string]any{"do": 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chaosapp.Expect(root); !errors.Is(err, chaosapp.ErrBadDirective) {
		t.Errorf("Expect(do 3) = %v, want ErrBadDirective", err)
	}
}
