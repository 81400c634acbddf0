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
	"os"
	"slices"
	"strings"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/telemetry"
)

// cmdEmit enqueues events on a Redis stream: one from the flags, or one per line of
// stdin. Every line is checked before anything is enqueued, and the events are then
// enqueued all or none, so a bad line enqueues nothing.
func cmdEmit(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "emit", "--type T [--payload JSON] [--id ID] [--redis URL] [--json]\n       necro-actors emit [--redis URL] [--json] < events.jsonl")
	var rf redisFlags
	rf.register(fs)
	typ := fs.String("type", "", "the event's `type`; without it, the events are read from stdin")
	payload := fs.String("payload", "{}", "the event's payload, a JSON `object`")
	id := fs.String("id", "", "the event's `id`, a UUID v4 (default: a new one)")
	asJSON := fs.Bool("json", false, `print {"enqueued": n, "ids": [...]} rather than one id per line`)
	verbose := fs.Bool("v", false, "log at debug level (JSON lines on stderr); the default is warnings only")
	fs.Usage = emitUsage(e, fs.Usage)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("emit takes no arguments, got %q (a payload goes in --payload)", pos)
	}
	if !rf.urlSet(e) {
		return usageErr("no Redis URL: give --redis URL, --redis-url-file FILE or set NECRO_REDIS_URL")
	}
	rcfg, err := rf.config(e)
	if err != nil {
		return err
	}

	var events []necro.Event
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
		if events, err = readEventLines(e.stdin); err != nil {
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
	events, err = enqueue(ctx, obs.recorder(), b, events)
	if err = errors.Join(err, b.Close()); err != nil {
		return err
	}

	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = ev.ID()
	}
	if *asJSON {
		return printJSON(e.stdout, map[string]any{"enqueued": len(ids), "ids": ids})
	}
	_, err = fmt.Fprintln(e.stdout, strings.Join(ids, "\n"))
	return err
}

// A producer is a store events are enqueued on, and that names itself for telemetry.
type producer interface {
	Enqueue(ctx context.Context, events ...necro.Event) error
	Describe() backend.Description
}

// enqueue enqueues the events all or none, each in a send span of its own when tracing
// is on, so that each one starts a trace of its own; it returns them as enqueued, with
// their trace context.
func enqueue(ctx context.Context, rec *telemetry.Recorder, q producer, events []necro.Event) ([]necro.Event, error) {
	d := q.Describe()
	dest := telemetry.Destination{System: d.System, Name: d.Name, Group: d.Group}
	spans := make([]telemetry.Span, len(events))
	out := make([]necro.Event, len(events))
	for i, ev := range events {
		var one []necro.Event
		_, spans[i], one = rec.Send(ctx, dest, []necro.Event{ev})
		out[i] = one[0]
	}
	err := q.Enqueue(ctx, out...)
	for _, s := range spans {
		s.EndErr(err)
	}
	if err != nil {
		return nil, withCode(enqueueExitCode(err), err)
	}
	return out, nil
}

// enqueueExitCode classifies a failed enqueue: a full store is a failure of the work,
// anything else a failure to reach Redis.
func enqueueExitCode(err error) int {
	if errors.Is(err, backend.ErrQueueFull) {
		return exitFailed
	}
	return redisExitCode(err)
}

// maxLine bounds a line of stdin: an event of the largest payload and its envelope.
const maxLine = necro.MaxPayloadBytes + 64<<10

// readEventLines reads one event per line of r, blank lines skipped: an object
// {"event_type": T, "payload": {...}, "id": ID} with payload and id optional, or an
// event in the wire shape of Python NecroStack, {"id", "timestamp", "event_type",
// "payload"}. It checks every line first: a bad line is a usage error naming its
// number and what is wrong, and nothing is returned then.
func readEventLines(r io.Reader) ([]necro.Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var (
		events []necro.Event
		bad    []string
		lineOf = map[string]int{} // event id → the line that holds it
		n      int
	)
	for sc.Scan() {
		n++
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
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, usageErr("stdin line %d: longer than %d bytes; nothing was enqueued", n+1, maxLine)
		}
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	switch {
	case len(bad) == 1:
		return nil, usageErr("stdin %s; nothing was enqueued", bad[0])
	case len(bad) > 1:
		return nil, usageErr("stdin %s (and %d more bad lines); nothing was enqueued", bad[0], len(bad)-1)
	case len(events) == 0:
		return nil, usageErr("no events: give --type, or JSON lines on stdin")
	}
	return events, nil
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
line is reported with its number (exit 2) and nothing is enqueued; the events are then
enqueued in one call, all or none. The ids are printed one per line, in input order.
`)
	}
}
