package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/telemetry"
)

// cmdEmit enqueues events on a Redis stream: one from the flags, or one per line of
// stdin. Every line is checked before anything is enqueued, so a bad line enqueues
// nothing. The events then go in chunk by chunk, and the id of each is printed once
// its chunk is in; a failure part-way names the first line that did not go in and the
// command that resumes there.
func cmdEmit(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "emit", "--type T [--payload JSON] [--id ID] [--redis URL] [--json]\n       necro-actors emit [--redis URL] [--json] [--skip N] < events.jsonl")
	var rf redisFlags
	rf.register(fs)
	typ := fs.String("type", "", "the event's `type`; without it, the events are read from stdin")
	payload := fs.String("payload", "{}", "the event's payload, a JSON `object`")
	id := fs.String("id", "", "the event's `id`, a UUID v4 (default: a new one)")
	asJSON := fs.Bool("json", false, `print {"ids": [...], "enqueued": n} rather than one id per line (after a failure, with "error", "skip" and "first_line_not_enqueued")`)
	verbose := fs.Bool("v", false, "log at debug level (JSON lines on stderr); the default is warnings only")
	skip := fs.Int("skip", 0, "skip the first `N` lines of stdin, as the resume command of an emit that failed part-way says")
	fs.Usage = emitUsage(e, fs.Usage)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("emit takes no arguments, got %q (a payload goes in --payload)", pos)
	}
	if *skip < 0 {
		return usageErr("--skip %d: want a number of lines, 0 or more", *skip)
	}
	if *skip > 0 && *typ != "" {
		return usageErr("--skip skips lines of stdin; it does not go with --type")
	}
	if !rf.urlSet(e) {
		return usageErr("no Redis URL: give --redis URL, --redis-url-file FILE or set NECRO_REDIS_URL")
	}
	rcfg, err := rf.config(e)
	if err != nil {
		return err
	}

	var (
		events []necro.Event
		lines  []int // the line of stdin each event comes from; none with --type
	)
	if *typ == "" {
		set := ""
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "payload" || f.Name == "id" {
				set = f.Name
			}
		})
		if set != "" {
			return usageErr("--%s needs --type; without --type the events are read from stdin", set)
		}
		if f, ok := e.stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return usageErr("no --type, and stdin is a terminal: give --type T, or pipe JSON lines in")
			}
		}
		if events, lines, err = readEventLines(e.stdin, *skip); err != nil {
			return err
		}
	} else {
		ev, err := necro.Draft{ID: *id, Type: *typ, Payload: json.RawMessage(*payload)}.Build()
		if err != nil {
			return usageErr("%v", flagEventError(err))
		}
		events = []necro.Event{ev}
	}

	log := telemetry.NewJSONLogger(e.stderr, logLevel(*verbose))
	obs, err := startTelemetry(ctx, "")
	if err != nil {
		return err
	}
	defer obs.closeLogged(ctx, log)
	rcfg.Logger = log
	b, err := openRedis(ctx, rcfg)
	if err != nil {
		return err
	}
	out := &idPrinter{w: bufio.NewWriter(e.stdout), json: *asJSON}
	in, enqErr := enqueueUntilSignal(ctx, e.signals, func(ctx context.Context) (int, error) {
		return enqueue(ctx, obs.recorder(), b, events, out.print)
	})
	if err := b.Close(); err != nil {
		// What went in stays in; a failure to close is no failure of the emit.
		log.WarnContext(ctx, "closing the store failed", slog.Any("err", err))
	}
	if enqErr == nil {
		return out.end(nil)
	}
	code := enqueueExitCode(enqErr)
	p := partial{lines: lines, in: in, skipped: *skip, err: enqErr, resume: resumeCommand(fs)}
	var ee *backend.EnqueueError
	if errors.As(enqErr, &ee) {
		p.unknown, p.err = ee.Unknown, ee.Err
		if errors.Is(enqErr, errStopped) {
			p.err = fmt.Errorf("%w: %w", errStopped, p.err)
		}
	}
	switch {
	case in == 0 && p.unknown == 0:
		return errors.Join(out.end(&p), withCode(code, fmt.Errorf("%w; nothing was enqueued", p.err)))
	case lines == nil: // one event, from the flags
		return errors.Join(out.end(nil), withCode(code, fmt.Errorf("%w; the event may have gone in: Redis did not answer", p.err)))
	}
	return errors.Join(out.end(&p), withCode(code, errors.New(p.String())))
}

