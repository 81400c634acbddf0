package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
)

const banner = "🕯️  Beginning the Séance... 🕯️\n\n"

// defaultBlock is ManifestEffect's block for the seed's ritual. The interpretation
// quotes the first 50 code points of the answer "The Ancient One speaks in response to
// 'What wisdom do you bring?': 'The path you seek lies within shadows and light.'".
const defaultBlock = `
==================================================
🔮 SÉANCE COMPLETE 🔮
==================================================
Spirit: Ancient One
Omen: The words of Ancient One foretell: A great change approaches.
Interpretation: The spirits suggest patience and vigilance. (Based on: The Ancient One speaks in response to 'What wisdom...)
==================================================
`

// wantDefault is what a run of the seed's ritual prints. The Spine processes 5 events:
// the 4 of the chain and SEANCE_COMPLETE, which no organ listens to.
const wantDefault = banner + defaultBlock + "\n\n✨ Séance complete: 5 events processed\n"

func TestDefaultRun(t *testing.T) {
	a := newApp(t, Options{})
	out, st, dead := runApp(t, a, nil)
	if out != wantDefault {
		t.Errorf("the default run printed:\n%s\nwant:\n%s", out, wantDefault)
	}
	if st.Processed != 5 || st.Emitted != 4 || st.Unrouted != 1 || st.DeadLettered != 0 || len(st.HandlerErrors) != 0 {
		t.Errorf("stats = %+v; want processed 5, emitted 4, unrouted 1 (SEANCE_COMPLETE), no failure", st)
	}
	if len(dead) != 0 {
		t.Errorf("dead letters = %v, want none", dead)
	}
	want := []seance{{
		SpiritName:     "Ancient One",
		Answer:         "The Ancient One speaks in response to 'What wisdom do you bring?': 'The path you seek lies within shadows and light.'",
		Omen:           "The words of Ancient One foretell: A great change approaches.",
		Interpretation: "The spirits suggest patience and vigilance. (Based on: The Ancient One speaks in response to 'What wisdom...)",
		Output:         defaultBlock,
	}}
	res := a.Results()
	if got := res.(struct {
		Seances []seance `json:"seances"`
	}).Seances; !reflect.DeepEqual(got, want) {
		t.Errorf("Results() = %s\nwant %s", show(got), show(want))
	}
	if data, err := json.Marshal(res); err != nil || !bytes.Contains(data, []byte(`"seances":[{"spirit_name":"Ancient One","answer":`)) {
		t.Errorf("Results() as JSON = %s, %v", data, err)
	}
}

// TestRandomFailuresHaveNoEffect: the seed's séance has no random failures, so turning
// them on changes nothing, whatever the seed, and a run is the same every time.
func TestRandomFailuresHaveNoEffect(t *testing.T) {
	for _, seed := range []int64{1, 42} {
		for range 2 {
			out, st, dead := runApp(t, newApp(t, Options{RandomFailures: true, Seed: seed}), nil)
			if out != wantDefault || st.Processed != 5 || len(dead) != 0 {
				t.Errorf("with random failures on, seed %d: printed\n%s\nprocessed %d, %d dead letters; want the default run", seed, out, st.Processed, len(dead))
			}
		}
	}
}

func TestQuietLeavesOutTheBanner(t *testing.T) {
	out, _, _ := runApp(t, newApp(t, Options{Quiet: true}), nil)
	if want := strings.TrimPrefix(wantDefault, banner); out != want {
		t.Errorf("a quiet run printed:\n%s\nwant:\n%s", out, want)
	}
}

func TestMountsInSeedOrder(t *testing.T) {
	var got []string
	for _, m := range newApp(t, Options{}).Mounts() {
		types, err := m.Validate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Name+" "+strings.Join(types, ","))
	}
	want := []string{"SummonSpirit SUMMON_RITUAL", "AskQuestion SPIRIT_APPEARED", "InterpretResponse ANSWER_GENERATED", "ManifestEffect OMEN_REVEALED"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Mounts() = %q, want %q", got, want)
	}
}

