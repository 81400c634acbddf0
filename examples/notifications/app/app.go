package app

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
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

// samples holds the seed's sample inputs: the JSON one is the bundled default, and the
// CSV one holds the same five requests.
//
//go:embed sample_notifications.json sample_notifications.csv
var samples embed.FS

// sampleName is the bundled input's file name, as Begin and errors name it.
const sampleName = "sample_notifications.json"

// The Spine settings of the seed (max_steps=5000, enqueue and handler STORE), plus the
// retries its README promised: three attempts in all, 50ms then 100ms apart, as its
// retry_attempts=3 and retry_base_delay=0.05 said. Every failure but the SMTP one is
// permanent, so only emails are retried.
const (
	maxSteps    = 5000
	maxAttempts = 3
	retryBase   = 50 * time.Millisecond
)

// maxListed is the most requests Begin lists one line each, as in the seed.
const maxListed = 20

// Options configures an app run. The zero value runs the bundled sample input with
// random failures off; the CLI and the standalone program turn them on by default.
type Options struct {
	Input          string       // path of a .json or .csv input file; "" means the bundled sample
	Seed           int64        // seeds the random failures (and a stress run's requests)
	RandomFailures bool         // EmailOrgan's 15% SMTP failures on a first attempt; false = none
	Quiet          bool         // print only the results, not the header and the per-request lines
	Logger         *slog.Logger // organs log through it; nil discards
}

// An App is one run of the notification pipeline: its input, its organs, and what the
// organs recorded. Create it with [New] or [NewStress]; an App serves a single run, as
// its records only grow. The organs may run at the same time; the methods that read
// what they recorded may be called during or after a run.
type App struct {
	opts     Options
	log      *slog.Logger
	source   string            // the input file Begin names; "" for the bundled sample and stress runs
	stress   bool              // the requests were made up by NewStress
	requests []json.RawMessage // the NOTIFICATION_REQUESTED payloads, in input order
	warnings []string          // rows the CSV loader skipped
	roots    []necro.Event
	seq      map[string]int // root event id → the request's place in the input, from 1

	// failureChance is EmailOrgan's chance to fail an attempt when random failures are
	// on: the seed's 0.3 − 0.15·attempt, so 15% on the first and none later. Tests
	// replace it to make every attempt fail.
	failureChance func(attempt int) float64

	// rngMu guards rng, the source of the random failures.
	rngMu sync.Mutex
	rng   *rand.Rand

	// mu guards what the organs record, below.
	mu        sync.Mutex
	validated int
	rejected  []Rejection
	sends     map[string]int // SEND_REQUESTED events routed, by channel
	audit     []AuditRecord  // in the order AuditOrgan handled them
}