// errStopped is the cause of an emit stopped by SIGINT or SIGTERM.
var errStopped = errors.New("stopped by a signal")

// enqueueUntilSignal runs enqueue with a ctx that a signal cancels: the chunk under way
// finishes, and no other starts.
func enqueueUntilSignal(ctx context.Context, signals <-chan os.Signal, enqueue func(context.Context) (int, error)) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-signals:
			cancel(errStopped)
		case <-done:
		}
	})
	in, err := enqueue(ctx)
	close(done)
	wg.Wait()
	if err != nil && errors.Is(context.Cause(ctx), errStopped) {
		err = fmt.Errorf("%w: %w", errStopped, err)
	}
	return in, err
}

// A partial is an emit from stdin that failed after some events went in.
type partial struct {
	lines   []int // the line of each event
	in      int   // the leading events that went in
	unknown int   // the events after them that may have gone in
	skipped int   // lines skipped by --skip
	err     error
	resume  string // the command that resumes, without --skip
}

// lastIn is the line after which to resume: the last line known to have gone in.
func (p *partial) lastIn() int {
	if p.in == 0 {
		return p.skipped
	}
	return p.lines[p.in-1]
}

// firstOut is the first line known not to have gone in; 0 when there is none.
func (p *partial) firstOut() int {
	if p.in+p.unknown >= len(p.lines) {
		return 0
	}
	return p.lines[p.in+p.unknown]
}

func (p *partial) String() string {
	var b strings.Builder
	if p.in > 0 {
		fmt.Fprintf(&b, "%d events went in, up to line %d (their ids are on stdout)", p.in, p.lastIn())
	} else {
		b.WriteString("no event went in for certain")
	}
	if p.unknown > 0 {
		first, last := p.lines[p.in], p.lines[p.in+p.unknown-1]
		fmt.Fprintf(&b, "; lines %d-%d may or may not have gone in (Redis did not answer for them)", first, last)
		if out := p.firstOut(); out > 0 {
			fmt.Fprintf(&b, "; line %d and those after it did not", out)
		}
		fmt.Fprintf(&b, ": %v; resume with the same input on stdin: %s --skip %d (sends lines %d-%d again, twice in the stream if they went in), or --skip %d (leaves them out if they did not)",
			p.err, p.resume, p.lastIn(), first, last, last)
		return b.String()
	}
	fmt.Fprintf(&b, "; line %d and those after it did not: %v; resume with the same input on stdin: %s --skip %d",
		p.firstOut(), p.err, p.resume, p.lastIn())
	return b.String()
}

// resumeCommand rebuilds the command line of fs, as the flags were given, --skip left
// out: a URL's password masked, values quoted for a POSIX shell.
func resumeCommand(fs *flag.FlagSet) string {
	parts := []string{"necro-actors", "emit"}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "skip" {
			return
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			if f.Value.String() == "true" {
				parts = append(parts, "--"+f.Name)
			}
			return
		}
		v := f.Value.String()
		if f.Name == "redis" {
			v = necroredis.MaskURL(v)
		}
		parts = append(parts, "--"+f.Name, shellQuote(v))
	})
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// An idPrinter prints the ids of the events that went in as they go in: one per line,
// or as the "ids" of one JSON object. Each chunk's ids are flushed once it is in, so
// that an emit stopped by force has printed every id it enqueued, and none is held
// back in a buffer the size of the input.
type idPrinter struct {
	w     *bufio.Writer
	json  bool
	n     int
	begun bool
}

func (p *idPrinter) print(evs []necro.Event) error {
	if p.json && !p.begun {
		p.begun = true
		_, _ = p.w.WriteString(`{"ids":[`) // a failed write fails the Flush below
	}
	for _, ev := range evs {
		if p.json {
			if p.n > 0 {
				_ = p.w.WriteByte(',')
			}
			id, _ := json.Marshal(ev.ID()) // a string always marshals
			_, _ = p.w.Write(id)
		} else {
			_, _ = p.w.WriteString(ev.ID())
			_ = p.w.WriteByte('\n')
		}
		p.n++
	}
	return p.w.Flush()
}