// J8: tests/test_seance_flow.py::test_seance_complete_event_chain, and the fix of the
// seed's bug: the spirit answers the question asked, not the default one.
func TestSeanceChain(t *testing.T) {
	a := newApp(t, Options{Quiet: true})
	root := newEvent(t, "SUMMON_RITUAL", map[string]any{"ritual": "Test Ritual", "spirit_name": "Test Spirit", "question": "What is the answer?"})
	out, st, _ := runApp(t, a, []necro.Event{root})
	seances := a.seancesCopy()
	if len(seances) != 1 {
		t.Fatalf("%d outputs, want 1; printed:\n%s", len(seances), out)
	}
	for _, part := range []string{"SÉANCE COMPLETE", "Test Spirit", "Omen:", "Interpretation:"} {
		if !strings.Contains(seances[0].Output, part) {
			t.Errorf("output:\n%s\nwant it to hold %q", seances[0].Output, part)
		}
	}
	if want := "The Test Spirit speaks in response to 'What is the answer?': 'The path you seek lies within shadows and light.'"; seances[0].Answer != want {
		t.Errorf("answer = %q, want %q (the seed answered 'What wisdom do you bring?')", seances[0].Answer, want)
	}
	if want := "The spirits suggest patience and vigilance. (Based on: The Test Spirit speaks in response to 'What is the...)"; seances[0].Interpretation != want {
		t.Errorf("interpretation = %q, want %q", seances[0].Interpretation, want)
	}
	if st.Processed != 5 || st.Unrouted != 1 {
		t.Errorf("stats = %+v; want 5 processed, SEANCE_COMPLETE unrouted", st)
	}
}

// J9: tests/test_seance_flow.py::test_seance_default_values. An empty SUMMON_RITUAL
// takes every organ's defaults: the "Ancient One" of SummonSpirit and the default
// question.
func TestSeanceEmptyPayload(t *testing.T) {
	a := newApp(t, Options{Quiet: true})
	out, _, _ := runApp(t, a, []necro.Event{newEvent(t, "SUMMON_RITUAL", nil)})
	if want := defaultBlock + "\n\n✨ Séance complete: 5 events processed\n"; out != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out, want)
	}
}

// J10: tests/test_seance_flow.py::test_seance_organ_chain_order.
func TestSeanceOrganOrder(t *testing.T) {
	a := newApp(t, Options{})
	var mu sync.Mutex // the organs run in actors of their own
	var calls []string
	mounts := a.Mounts()
	for i, m := range mounts {
		inner := m.Organ
		mounts[i].Organ = necro.NewOrgan(inner.ListensTo(), func(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
			mu.Lock()
			calls = append(calls, m.Name)
			mu.Unlock()
			return inner.Handle(ctx, ev)
		})
	}
	ctx := testContext(t)
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() }) // nothing left to lose: the test has read what it needs
	sp, err := spine.New(q, mounts, a.Config(spine.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Emit(ctx, newEvent(t, "SUMMON_RITUAL", nil)); err != nil {
		t.Fatal(err)
	}
	if err := sp.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"SummonSpirit", "AskQuestion", "InterpretResponse", "ManifestEffect"}; !reflect.DeepEqual(calls, want) {
		t.Errorf("organs called in the order %q, want %q", calls, want)
	}
}