// New reads the requests from opts.Input, a .json file (a list, or {"notifications":
// [...]}) or a .csv file (header user_id,channels,message,priority; channels joined by
// "|"), or the bundled sample when Input is "". The error names the file and the
// problem: the file cannot be read, its extension is neither .json nor .csv, it does not
// parse, or a request is not a JSON object. Fields of a request are not checked here:
// ValidateOrgan does that during the run.
func New(opts Options) (*App, error) {
	data, name := []byte(nil), opts.Input
	var err error
	if opts.Input == "" {
		data, err = samples.ReadFile(sampleName)
		name = "bundled " + sampleName
	} else {
		data, err = os.ReadFile(opts.Input)
	}
	if err != nil {
		return nil, err // a *PathError names the file
	}
	var reqs []json.RawMessage
	var warnings []string
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".json":
		reqs, err = parseJSON(data)
	case ".csv":
		reqs, warnings, err = parseCSV(data)
	default:
		err = fmt.Errorf("unsupported format %q: want a .json or .csv file", ext)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a, err := newApp(opts, reqs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a.source, a.warnings = opts.Input, warnings
	return a, nil
}

// NewStress makes count random requests for the users user_001 to user_019, the same
// ones for the same opts.Seed, as the seed's --stress mode does; opts.Input must be "".
// Only the first three users have contacts, so most requests are routed nowhere.
func NewStress(opts Options, count int) (*App, error) {
	switch {
	case opts.Input != "":
		return nil, errors.New("a stress run makes up its requests; it takes no input file")
	case count < 0:
		return nil, fmt.Errorf("stress count %d is negative", count)
	}
	a, err := newApp(opts, stressRequests(count, opts.Seed))
	if err != nil {
		return nil, err
	}
	a.stress = true
	return a, nil
}

func newApp(opts Options, reqs []json.RawMessage) (*App, error) {
	a := &App{
		opts:          opts,
		log:           opts.Logger,
		requests:      reqs,
		seq:           make(map[string]int, len(reqs)),
		failureChance: seedFailureChance,
		rng:           rand.New(rand.NewPCG(uint64(opts.Seed), streamFailures)),
		sends:         map[string]int{},
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	for i, req := range reqs {
		ev, err := necro.NewEvent(typeRequested, req)
		if err != nil {
			return nil, fmt.Errorf("notification %d: %w", i+1, err)
		}
		a.roots = append(a.roots, ev)
		a.seq[ev.ID()] = i + 1
	}
	return a, nil
}

// seedFailureChance is the seed's chance that an email attempt fails: 15% on the first
// attempt and none after it (its README's "30%" was wrong).
func seedFailureChance(attempt int) float64 { return max(0, 0.3-0.15*float64(attempt)) }

// Mounts returns the six organs in the seed's order, under the seed's class names.
// They keep what they record in a, so every mount is a plain stateless Organ.
func (a *App) Mounts() []necro.Mount {
	return []necro.Mount{
		{Name: "ValidateOrgan", Organ: necro.NewOrgan([]string{typeRequested}, a.validate)},
		{Name: "RouterOrgan", Organ: necro.NewOrgan([]string{typeValidated}, a.route)},
		{Name: "EmailOrgan", Organ: necro.NewOrgan([]string{typeEmailRequested}, a.sendEmail)},
		{Name: "SmsOrgan", Organ: necro.NewOrgan([]string{typeSMSRequested}, a.sendSMS)},
		{Name: "PushOrgan", Organ: necro.NewOrgan([]string{typePushRequested}, a.sendPush)},
		{Name: "AuditOrgan", Organ: necro.NewOrgan([]string{typeEmailDelivered, typeSMSDelivered, typePushDelivered}, a.record)},
	}
}

// Config returns base with the seed's settings: at most 5,000 events per run, failed
// events and refused children dead-lettered (the seed's handler and enqueue STORE), and
// the retries the seed's README promised but its Spine never made: a failed attempt is
// tried again after 50ms, then 100ms, and dead-lettered after the third. Every failure
// but the SMTP one is permanent, so in practice only emails are retried.
func (a *App) Config(base spine.Config) spine.Config {
	base.MaxSteps = maxSteps
	base.HandlerFailure = spine.HandlerDeadLetter
	base.EnqueueFailure = spine.EnqueueStore
	base.Retry = supervision.RetryPolicy{MaxAttempts: maxAttempts, Backoff: supervision.Backoff{Base: retryBase, Max: time.Second}}
	return base
}

// Roots returns one NOTIFICATION_REQUESTED event per request, in input order; the
// payload is the request as the input held it. It never fails: New built the events.
func (a *App) Roots() ([]necro.Event, error) { return slices.Clone(a.roots), nil }

// Begin prints what the seed prints before its run: the file being loaded and the
// rows skipped, or the stress banner; then, unless Quiet, the header and one line per
// request (for 20 requests or fewer).
func (a *App) Begin(w io.Writer) {
	var b strings.Builder
	banner := ""
	switch {
	case a.source != "":
		banner = "📂 Loading from: " + a.source
	case a.stress:
		banner = fmt.Sprintf("🚀 STRESS TEST: %d notifications", len(a.requests))
	}
	if banner != "" {
		b.WriteString(banner + "\n")
		if !a.opts.Quiet || len(a.warnings) > 0 {
			b.WriteString("\n") // the results of a quiet run bring their own blank line
		}
	}
	for _, warning := range a.warnings {
		fmt.Fprintln(&b, warning)
	}
	if !a.opts.Quiet {
		rule := strings.Repeat("=", 60)
		fmt.Fprintf(&b, "%s\nNOTIFICATION PIPELINE\n%s\n\nProcessing %d notifications...\n\n", rule, rule, len(a.requests))
		if len(a.requests) <= maxListed {
			for _, req := range a.requests {
				b.WriteString(requestLine(req))
			}
		}
		b.WriteString("\nProcessing...\n")
	}
	// Begin has no error to return: a failed write shows as missing output, and the
	// Report that follows writes to the same w and does return its error.
	_, _ = io.WriteString(w, b.String())
}

// requestLine is the seed's line about one request: user, channels and the first 40
// characters of the message. Members the request lacks print as the seed's defaults.
func requestLine(raw json.RawMessage) string {
	var req map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()      // numbers as the organs see them, so that falsy reads 0 as Python does
	_ = dec.Decode(&req) // cannot fail: New checked that each request is an object
	user := "?"
	if v, ok := req["user_id"]; ok {
		user = show(v)
	}
	channels := "[]"
	if v, ok := req["channels"]; ok {
		channels = showList(v)
	}
	message := ""
	if v := req["message"]; !falsy(v) {
		message = head(show(v), 40)
	}
	return fmt.Sprintf("  → %s: %s - %s...\n", user, channels, message)
}

// Report prints the seed's RESULTS section: the Spine's counts, the time taken, the
// handler errors by organ (in mount order), the retries (which the seed never made),
// the dead letters with the first three listed, and the deliveries audited. It returns
// the error of writing to w.
func (a *App) Report(w io.Writer, st spine.Stats, dead []backend.DeadLetter, elapsed time.Duration) error {
	var b strings.Builder
	rule := strings.Repeat("=", 60)
	fmt.Fprintf(&b, "\n%s\nRESULTS\n%s\n", rule, rule)
	fmt.Fprintf(&b, "  Events processed: %d\n", st.Processed)
	fmt.Fprintf(&b, "  Events emitted: %d\n", st.Emitted)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(st.Processed) / s
	}
	fmt.Fprintf(&b, "  Time: %.2fs (%.1f events/sec)\n", elapsed.Seconds(), rate)
	if errs := a.handlerErrors(st.HandlerErrors); errs != "" {
		fmt.Fprintf(&b, "  Handler errors: {%s}\n", errs)
	}
	if st.Retried > 0 {
		fmt.Fprintf(&b, "  Retries: %d\n", st.Retried)
	}
	if len(dead) > 0 {
		fmt.Fprintf(&b, "\n  DLQ: %d failed events\n", len(dead))
		for _, dl := range dead[:min(len(dead), 3)] {
			fmt.Fprintf(&b, "    - %s: %s\n", dl.Event.Type(), head(dl.Error, 50))
		}
	}
	a.mu.Lock()
	deliveries := len(a.audit)
	a.mu.Unlock()
	if deliveries > 0 {
		fmt.Fprintf(&b, "\n  Deliveries: %d\n", deliveries)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// handlerErrors formats the failed attempts per organ, the mounted organs first in
// mount order, then any other name the Stats hold.
func (a *App) handlerErrors(counts map[string]int64) string {
	var parts []string
	seen := map[string]bool{}
	for _, m := range a.Mounts() {
		seen[m.Name] = true
		if n := counts[m.Name]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", m.Name, n))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		if !seen[name] && counts[name] > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", name, counts[name]))
		}
	}
	return strings.Join(parts, ", ")
}