// end closes the JSON object, with what failed when p is not nil.
func (p *idPrinter) end(fail *partial) error {
	if !p.json {
		return p.w.Flush()
	}
	if err := p.print(nil); err != nil {
		return err
	}
	fmt.Fprintf(p.w, `],"enqueued":%d`, p.n)
	if fail != nil && fail.lines != nil {
		errText, _ := json.Marshal(fail.err.Error())
		fmt.Fprintf(p.w, `,"error":%s,"skip":%d`, errText, fail.lastIn())
		if fail.unknown > 0 {
			fmt.Fprintf(p.w, `,"unknown_lines":[%d,%d]`, fail.lines[fail.in], fail.lines[fail.in+fail.unknown-1])
		}
		if out := fail.firstOut(); out > 0 {
			fmt.Fprintf(p.w, `,"first_line_not_enqueued":%d`, out)
		}
	}
	_, _ = p.w.WriteString("}\n")
	return p.w.Flush()
}

// A producer is a store events are enqueued on, and that names itself for telemetry.
type producer interface {
	Enqueue(ctx context.Context, events ...necro.Event) error
	Describe() backend.Description
}

// emitChunk is how many events one Enqueue of emit carries: a chunk the Redis store
// applies all or none, so that each call's ids can be printed as soon as it returns.
const emitChunk = necroredis.EnqueueChunkEvents

// enqueue enqueues the events in order, a chunk per call, each in a send span of its
// own when tracing is on, so that each one starts a trace of its own. After each call it
// hands the events that went in, with their trace context, to stored. It returns how
// many leading events went in, and the error that stopped it: from the store (possibly
// a *backend.EnqueueError, whose Enqueued are counted), or from stored.
func enqueue(ctx context.Context, rec *telemetry.Recorder, q producer, events []necro.Event, stored func([]necro.Event) error) (int, error) {
	d := q.Describe()
	dest := telemetry.Destination{System: d.System, Name: d.Name, Group: d.Group}
	spans := make([]telemetry.Span, 0, emitChunk)
	batch := make([]necro.Event, 0, emitChunk)
	in := 0
	for len(events) > 0 {
		n := min(len(events), emitChunk)
		spans, batch = spans[:0], batch[:0]
		for _, ev := range events[:n] {
			_, span, one := rec.Send(ctx, dest, []necro.Event{ev})
			spans = append(spans, span)
			batch = append(batch, one[0])
		}
		err := q.Enqueue(ctx, batch...)
		went := n
		if err != nil {
			went = 0
			var ee *backend.EnqueueError
			if errors.As(err, &ee) {
				went = ee.Enqueued
			}
		}
		for i, s := range spans {
			if i < went {
				s.EndErr(nil)
			} else {
				s.EndErr(err)
			}
		}
		in += went
		if serr := stored(batch[:went]); serr != nil {
			return in, fmt.Errorf("print the ids: %w", serr)
		}
		if err != nil {
			// The store counted the events of this call; the caller wants all of them.
			var ee *backend.EnqueueError
			switch {
			case errors.As(err, &ee):
				err = &backend.EnqueueError{Enqueued: in, Unknown: ee.Unknown, Err: ee.Err}
			case in > 0:
				err = &backend.EnqueueError{Enqueued: in, Err: err}
			}
			return in, err
		}
		events = events[n:]
	}
	return in, nil
}

// enqueueExitCode classifies a failed enqueue: a full store is a failure of the work,
// a stop asked for (a signal) leaves work pending, anything else is a failure to reach
// Redis.
func enqueueExitCode(err error) int {
	switch {
	case errors.Is(err, backend.ErrQueueFull):
		return exitFailed
	case errors.Is(err, errStopped), errors.Is(err, context.Canceled):
		return exitPending
	}
	return redisExitCode(err)
}

// maxLine bounds a line of stdin: an event of the largest payload and its envelope.
const maxLine = necro.MaxPayloadBytes + 64<<10

