package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/necrostack/necro"
	necroredis "github.com/necrostack/necro/backend/redis"
)

// cmdDLQ handles the dead letters of a stream: list, show, replay and purge. Each
// dead letter is named by its entry id in the dead-letter stream, as list prints it.
func cmdDLQ(ctx context.Context, args []string, e *env) error {
	subs := []struct {
		name, summary string
		run           func(context.Context, []string, *env) error
	}{
		{"list", "list dead letters, oldest first, one line each", dlqList},
		{"show", "print one dead letter in full: event, payload, metadata", dlqShow},
		{"replay", "enqueue dead letters' events again and delete the dead letters", dlqReplay},
		{"purge", "delete dead letters", dlqPurge},
	}
	usage := func() {
		fmt.Fprintln(e.stderr, "usage: necro-actors dlq <list|show|replay|purge> [flags]")
		fmt.Fprintln(e.stderr)
		for _, s := range subs {
			fmt.Fprintf(e.stderr, "  %-7s %s\n", s.name, s.summary)
		}
		fmt.Fprintln(e.stderr, "\nRun 'necro-actors dlq <command> -h' for its flags.")
	}
	if len(args) == 0 {
		usage()
		return flagError{errors.New("no dlq command")}
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage()
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, args[1:], e)
		}
	}
	return usageErr("unknown dlq command %q (want list, show, replay or purge)", args[0])
}

// selection holds the flags that select dead letters.
type selection struct {
	typ, since string
	ids        entryIDs
	limit      int
}

func (s *selection) register(fs *flag.FlagSet, ids, limit bool) {
	fs.StringVar(&s.typ, "type", "", "only dead letters of this event `type`")
	fs.StringVar(&s.since, "since", "", "only dead letters written since this `time`: a duration back from now (90m, 24h) or an RFC 3339 time")
	if ids {
		fs.Var(&s.ids, "id", "only the dead letter with this entry `id` (repeat for several)")
	}
	if limit {
		fs.IntVar(&s.limit, "limit", 0, "at most `N` dead letters, oldest first (0: all)")
	}
}

// filter returns the store's filter; now dates a relative --since.
func (s *selection) filter(now time.Time) (necroredis.DeadLetterFilter, error) {
	if s.limit < 0 {
		return necroredis.DeadLetterFilter{}, usageErr("--limit must not be negative, got %d", s.limit)
	}
	since, err := parseSince(s.since, now)
	if err != nil {
		return necroredis.DeadLetterFilter{}, err
	}
	for _, id := range s.ids {
		if err := checkEntryID(id); err != nil {
			return necroredis.DeadLetterFilter{}, err
		}
	}
	return necroredis.DeadLetterFilter{Type: s.typ, Since: since, IDs: s.ids, Limit: s.limit}, nil
}

// parseSince reads --since: a duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usageErr("--since %s: give a positive duration, counted back from now", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageErr("--since %q: want a duration such as 90m or 24h, or an RFC 3339 time such as 2026-01-02T15:04:05Z", s)
}

// entryIDs is a repeatable flag of dead-letter entry ids.
type entryIDs []string

func (ids *entryIDs) String() string { return strings.Join(*ids, ",") }
func (ids *entryIDs) Set(v string) error {
	*ids = append(*ids, v)
	return nil
}

// checkEntryID checks the form of a stream entry id: <milliseconds>-<sequence>.
func checkEntryID(id string) error {
	ms, seq, ok := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil || !ok {
		return usageErr("%q is not a dead-letter entry id (want <milliseconds>-<sequence>, as dlq list prints)", id)
	}
	if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
		return usageErr("%q is not a dead-letter entry id (want <milliseconds>-<sequence>, as dlq list prints)", id)
	}
	return nil
}

// noArgs refuses positional arguments.
func noArgs(pos []string) error {
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	return nil
}

// dlqLine is one dead letter in a list: no payload.
type dlqLine struct {
	EntryID   string `json:"entry_id"`
	FailedAt  string `json:"failed_at"`
	EventType string `json:"event_type"`
	EventID   string `json:"event_id"`
	Organ     string `json:"organ"`
	Attempts  int    `json:"attempts"`
	Reason    string `json:"reason"`
	Error     string `json:"error"`
	Size      int    `json:"size,omitempty"` // of a poison entry, whose text the dead letter keeps in part
}

