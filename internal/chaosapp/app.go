package chaosapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// Options configures an [App]. The zero value runs the built-in mix without a ledger.
type Options struct {
	// Input is a JSON file holding a list of directives, one root each; "" means the
	// built-in mix: one root of every directive but "exit".
	Input string
	// Ledger is the file each Handle call appends a line to, created when missing; ""
	// keeps no ledger. The markers of "exit" go in its directory, so "exit" needs one:
	// without, it fails permanently.
	Ledger string
	// Worker is the name every ledger line carries: the worker's consumer name. "" means
	// "pid-" and the process id.
	Worker string
	Quiet  bool         // Begin prints nothing
	Logger *slog.Logger // reports ledger writes that fail; nil discards
}

// An App is the chaos test app: organs [OrganWork] and [OrganAudit], the ledger they
// write, and the roots of a run. Build it with [New], mount its [App.Mounts] in a Spine
// configured by [App.Config], emit its [App.Roots], run, then call [App.Report] or
// [App.Results]; [App.Close] closes the ledger. A worker that serves other producers'
// roots needs only Mounts and Config. The organs are safe for concurrent use, as
// abandoned calls may still run beside new ones.
type App struct {
	opts      Options
	log       *slog.Logger
	directive []Directive // the roots' payloads
	ledger    *ledger     // nil without Options.Ledger
	markerDir string      // where "exit" keeps its markers: the ledger's directory
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error

	// mu guards what the organs record: Report and Results read it after the run.
	mu       sync.Mutex
	outcomes map[string]map[string]int // organ → outcome → Handle calls
	want     []Expectation             // what the roots of Roots must end with
	own      map[string]bool           // the ids of the roots Roots returned
	handled  map[pair]bool             // (event, organ) pairs of those flows handled with success
}

// A pair names the handling of one event by one organ.
type pair struct{ id, organ string }

// builtinMix is the roots of a run without input: every directive once, but "exit",
// which would end the run.
var builtinMix = []Directive{
	{Seq: 1, Do: DoOK},
	{Seq: 2}, // an empty Do means ok
	{Seq: 3, Do: DoFail},
	{Seq: 4, Do: DoFailOnce},
	{Seq: 5, Do: DoPanic},
	{Seq: 6, Do: DoPanicOnce},
	{Seq: 7, Do: DoSleep, MS: 20},
	{Seq: 8, Do: DoHang},
	{Seq: 9, Do: DoEmit, N: 3, Child: &Directive{Do: DoFailOnce}},
	{Seq: 10, Do: DoLoop},
	{Seq: 11, Do: DoBomb},
}

// New reads the input (or takes the built-in mix) and opens the ledger. The error
// names the file and the problem; an input holding "exit" without a ledger is one.
func New(opts Options) (*App, error) {
	a := &App{opts: opts, log: opts.Logger, directive: slices.Clone(builtinMix), closed: make(chan struct{}),
		outcomes: map[string]map[string]int{}, own: map[string]bool{}, handled: map[pair]bool{}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if opts.Input != "" {
		b, err := os.ReadFile(opts.Input)
		if err != nil {
			return nil, err
		}
		a.directive = nil
		if err := json.Unmarshal(b, &a.directive); err != nil {
			return nil, fmt.Errorf("%s: want a JSON list of directives: %w", opts.Input, err)
		}
		if opts.Ledger == "" && slices.ContainsFunc(a.directive, holdsExit) {
			return nil, fmt.Errorf("%s: an exit directive needs a ledger, whose directory holds its markers", opts.Input)
		}
	}
	if opts.Ledger != "" {
		worker := opts.Worker
		if worker == "" {
			worker = fmt.Sprintf("pid-%d", os.Getpid())
		}
		var err error
		if a.ledger, err = openLedger(opts.Ledger, worker); err != nil {
			return nil, err
		}
		a.markerDir = filepath.Dir(opts.Ledger)
	}
	return a, nil
}

// holdsExit reports whether d or a child it describes is an "exit".
func holdsExit(d Directive) bool {
	return d.Do == DoExit || d.Child != nil && holdsExit(*d.Child)
}

// Close closes the ledger and ends the hangs still blocking, so that a test leaves no
// goroutine behind. Handle calls after Close write no ledger line. It is safe to call
// more than once.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		close(a.closed)
		if a.ledger != nil {
			a.closeErr = a.ledger.close()
		}
	})
	return a.closeErr
}