// readEventLines reads one event per line of r, after the first skip lines, blank
// lines skipped: an object {"event_type": T, "payload": {...}, "id": ID} with payload
// and id optional, or an event in the wire shape of Python NecroStack, {"id",
// "timestamp", "event_type", "payload"}. It returns the events and the line number of
// each (counting the skipped lines). It checks every line first: a bad line is a usage
// error naming its number and what is wrong, and nothing is returned then.
func readEventLines(r io.Reader, skip int) ([]necro.Event, []int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var (
		events []necro.Event
		lines  []int
		bad    []string
		lineOf = map[string]int{} // event id → the line that holds it
		n      int
	)
	for sc.Scan() {
		n++
		if n <= skip {
			continue
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev, err := decodeEventLine(line)
		if err == nil {
			if first, ok := lineOf[ev.ID()]; ok {
				err = fmt.Errorf("id %s is already on line %d", ev.ID(), first)
			} else {
				lineOf[ev.ID()] = n
			}
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		events = append(events, ev)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, usageErr("stdin line %d: longer than %d bytes; nothing was enqueued", n+1, maxLine)
		}
		return nil, nil, fmt.Errorf("read stdin: %w", err)
	}
	switch {
	case len(bad) == 1:
		return nil, nil, usageErr("stdin %s; nothing was enqueued", bad[0])
	case len(bad) > 1:
		return nil, nil, usageErr("stdin %s (and %d more bad lines); nothing was enqueued", bad[0], len(bad)-1)
	case len(events) == 0 && skip > 0:
		return nil, nil, usageErr("no events after line %d (--skip %d); stdin has %d lines", skip, skip, n)
	case len(events) == 0:
		return nil, nil, usageErr("no events: give --type, or JSON lines on stdin")
	}
	return events, lines, nil
}

// lineKeys are the keys of the short form of a line.
var lineKeys = []string{"event_type", "payload", "id"}

// decodeEventLine decodes one line of emit's input.
func decodeEventLine(line []byte) (necro.Event, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return necro.Event{}, fmt.Errorf("a JSON %s, not an object", te.Value)
		}
		return necro.Event{}, fmt.Errorf("not JSON: %v", err)
	}
	if _, ok := fields["timestamp"]; ok {
		ev, err := necro.DecodeEvent(line) // the wire shape, checked strictly
		return ev, lineEventError(err)
	}
	for k := range fields {
		if !slices.Contains(lineKeys, k) {
			return necro.Event{}, fmt.Errorf(`unknown key %q: a line is {"event_type": T, "payload": {...}} with an optional "id", or an event with its "timestamp"`, k)
		}
	}
	var d necro.Draft
	raw, ok := fields["event_type"]
	if !ok {
		return necro.Event{}, errors.New(`"event_type" is missing`)
	}
	if err := json.Unmarshal(raw, &d.Type); err != nil {
		return necro.Event{}, errors.New(`"event_type" is not a string`)
	}
	if raw, ok := fields["id"]; ok {
		if err := json.Unmarshal(raw, &d.ID); err != nil {
			return necro.Event{}, errors.New(`"id" is not a string`)
		}
		if d.ID == "" {
			return necro.Event{}, errors.New(`"id" is empty; leave it out for a new one`)
		}
	}
	if raw, ok := fields["payload"]; ok {
		d.Payload = raw
	}
	ev, err := d.Build()
	return ev, lineEventError(err)
}

// lineEventError drops the "necro: invalid event: " prefix of a validation error: the
// line number already says where.
func lineEventError(err error) error {
	var ve *necro.ValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("%s: %s", ve.Field, strings.TrimPrefix(ve.Error(), "necro: invalid event: "+ve.Field+": "))
	}
	return err
}

// flagEventError names the flag of a field the event's validation rejects.
func flagEventError(err error) error {
	var ve *necro.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	flagName := map[string]string{"event_type": "--type", "payload": "--payload", "id": "--id"}[ve.Field]
	if flagName == "" {
		return err
	}
	return fmt.Errorf("%s: %s", flagName, strings.TrimPrefix(ve.Error(), "necro: invalid event: "+ve.Field+": "))
}

// emitUsage adds the stdin format to emit's usage text.
func emitUsage(e *env, usage func()) func() {
	return func() {
		usage()
		fmt.Fprint(e.stderr, `
Without --type, emit reads events from stdin, one JSON object per line (blank lines
are skipped): {"event_type": "order.placed", "payload": {"qty": 3}} with "payload" and
"id" optional, or an event in the wire shape of Python NecroStack, {"id", "timestamp",
"event_type", "payload"}. Every line is checked before anything is enqueued: a bad
line is reported with its number (exit 2) and nothing is enqueued. The events then go
in chunk by chunk (1,000 events each, all or none), and the id of each is printed as
its chunk goes in, one per line, in input order. When a chunk fails, or SIGINT or
SIGTERM stops emit between two chunks (exit 5), emit has printed the ids of the events
that went in and names the first line that did not, with the command that resumes
there (--skip N skips the first N lines of stdin).
`)
	}
}