func newDLQLine(d necroredis.DeadLetterEntry) dlqLine {
	l := dlqLine{EntryID: d.ID, EventType: d.Event.Type(), EventID: d.Event.ID(), Organ: d.Organ,
		Attempts: d.Attempts, Reason: d.Reason, Error: d.Fields["error"], Size: d.Size}
	if !d.At.IsZero() {
		l.FailedAt = d.At.Format("2006-01-02T15:04:05.000Z07:00")
	}
	return l
}

func dlqList(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "dlq list", "[--type T] [--since DURATION|TIME] [--limit N] [--redis URL] [--stream NAME] [--json]")
	var rf redisFlags
	registerRedisFlags(fs, &rf, "redis", "redis-url-file", "stream")
	var sel selection
	sel.register(fs, false, true)
	asJSON := fs.Bool("json", false, `print one JSON object: {"dead_letter_stream", "count", "dead_letters": [...]}`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	f, err := sel.filter(time.Now())
	if err != nil {
		return err
	}
	a, err := openAdmin(ctx, e, &rf)
	if err != nil {
		return err
	}
	defer func() { _ = a.Close() }() // only reads were made: nothing is lost if closing fails
	entries, err := a.DeadLetterEntries(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		out := struct {
			Stream string    `json:"dead_letter_stream"`
			Count  int       `json:"count"`
			Lines  []dlqLine `json:"dead_letters"`
		}{a.Config().DeadLetterStream, len(entries), make([]dlqLine, 0, len(entries))}
		for _, d := range entries {
			out.Lines = append(out.Lines, newDLQLine(d))
		}
		return printJSON(e.stdout, out)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintf(e.stdout, "no dead letters in %s%s\n", a.Config().DeadLetterStream, selected(sel))
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY ID\tFAILED AT\tTYPE\tEVENT ID\tORGAN\tATTEMPTS\tREASON\tERROR")
	for _, d := range entries {
		l := newDLQLine(d)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.EntryID, orDash(l.FailedAt), orDash(l.EventType),
			orDash(l.EventID), orDash(l.Organ), orDash(d.Fields["attempts"]), orDash(clipLine(l.Reason, 60)), orDash(clipLine(l.Error, 100)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s%s\n", deadLetters(len(entries)), selected(sel))
	return err
}

// selected describes the selection, for "no dead letters" and count lines.
func selected(s selection) string {
	var parts []string
	if s.typ != "" {
		parts = append(parts, "of type "+s.typ)
	}
	if s.since != "" {
		parts = append(parts, "since "+s.since)
	}
	if len(s.ids) > 0 {
		parts = append(parts, "among the ids given")
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clipLine makes s one line of at most n characters.
func clipLine(s string, n int) string {
	s = oneLine(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// shownDeadLetter is one dead letter in full.
type shownDeadLetter struct {
	EntryID    string          `json:"entry_id"`
	FailedAt   string          `json:"failed_at"` // as stored
	Reason     string          `json:"reason"`
	Organ      string          `json:"organ"`
	Attempts   int             `json:"attempts"`
	Error      string          `json:"error"`
	OriginalID string          `json:"original_id"` // the stream entry that failed
	Receipt    string          `json:"receipt,omitempty"`
	Event      *necro.Event    `json:"event,omitempty"` // the wire form: id, timestamp, event_type, payload
	Meta       *necro.Metadata `json:"meta,omitempty"`
	Stored     string          `json:"stored_event,omitempty"` // the stored text, when it does not decode
	Size       int             `json:"size,omitempty"`         // of a poison entry, in bytes: stored_event is its first ones
	ReplayTo   []string        `json:"replay_to,omitempty"`    // the organs a replay hands it to; empty: all
}

func dlqShow(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "dlq show", "ENTRYID [--redis URL] [--stream NAME] [--json]")
	var rf redisFlags
	registerRedisFlags(fs, &rf, "redis", "redis-url-file", "stream")
	compact := fs.Bool("json", false, "print the JSON on one line rather than indented")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("dlq show takes one dead-letter entry id, as dlq list prints it; got %d arguments", len(pos))
	}
	if err := checkEntryID(pos[0]); err != nil {
		return err
	}
	a, err := openAdmin(ctx, e, &rf)
	if err != nil {
		return err
	}
	defer func() { _ = a.Close() }() // only reads were made: nothing is lost if closing fails
	d, err := a.DeadLetterEntry(ctx, pos[0])
	if err != nil {
		return err
	}
	out := shownDeadLetter{EntryID: d.ID, FailedAt: d.Fields["failed_at"], Reason: d.Reason, Organ: d.Organ,
		Attempts: d.Attempts, Error: d.Fields["error"], OriginalID: d.Fields["original_id"], Receipt: d.Fields["receipt"],
		Size: d.Size}
	if d.Event.IsZero() {
		out.Stored = d.Fields["event"]
	} else {
		m := d.Event.Meta()
		out.Event, out.Meta = &d.Event, &m
		if ev, err := d.ReplayEvent(necroredis.ReplayOptions{}); err == nil {
			out.ReplayTo = ev.Meta().Targets
		}
	}
	if *compact {
		return printJSON(e.stdout, out)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// A replayed dead letter, or one that could not be.
type replayLine struct {
	EntryID   string   `json:"entry_id"`
	EventType string   `json:"event_type,omitempty"`
	EventID   string   `json:"event_id,omitempty"`
	Targets   []string `json:"targets"`             // the organs it goes to; empty: every organ that listens
	StreamID  string   `json:"stream_id,omitempty"` // its new entry in the stream
	Error     string   `json:"error,omitempty"`     // why it cannot be replayed
}

func dlqReplay(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "dlq replay", "[--type T] [--since DURATION|TIME] [--id ENTRYID]... [--limit N] [--rate N/s] [--every-organ | --target ORGAN...] [--force] [--dry-run] [--redis URL] [--stream NAME] [--group NAME] [--json]")
	var rf redisFlags
	registerRedisFlags(fs, &rf, "redis", "redis-url-file", "stream", "group")
	var sel selection
	sel.register(fs, true, true)
	dryRun := fs.Bool("dry-run", false, "print what would be replayed and change nothing")
	rateText := fs.String("rate", "", "limit the pace to `N/s`, dead letters per second (default: no limit)")
	everyOrgan := fs.Bool("every-organ", false, "hand each event to every organ that listens to its type, not only to the organ that gave up on it")
	var targets entryIDs
	fs.Var(&targets, "target", "re-target: hand each event to this `organ` instead (repeat for several), as when the organ that gave up was renamed")
	force := fs.Bool("force", false, "replay even when no live worker of the group would handle the event (workers that do not announce themselves, or none running)")
	asJSON := fs.Bool("json", false, `print one JSON object: {"dry_run", "matched", "replayed", "gone", "not_replayable", "refused"}`)
	fs.Usage = withNote(e, fs.Usage, `
Each matching dead letter's event is enqueued again with its original id, payload and
lineage (correlation and causation ids, depth, trace context: the replay is linked to
its original trace), at attempt 1, and its dead letter is deleted, both atomically:
running replay again never enqueues an event twice. An event goes to the organ that
gave up on it, so the organs that handled it fine do not handle it twice; --every-organ
hands it to all; --target re-targets it. A dead letter whose event cannot be decoded is
not replayed. Nor is one that no live worker of the group would handle: an organ it goes
to is mounted by no live worker on the group's roster (renamed or removed since), or no
live worker listens to its type. Re-target it, start a worker that mounts the organ, or
pass --force.`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	if *everyOrgan && len(targets) > 0 {
		return usageErr("give --every-organ or --target, not both")
	}
	for _, t := range targets {
		if strings.TrimSpace(t) == "" {
			return usageErr("--target needs an organ name")
		}
	}
	f, err := sel.filter(time.Now())
	if err != nil {
		return err
	}
	rate, err := parseRate(*rateText)
	if err != nil {
		return err
	}
	a, err := openAdmin(ctx, e, &rf)
	if err != nil {
		return err
	}
	defer func() { _ = a.Close() }() // every script has answered: nothing is lost if closing fails
	entries, err := a.DeadLetterEntries(ctx, f)
	if err != nil {
		return err
	}
	opts := necroredis.ReplayOptions{EveryOrgan: *everyOrgan, Targets: targets, Unchecked: *force}
	res := replayResult{DryRun: *dryRun, Matched: len(entries), Replayed: []replayLine{}, Gone: []string{}, NotReplayable: []replayLine{},
		Refused: []replayLine{}}
	out := e.stdout
	if *asJSON {
		out = io.Discard
	}
	pace := newPacer(rate)
	var runErr error
	for _, d := range entries {
		if err := pace.wait(ctx, e.signals); err != nil {
			runErr = err
			break
		}
		l := replayLine{EntryID: d.ID, EventType: d.Event.Type(), EventID: d.Event.ID()}
		ev, err := d.ReplayEvent(opts)
		if err != nil {
			res.NotReplayable = append(res.NotReplayable, notReplayable(out, l, d, err))
			continue
		}
		l.Targets = ev.Meta().Targets
		if *dryRun {
			if !*force {
				if err := a.CheckReplay(ctx, ev); errors.Is(err, necroredis.ErrNoLiveOrgan) {
					res.Refused = append(res.Refused, refused(out, l, d, err, true))
					continue
				} else if err != nil {
					runErr = err
					break
				}
			}
			res.Replayed = append(res.Replayed, l)
			fmt.Fprintf(out, "would replay %s: %s %s to %s\n", d.ID, l.EventType, l.EventID, organs(l.Targets))
			continue
		}
		newID, err := a.Replay(ctx, d.ID, opts)
		switch {
		case errors.Is(err, necroredis.ErrNotReplayable):
			res.NotReplayable = append(res.NotReplayable, notReplayable(out, l, d, err))
		case errors.Is(err, necroredis.ErrNoLiveOrgan):
			res.Refused = append(res.Refused, refused(out, l, d, err, false))
		case err != nil:
			runErr = err
		case newID == "":
			res.Gone = append(res.Gone, d.ID)
			fmt.Fprintf(out, "skipped %s: no longer there (replayed or purged meanwhile)\n", d.ID)
		default:
			l.StreamID = newID
			res.Replayed = append(res.Replayed, l)
			fmt.Fprintf(out, "replayed %s: %s %s as %s to %s\n", d.ID, l.EventType, l.EventID, newID, organs(l.Targets))
		}
		if runErr != nil {
			break
		}
	}
	if *asJSON {
		if err := printJSON(e.stdout, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(out, res.summary(a.Config().Stream))
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("after %d replayed: %w", len(res.Replayed), runErr)
	case len(res.NotReplayable) > 0 && !*dryRun:
		return fmt.Errorf("%s could not be replayed: no event decodes from them (see dlq show ID; dlq purge --id ID removes one)",
			deadLetters(len(res.NotReplayable)))
	case len(res.Refused) > 0 && !*dryRun:
		return fmt.Errorf("%s not replayed: no live worker would handle them (%s); re-target with --target ORGAN or --every-organ, start a worker that mounts the organ, or pass --force",
			deadLetters(len(res.Refused)), res.Refused[0].Error)
	}
	return nil
}

// refused reports a dead letter no live worker would handle, and returns its line.
func refused(out io.Writer, l replayLine, d necroredis.DeadLetterEntry, err error, dry bool) replayLine {
	l.Error = strings.TrimPrefix(strings.TrimPrefix(err.Error(), "dead letter "+d.ID+": "), necroredis.ErrNoLiveOrgan.Error()+": ")
	what := "refused"
	if dry {
		what = "would refuse"
	}
	fmt.Fprintf(out, "%s %s: %s %s: %s\n", what, d.ID, l.EventType, l.EventID, l.Error)
	return l
}

// notReplayable reports a dead letter whose event does not decode, and returns its line.
func notReplayable(out io.Writer, l replayLine, d necroredis.DeadLetterEntry, err error) replayLine {
	l.Error = err.Error()
	why := d.Reason
	if why == "" {
		why = firstLine(d.Error)
	}
	fmt.Fprintf(out, "cannot replay %s: no event decodes from it (%s)\n", d.ID, oneLine(why))
	return l
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// deadLetters says "1 dead letter" or "n dead letters".
func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return fmt.Sprintf("%d dead letters", n)
}

// replayResult is what dlq replay did, or would do with --dry-run.
type replayResult struct {
	DryRun        bool         `json:"dry_run"`
	Matched       int          `json:"matched"`
	Replayed      []replayLine `json:"replayed"`
	Gone          []string     `json:"gone"` // replayed or purged by someone else meanwhile
	NotReplayable []replayLine `json:"not_replayable"`
	Refused       []replayLine `json:"refused"` // no live worker would handle them
}

func (r replayResult) summary(stream string) string {
	var b strings.Builder
	switch {
	case r.Matched == 0:
		return "no dead letters match; nothing to replay"
	case r.DryRun:
		fmt.Fprintf(&b, "dry run: would replay %d of %s to %s; nothing changed", len(r.Replayed), deadLetters(r.Matched), stream)
	default:
		fmt.Fprintf(&b, "replayed %d of %s to %s", len(r.Replayed), deadLetters(r.Matched), stream)
	}
	if n := len(r.Gone); n > 0 {
		fmt.Fprintf(&b, "; %d no longer there", n)
	}
	if n := len(r.NotReplayable); n > 0 {
		fmt.Fprintf(&b, "; %d cannot be replayed", n)
	}
	if n := len(r.Refused); n > 0 {
		fmt.Fprintf(&b, "; %d refused: no live worker would handle them", n)
	}
	return b.String()
}

func organs(targets []string) string {
	if len(targets) == 0 {
		return "every organ"
	}
	return "organ " + strings.Join(targets, ", ")
}

// parseRate reads --rate: "N/s" or "N", dead letters per second; "" is no limit (0).
func parseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseFloat(strings.TrimSuffix(s, "/s"), 64)
	if err != nil || n <= 0 || n > 1e9 {
		return 0, usageErr("--rate %q: want a positive number per second, such as 50/s", s)
	}
	return n, nil
}

// A pacer spaces calls rate per second, counted from the first; rate 0 never waits.
type pacer struct {
	rate  float64
	start time.Time
	n     int
}

func newPacer(rate float64) *pacer { return &pacer{rate: rate} }

// wait returns when the next call is due, or an error when ctx ends or a signal comes
// first.
func (p *pacer) wait(ctx context.Context, signals <-chan os.Signal) error {
	select {
	case <-signals:
		return errors.New("stopped by a signal")
	default:
	}
	if p.rate == 0 {
		return ctx.Err()
	}
	if p.n == 0 {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	p.n++
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-signals:
		return errors.New("stopped by a signal")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func dlqPurge(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "dlq purge", "[--type T] [--since DURATION|TIME] [--id ENTRYID]... --yes [--redis URL] [--stream NAME] [--json]")
	var rf redisFlags
	registerRedisFlags(fs, &rf, "redis", "redis-url-file", "stream")
	var sel selection
	sel.register(fs, true, false)
	yes := fs.Bool("yes", false, "delete the matching dead letters; without it, purge only says how many it would delete")
	asJSON := fs.Bool("json", false, `print one JSON object: {"matched", "deleted"}`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	f, err := sel.filter(time.Now())
	if err != nil {
		return err
	}
	a, err := openAdmin(ctx, e, &rf)
	if err != nil {
		return err
	}
	defer func() { _ = a.Close() }() // XDEL has answered: nothing is lost if closing fails
	entries, err := a.DeadLetterEntries(ctx, f)
	if err != nil {
		return err
	}
	if !*yes {
		return usageErr("would delete %s from %s%s; add --yes to delete them", deadLetters(len(entries)), a.Config().DeadLetterStream, selected(sel))
	}
	ids := make([]string, len(entries))
	for i, d := range entries {
		ids[i] = d.ID
	}
	n, err := a.PurgeDeadLetters(ctx, ids)
	if err != nil {
		return fmt.Errorf("after %d deleted: %w", n, err)
	}
	if *asJSON {
		return printJSON(e.stdout, map[string]int{"matched": len(entries), "deleted": n})
	}
	_, err = fmt.Fprintf(e.stdout, "deleted %s from %s%s\n", deadLetters(n), a.Config().DeadLetterStream, selected(sel))
	return err
}

// withNote adds text after a command's flags in its help.
func withNote(e *env, usage func(), note string) func() {
	return func() {
		usage()
		fmt.Fprintln(e.stderr, note)
	}
}
