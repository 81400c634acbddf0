package app

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// sampleCSV is the seed's SAMPLE_CSV_DATA: ten employees, Frank without an age.
//
//go:embed employees.csv
var sampleCSV string

// sampleSource is the seed's source_name for the sample.
const sampleSource = "employees.csv"

// Options configures an app run. The zero value runs the bundled sample.
type Options struct {
	Input          string       // path of a CSV file; "" means the bundled employees.csv
	Seed           int64        // no effect: the pipeline has no random failures
	RandomFailures bool         // no effect: the pipeline has no random failures
	Quiet          bool         // leave out the banner Begin prints
	Logger         *slog.Logger // organs log through it; nil discards
}

// App is one ETL run: the CSV text and its source name, and the summaries that
// ExportSummary wrote. Create it with [New].
type App struct {
	csv    string
	source string
	quiet  bool
	log    *slog.Logger

	// mu guards summaries: ExportSummary appends from its organ's actor, Report and
	// Results read once the run is over.
	mu        sync.Mutex
	summaries []summary
}

// A summary is what ExportSummary made of one DATA_TRANSFORMED event.
type summary struct {
	SourceName   string          `json:"source_name"`
	RowCount     json.Number     `json:"row_count"`
	Columns      []string        `json:"columns"`
	NumericStats []columnSummary `json:"numeric_stats"` // in the payload's order
	Text         string          `json:"text"`          // the summary as Report prints it
}

// A columnSummary holds one column's statistics as ExportSummary read them; a value
// that printed as N/A (or was not finite) is null.
type columnSummary struct {
	Column string   `json:"column"`
	Min    *float64 `json:"min"`
	Max    *float64 `json:"max"`
	Avg    *float64 `json:"avg"`
	Sum    *float64 `json:"sum"`
}

// New reads the CSV text: opts.Input, or the bundled sample. It checks the text now,
// so that a bad file is an error here rather than a dead letter later: the text must
// be CSV, and its records must fit in one event ([necro.MaxPayloadBytes]). The error
// names the file and the problem.
func New(opts Options) (*App, error) {
	a := &App{csv: sampleCSV, source: sampleSource, quiet: opts.Quiet, log: opts.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	name := sampleSource + " (bundled)"
	if opts.Input != "" {
		data, err := os.ReadFile(opts.Input)
		if err != nil {
			return nil, err // the *PathError names the file
		}
		a.csv, a.source, name = string(data), filepath.Base(opts.Input), opts.Input
	}
	raw, _, err := extract(a.csv, a.source)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := necro.NewEvent(typeRawLoaded, raw); err != nil {
		return nil, fmt.Errorf("%s: the records do not fit in one event: %w", name, err)
	}
	if _, err := a.Roots(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

// Mounts returns the four organs in the seed's order, under the seed's class names.
// They keep no state of their own, so a restart changes nothing.
func (a *App) Mounts() []necro.Mount {
	return []necro.Mount{
		{Name: "ExtractCSV", Organ: necro.NewOrgan([]string{typeStart}, a.extractCSV)},
		{Name: "CleanData", Organ: necro.NewOrgan([]string{typeRawLoaded}, a.cleanData)},
		{Name: "TransformData", Organ: necro.NewOrgan([]string{typeCleaned}, a.transformData)},
		{Name: "ExportSummary", Organ: necro.NewOrgan([]string{typeTransformed}, a.exportSummary)},
	}
}

// Config returns base with the app's settings. The seed ran its Spine with the
// defaults, which never retry a failed handler; the organs here are deterministic, so
// a retry would fail the same way, and a failure is dead-lettered at once.
func (a *App) Config(base spine.Config) spine.Config {
	base.Retry = supervision.RetryPolicy{MaxAttempts: supervision.NoRetry}
	return base
}

// Roots returns the one root event, ETL_START{csv_data, source_name}, with a fresh id
// at each call.
func (a *App) Roots() ([]necro.Event, error) {
	ev, err := necro.NewEvent(typeStart, map[string]any{"csv_data": a.csv, "source_name": a.source})
	if err != nil {
		return nil, err
	}
	return []necro.Event{ev}, nil
}

// Begin prints the seed's banner, unless the options ask for quiet.
func (a *App) Begin(w io.Writer) {
	if !a.quiet {
		fmt.Fprint(w, "📊 Starting ETL Pipeline... 📊\n\n")
	}
}

// Report prints each summary ExportSummary wrote, the dead letters if there are any,
// and the seed's closing line with the events the Spine processed: ETL_COMPLETE
// counts among them (it is acked unrouted), where the seed had stopped before it. The
// seed printed no time, so elapsed is not used.
func (a *App) Report(w io.Writer, st spine.Stats, dead []backend.DeadLetter, _ time.Duration) error {
	var b bytes.Buffer
	sums := a.summariesCopy()
	for _, s := range sums {
		b.WriteString(s.Text + "\n")
	}
	if len(sums) == 0 {
		b.WriteString("No summary: no data reached ExportSummary.\n")
	}
	if len(dead) > 0 {
		fmt.Fprintf(&b, "\nDead letters: %d\n", len(dead))
		for _, dl := range dead {
			fmt.Fprintf(&b, "  %s in %s after %d attempt(s): %s (%s)\n", dl.Event.Type(), dl.Organ, dl.Attempts, dl.Error, dl.Reason)
		}
	}
	fmt.Fprintf(&b, "\n✅ ETL complete: %d events processed\n", st.Processed)
	_, err := w.Write(b.Bytes())
	return err
}

// Results returns the summaries as a JSON-able value: {"summaries": [...]}, each with
// source_name, row_count, columns, numeric_stats (column, min, max, avg, sum) and the
// text Report prints.
func (a *App) Results() any {
	return struct {
		Summaries []summary `json:"summaries"`
	}{a.summariesCopy()}
}

func (a *App) summariesCopy() []summary {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.summaries)
	if out == nil {
		out = []summary{}
	}
	return out
}