// Mounts returns organ work, which obeys the directives, and organ audit, which
// handles the same events and always succeeds.
func (a *App) Mounts() []necro.Mount {
	return []necro.Mount{
		{Name: OrganWork, Organ: necro.NewOrgan([]string{EventType}, a.work)},
		{Name: OrganAudit, Organ: necro.NewOrgan([]string{EventType}, a.audit)},
	}
}

// Config returns base with the app's limits, which [Expect] relies on: MaxDepth,
// MaxFanOut, HandlerTimeout, AbandonAfter, MaxAbandoned, MaxAttempts attempts spaced
// by RetryBackoff, failed events dead-lettered, no step budget (the depth and fan-out
// budgets bound every flow). Panics restart organ work at once: at a 1% share of
// panicking events the default restart intensity (10 a minute) would quarantine it for
// seconds to minutes and stall the run; 1,000 restarts in 10s, each after at most 4ms,
// still quarantine an organ that does nothing but crash, for 250ms to 1s.
func (a *App) Config(base spine.Config) spine.Config {
	c := base
	c.MaxSteps = spine.Unlimited
	c.MaxDepth = MaxDepth
	c.MaxFanOut = MaxFanOut
	c.HandlerTimeout = HandlerTimeout
	c.AbandonAfter = AbandonAfter
	c.MaxAbandoned = MaxAbandoned
	c.HandlerFailure = spine.HandlerDeadLetter
	c.Retry = supervision.RetryPolicy{MaxAttempts: MaxAttempts,
		Backoff: supervision.Backoff{Base: RetryBackoff, Max: 2 * RetryBackoff}}
	c.Restart = supervision.OneForOne{MaxRestarts: 1000, Window: 10 * time.Second,
		Backoff:    supervision.Backoff{Base: time.Millisecond, Max: 4 * time.Millisecond},
		Quarantine: 250 * time.Millisecond, MaxQuarantine: time.Second}
	return c
}

// Roots returns one root per directive of the input, in order, and remembers what they
// must end with, for [App.Report]. The error wraps [ErrBadDirective] when [Expect]
// cannot predict a root.
func (a *App) Roots() ([]necro.Event, error) {
	roots := make([]necro.Event, len(a.directive))
	var want []Expectation
	for i, d := range a.directive {
		var err error
		if roots[i], err = NewRoot(d); err != nil {
			return nil, fmt.Errorf("root %d: %w", i+1, err)
		}
		exps, err := Expect(roots[i])
		if err != nil {
			return nil, fmt.Errorf("root %d: %w", i+1, err)
		}
		want = append(want, exps...)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.want = append(a.want, want...)
	for _, ev := range roots {
		a.own[ev.ID()] = true
	}
	return roots, nil
}

// Begin prints the roots, one line each, unless Quiet.
func (a *App) Begin(w io.Writer) {
	if a.opts.Quiet {
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Submitting %d chaos tasks:\n", len(a.directive))
	for _, d := range a.directive {
		fmt.Fprintf(&b, "  #%d %s\n", d.Seq, d)
	}
	_, _ = w.Write(b.Bytes()) // Begin reports nothing; a failing writer fails Report too
}

// rule is the line around report sections.
var rule = strings.Repeat("=", 60)

// Report prints the run's counts, the Handle calls of each organ by outcome, the dead
// letters by organ, and how the run compares with what [Expect] says of the roots:
// expectations met, missing (an "ok" never handled with success, a "dead" not
// dead-lettered) and unexpected dead letters, the first 5 of each named.
func (a *App) Report(w io.Writer, st spine.Stats, dead []backend.DeadLetter, elapsed time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("%s\nCHAOS RESULTS\n%s", rule, rule)
	p("  Events processed: %d", st.Processed)
	p("  Events emitted: %d", st.Emitted)
	p("  Retries: %d", st.Retried)
	p("  Dead letters: %d", len(dead))
	p("  Time elapsed: %.3fs", elapsed.Seconds())
	p("")
	for _, organ := range []string{OrganWork, OrganAudit} {
		p("  Handled by %s: %s", organ, counts(a.outcomes[organ]))
	}
	byOrgan := map[string]int{}
	for _, dl := range dead {
		byOrgan[dl.Organ]++
	}
	p("  Dead letters by organ: %s", counts(byOrgan))

	met, missing, unexpected := a.check(dead)
	p("")
	p("  Expectations: %d met, %d missing, %d unexpected dead letters", met, len(missing), len(unexpected))
	for _, list := range []struct {
		title string
		items []string
	}{{"missing", missing}, {"unexpected", unexpected}} {
		for _, s := range list.items[:min(len(list.items), 5)] {
			p("    %s: %s", list.title, s)
		}
		if len(list.items) > 5 {
			p("    ... and %d more %s", len(list.items)-5, list.title)
		}
	}
	p("%s", rule)
	_, err := w.Write(b.Bytes())
	return err
}

// counts shows a tally as "ok 3, error 2", by name; "none" when empty.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		name := k
		if name == "" {
			name = `""`
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, m[k]))
	}
	return strings.Join(parts, ", ")
}