// Results is what a run did, as [App.Results] returns it.
type Results struct {
	Requests   int            `json:"requests"`   // requests in the input
	Validated  int            `json:"validated"`  // NOTIFICATION_VALIDATED events emitted
	Rejected   []Rejection    `json:"rejected"`   // NOTIFICATION_FAILED events emitted, in input order
	Sends      map[string]int `json:"sends"`      // SEND_REQUESTED events emitted, by channel
	Deliveries []AuditRecord  `json:"deliveries"` // the audit log, by request, then email, sms, push
}

// A Rejection is a request ValidateOrgan turned down.
type Rejection struct {
	Request int    `json:"request,omitempty"` // the request's place in the input, from 1
	UserID  string `json:"user_id"`           // "unknown" when the request had none
	Reason  string `json:"reason"`            // the problems, joined by "; "
}

// An AuditRecord is one delivery as AuditOrgan records it.
type AuditRecord struct {
	// Request is the request's place in the input, from 1; 0 when the delivery belongs
	// to a request of another process sharing a Redis stream.
	Request     int    `json:"request,omitempty"`
	UserID      string `json:"user_id"`
	Channel     string `json:"channel"`            // email, sms or push
	Attempts    int    `json:"attempts,omitempty"` // email only: the attempt that delivered it
	EventID     string `json:"event_id"`           // the *_DELIVERED event's id
	DeliveredAt string `json:"delivered_at"`
	RecordedAt  string `json:"recorded_at"`
}

// channelOrder sorts the deliveries of one request.
var channelOrder = map[string]int{"email": 0, "sms": 1, "push": 2}

// Results returns a [Results] value. Its order does not depend on timing: a retried
// email is delivered later than its siblings, but it is listed with its request.
func (a *App) Results() any {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := Results{
		Requests:   len(a.requests),
		Validated:  a.validated,
		Rejected:   append([]Rejection{}, a.rejected...), // [] rather than null in JSON
		Sends:      maps.Clone(a.sends),
		Deliveries: append([]AuditRecord{}, a.audit...),
	}
	slices.SortStableFunc(res.Rejected, func(x, y Rejection) int { return cmp.Compare(x.Request, y.Request) })
	slices.SortStableFunc(res.Deliveries, func(x, y AuditRecord) int {
		return cmp.Or(cmp.Compare(x.Request, y.Request), cmp.Compare(channelOrder[x.Channel], channelOrder[y.Channel]))
	})
	return res
}