// TestOrgansOnEmptyPayloads: each organ handed an empty payload uses the seed's
// defaults for it.
func TestOrgansOnEmptyPayloads(t *testing.T) {
	tests := []struct{ organ, in, outType, want string }{
		{"SummonSpirit", "SUMMON_RITUAL", "SPIRIT_APPEARED",
			`{"spirit_name":"Ancient One","summoned_by":"unknown ritual","message":"The spirit 'Ancient One' has been summoned through unknown ritual."}`},
		{"AskQuestion", "SPIRIT_APPEARED", "ANSWER_GENERATED",
			`{"spirit_name":"Unknown Spirit","question":"What wisdom do you bring?","answer":"The Unknown Spirit speaks in response to 'What wisdom do you bring?': 'The path you seek lies within shadows and light.'"}`},
		{"InterpretResponse", "ANSWER_GENERATED", "OMEN_REVEALED",
			`{"spirit_name":"Unknown Spirit","original_answer":"","omen":"The words of Unknown Spirit foretell: A great change approaches.","interpretation":"The spirits suggest patience and vigilance."}`},
		{"ManifestEffect", "OMEN_REVEALED", "SEANCE_COMPLETE", `{"spirit_name":"Unknown Spirit","omen":"No omen revealed"}`},
	}
	for _, tt := range tests {
		a := newApp(t, Options{})
		out := handle(t, a, tt.organ, newEvent(t, tt.in, nil))
		if len(out) != 1 || out[0].Type() != tt.outType || string(out[0].PayloadJSON()) != tt.want {
			t.Errorf("%s on {} emitted %v %s\nwant %s %s", tt.organ, out, payloads(out), tt.outType, tt.want)
		}
	}
	a := newApp(t, Options{})
	handle(t, a, "ManifestEffect", newEvent(t, "OMEN_REVEALED", nil))
	want := "\n" + rule + "\n🔮 SÉANCE COMPLETE 🔮\n" + rule + "\nSpirit: Unknown Spirit\nOmen: No omen revealed\nInterpretation: \n" + rule + "\n"
	if s := a.seancesCopy(); len(s) != 1 || s[0].Output != want {
		t.Errorf("ManifestEffect on {} wrote %s\nwant one output:\n%s", show(s), want)
	}
}

// TestSummonSpiritForwardsQuestion: the fix of the seed's bug, at the organ.
func TestSummonSpiritForwardsQuestion(t *testing.T) {
	a := newApp(t, Options{})
	out := handle(t, a, "SummonSpirit", newEvent(t, "SUMMON_RITUAL", map[string]any{"ritual": "R", "spirit_name": "S", "question": "Q?"}))
	want := `{"spirit_name":"S","summoned_by":"R","message":"The spirit 'S' has been summoned through R.","question":"Q?"}`
	if got := payloads(out); got != want {
		t.Errorf("SPIRIT_APPEARED = %s, want %s", got, want)
	}
}

func TestInterpret(t *testing.T) {
	fifty := strings.Repeat("é", 50)
	tests := []struct{ answer, want string }{
		{"", advice},
		{"short", advice + " (Based on: short)"},
		{fifty, advice + " (Based on: " + fifty + ")"},
		{fifty + "ü", advice + " (Based on: " + fifty + "...)"},
		{strings.Repeat("🔮", 51), advice + " (Based on: " + strings.Repeat("🔮", 50) + "...)"},
	}
	for _, tt := range tests {
		if got := interpret(tt.answer); got != tt.want {
			t.Errorf("interpret(%q) = %q, want %q", tt.answer, got, tt.want)
		}
	}
}

func TestOrganFailsPermanentlyOnBadPayload(t *testing.T) {
	a := newApp(t, Options{Quiet: true})
	bad := newEvent(t, "SUMMON_RITUAL", json.RawMessage(`{"spirit_name": 42}`))
	if _, err := organ(t, a, "SummonSpirit").Handle(t.Context(), bad); !necro.IsPermanent(err) {
		t.Errorf("SummonSpirit on spirit_name 42 = %v, want a permanent error", err)
	}
	// The answer repeats the question: 600 kB asked is 1.2 MB answered.
	long := newEvent(t, "SPIRIT_APPEARED", map[string]any{"question": strings.Repeat("?", 600_000)})
	if _, err := organ(t, a, "AskQuestion").Handle(t.Context(), long); !necro.IsPermanent(err) || !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("AskQuestion on an answer past 1 MB = %v, want a permanent invalid-event error", err)
	}
	out, st, dead := runApp(t, a, []necro.Event{bad})
	// The line of the dead letter holds encoding/json's own message, whose wording is
	// not ours to pin.
	lines := strings.Split(out, "\n")
	want := []string{"No spirit manifested.", "", "Dead letters: 1",
		"  SUMMON_RITUAL in SummonSpirit after 1 attempt(s): read SUMMON_RITUAL payload: ", "",
		"✨ Séance complete: 1 events processed", ""}
	if len(lines) != len(want) || !strings.HasPrefix(lines[3], want[3]) || !strings.HasSuffix(lines[3], " (permanent error)") ||
		!reflect.DeepEqual(slices.Delete(slices.Clone(lines), 3, 4), slices.Delete(slices.Clone(want), 3, 4)) {
		t.Errorf("printed:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if st.DeadLettered != 1 || len(dead) != 1 {
		t.Errorf("stats %+v, dead letters %v; want one dead letter", st, dead)
	}
}

func TestNewFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ritual.json")
	writeFile(t, path, `{"spirit_name": "Raven", "question": "Will it rain?"}`)
	a := newApp(t, Options{Input: path, Quiet: true})
	if want := (Ritual{Ritual: "Midnight Invocation", SpiritName: "Raven", Question: "Will it rain?"}); a.ritual != want {
		t.Errorf("New read %+v, want %+v (a missing key keeps its default)", a.ritual, want)
	}
	runApp(t, a, nil)
	if s := a.seancesCopy(); len(s) != 1 || !strings.Contains(s[0].Answer, "'Will it rain?'") {
		t.Errorf("seances = %s, want one answering 'Will it rain?'", show(s))
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	if _, err := New(Options{Input: missing}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("New(missing file) = %v, want a not-exist error naming %s", err, missing)
	}
	for name, text := range map[string]string{
		"unknown key":   `{"spirit": "Raven"}`,
		"not a string":  `{"question": 42}`,
		"not an object": `["Raven"]`,
		"trailing text": `{"question": "Why?"} {}`,
		"not JSON":      `spirit_name = Raven`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		writeFile(t, path, text)
		if _, err := New(Options{Input: path}); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("New(%s: %s) = %v, want an error naming the file", name, text, err)
		}
	}
	huge := Ritual{Question: strings.Repeat("?", necro.MaxPayloadBytes)}
	if _, err := NewFromRitual(Options{}, huge); !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("NewFromRitual(a 1 MB question) = %v, want an invalid-event error", err)
	}
}

// runApp runs a on a fresh in-memory backend as main does, with roots (a.Roots() when
// nil), and returns what Begin and Report printed, the stats and the dead letters.
func runApp(t *testing.T, a *App, roots []necro.Event) (string, spine.Stats, []backend.DeadLetter) {
	t.Helper()
	ctx := testContext(t)
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() }) // nothing left to lose: the test has read the store
	sp, err := spine.New(q, a.Mounts(), a.Config(spine.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	if roots == nil {
		if roots, err = a.Roots(); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	a.Begin(&out)
	if err := sp.Emit(ctx, roots...); err != nil {
		t.Fatal(err)
	}
	if err := sp.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if err := context.Cause(ctx); err != nil {
		t.Fatal(err)
	}
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := sp.Stats()
	if err := a.Report(&out, st, dead, time.Second); err != nil {
		t.Fatal(err)
	}
	return out.String(), st, dead
}

// testContext bounds a run, so that a Spine that never finishes fails the test in
// seconds rather than at the test binary's timeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 10*time.Second, errors.New("the Spine did not finish within 10s"))
	t.Cleanup(cancel)
	return ctx
}

func newApp(t *testing.T, opts Options) *App {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v) = %v", opts, err)
	}
	return a
}

func newEvent(t *testing.T, typ string, payload any) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func organ(t *testing.T, a *App, name string) necro.Organ {
	t.Helper()
	for _, m := range a.Mounts() {
		if m.Name == name {
			return m.Organ
		}
	}
	t.Fatalf("no organ %s", name)
	return nil
}

// handle calls the named organ's Handle directly, without a Spine.
func handle(t *testing.T, a *App, name string, ev necro.Event) []necro.Event {
	t.Helper()
	out, err := organ(t, a, name).Handle(t.Context(), ev)
	if err != nil {
		t.Fatalf("%s.Handle(%s) = %v", name, ev.PayloadJSON(), err)
	}
	return out
}

// payloads returns the payloads of events, one per line.
func payloads(events []necro.Event) string {
	var parts []string
	for _, ev := range events {
		parts = append(parts, string(ev.PayloadJSON()))
	}
	return strings.Join(parts, "\n")
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