// check compares the run of the roots of Roots with their expectations. Dead letters
// of other flows are left out. a.mu must be held.
func (a *App) check(dead []backend.DeadLetter) (met int, missing, unexpected []string) {
	deadSet := map[pair]bool{}
	for _, dl := range dead {
		if a.own[dl.Event.Correlation()] {
			deadSet[pair{dl.Event.ID(), dl.Organ}] = true
		}
	}
	wantDead := map[pair]bool{}
	for _, e := range a.want {
		k := pair{e.ID, e.Organ}
		ok := a.handled[k]
		if e.Want == WantDead {
			wantDead[k], ok = true, deadSet[k]
		}
		if ok {
			met++
		} else {
			missing = append(missing, fmt.Sprintf("%s %s %s", e.Want, e.Organ, e.ID))
		}
	}
	for _, dl := range dead {
		if k := (pair{dl.Event.ID(), dl.Organ}); deadSet[k] && !wantDead[k] {
			unexpected = append(unexpected, fmt.Sprintf("%s %s: %s", dl.Organ, dl.Event.ID(), dl.Reason))
		}
	}
	return met, missing, unexpected
}

// results is what [App.Results] returns.
type results struct {
	Roots    int                       `json:"roots"`
	Outcomes map[string]map[string]int `json:"outcomes"` // organ → outcome → Handle calls
}

// Results returns the number of roots and the Handle calls of each organ by outcome.
func (a *App) Results() any {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := results{Roots: len(a.own), Outcomes: map[string]map[string]int{}}
	for organ, m := range a.outcomes {
		r.Outcomes[organ] = maps.Clone(m)
	}
	return r
}

// audit handles every event with success.
func (a *App) audit(_ context.Context, ev necro.Event) ([]necro.Event, error) {
	var d Directive
	_ = ev.DecodePayload(&d) // audit records what it can and succeeds whatever the payload
	a.record(ev, OrganAudit, d.do(), OutcomeOK, 0)
	return nil, nil
}

