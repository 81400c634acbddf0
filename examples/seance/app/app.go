package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// Options configures an app run. The zero value performs [DefaultRitual].
type Options struct {
	Input          string       // path of a JSON ritual file (see [New]); "" means DefaultRitual
	Seed           int64        // no effect: the séance has no random failures
	RandomFailures bool         // no effect: the séance has no random failures
	Quiet          bool         // leave out the banner Begin prints
	Logger         *slog.Logger // organs log through it; nil discards
}

// A Ritual is the séance's input, the payload of its root event SUMMON_RITUAL.
type Ritual struct {
	Ritual     string `json:"ritual"`
	SpiritName string `json:"spirit_name"`
	Question   string `json:"question"`
}

// DefaultRitual returns the ritual the seed's main performs.
func DefaultRitual() Ritual {
	return Ritual{Ritual: "Midnight Invocation", SpiritName: "Ancient One", Question: "What wisdom do you bring?"}
}

// App is one séance: the ritual, and what ManifestEffect wrote. Create it with [New]
// or [NewFromRitual].
type App struct {
	ritual Ritual
	quiet  bool
	log    *slog.Logger

	// mu guards seances: ManifestEffect appends from its organ's actor, Report and
	// Results read once the run is over.
	mu      sync.Mutex
	seances []seance
}

// A seance is what ManifestEffect made of one OMEN_REVEALED event.
type seance struct {
	SpiritName     string `json:"spirit_name"`
	Answer         string `json:"answer"` // OMEN_REVEALED's original_answer
	Omen           string `json:"omen"`
	Interpretation string `json:"interpretation"`
	Output         string `json:"output"` // the block Report prints
}

// New reads the ritual from opts.Input, a JSON object such as
//
//	{"ritual": "Midnight Invocation", "spirit_name": "Ancient One", "question": "What wisdom do you bring?"}
//
// in which a missing key keeps its [DefaultRitual] value; without Input it performs
// DefaultRitual. An unknown key, a value that is not a string or text after the object
// is an error that names the file.
func New(opts Options) (*App, error) {
	r := DefaultRitual()
	if opts.Input != "" {
		data, err := os.ReadFile(opts.Input)
		if err != nil {
			return nil, err // the *PathError names the file
		}
		if err := readRitual(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", opts.Input, err)
		}
	}
	return NewFromRitual(opts, r)
}

// readRitual decodes a ritual file over r.
func readRitual(data []byte, r *Ritual) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return fmt.Errorf("read ritual: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("read ritual: text after the JSON object")
	}
	return nil
}

// NewFromRitual returns an App that performs r; opts.Input is not read. The error says
// when r does not fit in an event.
func NewFromRitual(opts Options, r Ritual) (*App, error) {
	a := &App{ritual: r, quiet: opts.Quiet, log: opts.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if _, err := a.Roots(); err != nil {
		return nil, fmt.Errorf("ritual: %w", err)
	}
	return a, nil
}

// Mounts returns the four organs in the seed's order, under the seed's class names.
// They keep no state of their own, so a restart changes nothing.
func (a *App) Mounts() []necro.Mount {
	return []necro.Mount{
		{Name: "SummonSpirit", Organ: necro.NewOrgan([]string{typeSummon}, a.summonSpirit)},
		{Name: "AskQuestion", Organ: necro.NewOrgan([]string{typeAppeared}, a.askQuestion)},
		{Name: "InterpretResponse", Organ: necro.NewOrgan([]string{typeAnswered}, a.interpretResponse)},
		{Name: "ManifestEffect", Organ: necro.NewOrgan([]string{typeOmen}, a.manifestEffect)},
	}
}

// Config returns base with the app's settings. The seed ran its Spine with the
// defaults, which never retry a failed handler; the organs here are deterministic, so
// a retry would fail the same way, and a failure is dead-lettered at once.
func (a *App) Config(base spine.Config) spine.Config {
	base.Retry = supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}
	return base
}

// Roots returns the one root event, SUMMON_RITUAL{ritual, spirit_name, question}, with
// a fresh id at each call.
func (a *App) Roots() ([]necro.Event, error) {
	ev, err := necro.NewEvent(typeSummon, a.ritual)
	if err != nil {
		return nil, err
	}
	return []necro.Event{ev}, nil
}

// Begin prints the seed's banner, unless the options ask for quiet.
func (a *App) Begin(w io.Writer) {
	if !a.quiet {
		fmt.Fprint(w, "🕯️  Beginning the Séance... 🕯️\n\n")
	}
}

// Report prints each output block ManifestEffect wrote, the dead letters if there are
// any, and the seed's closing line with the events the Spine processed:
// SEANCE_COMPLETE counts among them (it is acked unrouted), where the seed had stopped
// before it. The seed printed no time, so elapsed is not used.
func (a *App) Report(w io.Writer, st spine.Stats, dead []backend.DeadLetter, _ time.Duration) error {
	var b bytes.Buffer
	seances := a.seancesCopy()
	for _, s := range seances {
		b.WriteString(s.Output + "\n")
	}
	if len(seances) == 0 {
		b.WriteString("No spirit manifested.\n")
	}
	if len(dead) > 0 {
		fmt.Fprintf(&b, "\nDead letters: %d\n", len(dead))
		for _, dl := range dead {
			fmt.Fprintf(&b, "  %s in %s after %d attempt(s): %s (%s)\n", dl.Event.Type(), dl.Organ, dl.Attempts, dl.Error, dl.Reason)
		}
	}
	fmt.Fprintf(&b, "\n✨ Séance complete: %d events processed\n", st.Processed)
	_, err := w.Write(b.Bytes())
	return err
}

// Results returns the séances as a JSON-able value: {"seances": [...]}, each with
// spirit_name, answer, omen, interpretation and the output block Report prints.
func (a *App) Results() any {
	return struct {
		Seances []seance `json:"seances"`
	}{a.seancesCopy()}
}

func (a *App) seancesCopy() []seance {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.seances)
	if out == nil {
		out = []seance{}
	}
	return out
}