// work obeys the event's directive.
func (a *App) work(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var d Directive
	if err := ev.DecodePayload(&d); err != nil {
		a.record(ev, OrganWork, "", OutcomeError, 0)
		return nil, necro.Permanent(fmt.Errorf("chaos: payload is no directive: %w", err))
	}
	fail := func(outcome string, err error) ([]necro.Event, error) {
		a.record(ev, OrganWork, d.do(), outcome, 0)
		return nil, err
	}
	attempt := ev.Attempt()
	switch d.Do {
	case "", DoOK:
	case DoFail:
		return fail(OutcomeError, fmt.Errorf("chaos: fail, attempt %d", attempt))
	case DoFailOnce:
		if attempt == 1 {
			return fail(OutcomeError, errors.New("chaos: fail_once, attempt 1"))
		}
	case DoPanic, DoPanicOnce:
		if d.Do == DoPanic || attempt == 1 {
			a.record(ev, OrganWork, d.Do, OutcomePanic, 0)
			panic(fmt.Sprintf("chaos: %s, attempt %d", d.Do, attempt))
		}
	case DoSleep:
		t := time.NewTimer(time.Duration(d.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fail(OutcomeError, ctx.Err())
		}
	case DoHang:
		a.record(ev, OrganWork, d.Do, OutcomeHang, 0)
		t := time.NewTimer(d.hangFor())
		defer t.Stop()
		select { // ctx is ignored on purpose: the Spine must abandon the call
		case <-t.C:
		case <-a.closed:
		}
		// Failing even a short hang keeps it from ever passing for a success.
		return nil, fmt.Errorf("chaos: hang of %v ended", d.hangFor())
	case DoEmit, DoLoop, DoBomb:
		return a.emit(ev, d)
	case DoExit:
		return a.exit(ev, d)
	default:
		return fail(OutcomeError, necro.Permanent(fmt.Errorf("chaos: unknown do %q", d.Do)))
	}
	a.record(ev, OrganWork, d.do(), OutcomeOK, 0)
	return nil, nil
}

// emit returns the children d asks for: the Spine fails the call permanently when they
// are more than MaxFanOut.
func (a *App) emit(ev necro.Event, d Directive) ([]necro.Event, error) {
	n, child := d.offspring()
	children := make([]necro.Event, n)
	if n > 0 {
		raw, err := json.Marshal(child) // the children are all alike: encode once
		for i := 0; i < n && err == nil; i++ {
			children[i], err = necro.Draft{Type: EventType, Payload: json.RawMessage(raw)}.Build()
		}
		if err != nil {
			a.record(ev, OrganWork, d.Do, OutcomeError, 0)
			return nil, necro.Permanent(fmt.Errorf("chaos: children: %w", err))
		}
	}
	outcome := OutcomeOK
	if len(children) > MaxFanOut {
		outcome = OutcomeBomb
	}
	a.record(ev, OrganWork, d.Do, outcome, len(children))
	return children, nil
}

// exit kills the process at the first handling of ev anywhere: the one that creates the
// marker file. Later handlings find it and succeed.
func (a *App) exit(ev necro.Event, d Directive) ([]necro.Event, error) {
	if a.ledger == nil {
		a.record(ev, OrganWork, d.Do, OutcomeError, 0)
		return nil, necro.Permanent(errors.New("chaos: exit needs a ledger, whose directory holds its markers"))
	}
	f, err := os.OpenFile(filepath.Join(a.markerDir, "exit-"+ev.ID()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	switch {
	case errors.Is(err, fs.ErrExist): // an earlier handling killed its process
		a.record(ev, OrganWork, d.Do, OutcomeOK, 0)
		return nil, nil
	case err != nil:
		a.record(ev, OrganWork, d.Do, OutcomeError, 0)
		return nil, fmt.Errorf("chaos: exit marker: %w", err)
	}
	_ = f.Close() // the file's name is the marker; it holds nothing to lose
	a.record(ev, OrganWork, d.Do, OutcomeExit, 0)
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = p.Kill() // SIGKILL on Unix: nothing runs after it, no deferred call, no flush
	}
	if err != nil {
		return nil, fmt.Errorf("chaos: exit: %w", err)
	}
	for {
		time.Sleep(time.Hour) // the signal is on its way
	}
}

// record counts one Handle call and appends its ledger line.
func (a *App) record(ev necro.Event, organ, do, outcome string, children int) {
	a.mu.Lock()
	m := a.outcomes[organ]
	if m == nil {
		m = map[string]int{}
		a.outcomes[organ] = m
	}
	m[outcome]++
	if outcome == OutcomeOK && a.own[ev.Correlation()] {
		a.handled[pair{ev.ID(), organ}] = true
	}
	a.mu.Unlock()
	if a.ledger == nil {
		return
	}
	select {
	case <-a.closed:
		return // a call abandoned by a run that is over
	default:
	}
	l := LedgerLine{ID: ev.ID(), Organ: organ, Type: ev.Type(), Correlation: ev.Correlation(),
		Causation: ev.Meta().CausationID, Depth: ev.Depth(), Attempt: ev.Attempt(), Do: do, Outcome: outcome,
		Children: children, At: time.Now().UTC()}
	if err := a.ledger.write(l); err != nil && !errors.Is(err, os.ErrClosed) {
		a.log.Error("ledger write failed; the harness will count this handling as lost",
			slog.String("organ", organ), slog.String("event_id", ev.ID()), slog.Any("err", err))
	}
}
