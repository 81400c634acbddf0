package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
)

// argv builds the arguments of settleScript. Encoded events share one buffer: the
// arguments are slices of it, and a buffer outgrown stays valid for the slices already
// taken from it, since nothing is written twice.
type argv struct {
	args []any
	buf  []byte
}

func (a *argv) start(cfg Config, capacity int) {
	a.args = append(a.args[:0], cfg.Group, cfg.Consumer, capacity, cfg.DeadLetterMaxLen)
}

// reserve makes room in the buffer for about n more bytes.
func (a *argv) reserve(n int) {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(n, 2*cap(a.buf)))
	}
}

// bytes appends what fn writes and returns it as one argument.
func (a *argv) bytes(fn func([]byte) []byte) []byte {
	start := len(a.buf)
	a.buf = fn(a.buf)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// sizeOf estimates the encoded size of events: wire form and metadata.
func sizeOf(evs []necro.Event) int {
	n := 0
	for _, ev := range evs {
		n += ev.PayloadSize() + len(ev.Type()) + 320
	}
	return n
}

// op appends one operation: settle entry id (none when ""), acking it when ack, after
// adding the entries, the delayed retries and the dead letters.
func (a *argv) op(id string, ack bool, entries []necro.Event, later []backend.Retry, dead []backend.DeadLetter, rcpt string) {
	a.reserve(sizeOf(entries))
	a.args = append(a.args, id, flag(ack), len(entries))
	for _, ev := range entries {
		a.args = append(a.args, a.bytes(ev.AppendJSON), a.bytes(func(b []byte) []byte { return appendMeta(b, ev) }))
	}
	a.args = append(a.args, len(later))
	for i, r := range later {
		// The token keeps two equal retries apart: the set would merge them.
		member := a.bytes(func(b []byte) []byte {
			b = strconv.AppendInt(append(append(b, rcpt...), '/'), int64(i), 10)
			b = append(r.Event.AppendJSON(append(b, 0)), 0)
			return appendMeta(b, r.Event)
		})
		a.args = append(a.args, r.At.UnixMilli(), member)
	}
	a.args = append(a.args, len(dead))
	for _, dl := range dead {
		a.dead(deadFields{original: entryID(dl.Receipt), event: string(dl.Event.AppendJSON(nil)), reason: dl.Reason,
			at: dl.At.UTC().Format(necro.TimestampLayout), organ: dl.Organ, attempts: dl.Attempts, err: dl.Error,
			meta: string(appendMeta(nil, dl.Event)), receipt: dl.Receipt})
	}
}

// rawOp appends an operation that dead-letters an entry as stored and acks it.
func (a *argv) rawOp(id string, ack bool, d deadFields) {
	a.args = append(a.args, id, flag(ack), 0, 0, 1)
	a.dead(d)
}

// deadFields are the fields of a dead-letter entry. size, the bytes of a poison entry
// whose text the dead letter keeps only in part, is written only when set.
type deadFields struct {
	original, event, reason, at, organ string
	attempts                           int
	err, meta, receipt, size           string
}

func (a *argv) dead(d deadFields) {
	a.args = append(a.args, d.original, d.event, d.reason, d.at, d.organ, d.attempts, d.err, d.meta, d.receipt, d.size)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// appendMeta appends the lineage of ev as the stream entry's meta field.
func appendMeta(b []byte, ev necro.Event) []byte { return ev.Meta().AppendJSON(b) }

// decodeEntry decodes a stream entry: the Python wire shape in field event, necro's
// lineage in field meta (absent in entries that Python wrote). The error names what is
// wrong.
func decodeEntry(values map[string]any) (necro.Event, error) {
	raw, ok := values["event"].(string)
	if !ok {
		// The names are the entry's own text: a few, clipped, are enough to tell what
		// wrote it.
		names := make([]string, 0, len(values))
		for k := range values {
			names = append(names, strconv.Quote(clipText(k, fieldNameMax)))
		}
		slices.Sort(names)
		if len(names) > fieldNamesListed {
			names = append(names[:fieldNamesListed], fmt.Sprintf("and %d more", len(names)-fieldNamesListed))
		}
		return necro.Event{}, fmt.Errorf(`%w: the entry has no "event" field (fields: %s)`, necro.ErrInvalidEvent, strings.Join(names, ", "))
	}
	meta, _ := values["meta"].(string)
	// DecodeWithMeta keeps no reference to its input, so the strings need no copy.
	return necro.DecodeWithMeta(unsafe.Slice(unsafe.StringData(raw), len(raw)), unsafe.Slice(unsafe.StringData(meta), len(meta)))
}

// Bounds of the text of an entry that goes into a log line, an error or a dead letter's
// reason: an entry can be as large as Redis allows, and so can each of its fields.
const (
	textMax          = 512     // an error's text, in a log line or a dead letter's reason
	fieldNameMax     = 64      // a field name listed in an error
	fieldNamesListed = 10      // the field names listed in an error, at most
	storedTextMax    = 4 << 10 // a dead letter's stored event text in DeadLetter.Error
)

// entrySize measures an entry as MaxEntryBytes does: its field names and values
// together, as luaBounds' entrysize does in Redis.
func entrySize(values map[string]any) int {
	n := 0
	for k, v := range values {
		s, _ := v.(string)
		n += len(k) + len(s)
	}
	return n
}

// prefix returns the first n bytes of s, fewer when byte n+1 continues a UTF-8
// character, as luaBounds' cut does in Redis.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	k := n
	for k > 0 && k > n-3 && !utf8.RuneStart(s[k]) {
		k--
	}
	return s[:k]
}

// clipText returns s if it holds at most n bytes, else its prefix of n bytes and a note
// of its size.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return prefix(s, n) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// decodeDeadLetter reads a dead-letter entry, whoever wrote it. The stored text of an
// event that does not decode goes into Error, clipped.
func decodeDeadLetter(v map[string]any) backend.DeadLetter {
	s := func(k string) string { x, _ := v[k].(string); return x }
	dl := backend.DeadLetter{Organ: s("organ"), Error: s("error"), Reason: s("reason"), Receipt: s("receipt")}
	if dl.Receipt == "" {
		dl.Receipt = s("original_id")
	}
	dl.Attempts, _ = strconv.Atoi(s("attempts"))
	dl.At, _ = necro.ParseTimestamp(s("failed_at"))
	ev, err := decodeEntry(v)
	if err != nil {
		stored, what := s("event"), "stored event"
		if size := s("size"); size != "" {
			what = fmt.Sprintf("stored event (%d bytes kept of an entry of %s)", len(stored), size)
		}
		dl.Error = strings.TrimSpace(dl.Error + "\n" + what + ": " + clipText(stored, storedTextMax))
		return dl
	}
	dl.Event = ev
	return dl
}

// parseClaimed reads the {{id, fields, deliveries}...} and {ids} parts of a claim or
// own-pending script's reply.
func parseClaimed(entries, deletedIDs any) ([]message, []string, error) {
	list, _ := entries.([]any)
	msgs := make([]message, 0, len(list))
	for _, e := range list {
		t, ok := e.([]any)
		if !ok || len(t) != 3 {
			return nil, nil, fmt.Errorf("redis: unexpected claimed entry %s", clipText(fmt.Sprint(e), textMax))
		}
		id, _ := t[0].(string)
		fields, _ := t[1].([]any)
		n, _ := t[2].(int64)
		values := make(map[string]any, len(fields)/2)
		for j := 0; j+1 < len(fields); j += 2 {
			k, _ := fields[j].(string)
			values[k] = fields[j+1]
		}
		msgs = append(msgs, message{id: id, values: values, deliveries: max(int(n), 1)})
	}
	var deleted []string
	dl, _ := deletedIDs.([]any)
	for _, d := range dl {
		if id, ok := d.(string); ok {
			deleted = append(deleted, id)
		}
	}
	return msgs, deleted, nil
}

// A settleResult is settleScript's reply.
type settleResult struct {
	applied             int
	status, detail      string
	dlqTrimmed, trimmed int64
	resent              bool // the script ran again after a reply was lost
}

// err turns a refused operation into the contract's error. applied is the operation's
// index in the script's batch.
func (r settleResult) err(b *Backend, applied int) error {
	switch r.status {
	case "OK":
		return nil
	case "FULL":
		return fmt.Errorf("%w: the stream holds %s entries (Capacity %d)", backend.ErrQueueFull, r.detail, b.cfg.Capacity)
	case "GONE":
		return fmt.Errorf("%w: entry %s is pending to no consumer (acknowledged already, or deleted)", backend.ErrUnknownDelivery, r.detail)
	case "STOLEN":
		return fmt.Errorf("%w: consumer %q claimed the entry (this one was idle longer than ClaimAfter)", backend.ErrUnknownDelivery, r.detail)
	}
	return fmt.Errorf("redis: settle script answered %q at operation %d", r.status, applied)
}

// eval runs settleScript once.
func (b *Backend) eval(ctx context.Context, s *goredis.Script, args []any) (settleResult, error) {
	raw, err := s.Run(ctx, b.rdb, b.keys, args...).Slice()
	if b.noGroup(ctx, err) {
		raw, err = s.Run(ctx, b.rdb, b.keys, args...).Slice()
	}
	if err != nil {
		if isOOM(err) {
			return settleResult{}, fmt.Errorf("%w: Redis is out of memory: %v", backend.ErrQueueFull, err)
		}
		return settleResult{}, err
	}
	if len(raw) != 5 {
		return settleResult{}, fmt.Errorf("redis: settle script answered %v", raw)
	}
	var r settleResult
	n, _ := raw[0].(int64)
	r.applied = int(n)
	r.status, _ = raw[1].(string)
	r.detail, _ = raw[2].(string)
	r.dlqTrimmed, _ = raw[3].(int64)
	r.trimmed, _ = raw[4].(int64)
	return r, nil
}

// evalRetrying runs settleScript, retrying with backoff while Redis cannot be reached,
// for up to SettleRetryFor or until Close.
func (b *Backend) evalRetrying(ctx context.Context, args []any) (settleResult, error) {
	deadline := time.Now().Add(b.cfg.SettleRetryFor)
	delay := 10 * time.Millisecond
	resent := false
	for {
		failpoint.hit("before-settle")
		r, err := b.eval(ctx, settleScript, args)
		failpoint.hit("after-settle")
		if err == nil {
			r.resent = resent
			b.counts.trimmed.Add(r.trimmed)
			return r, nil
		}
		if !isNetwork(err) || time.Now().Add(delay).After(deadline) {
			return r, err
		}
		resent = true
		b.counts.settleRetries.Add(1)
		b.log.WarnContext(ctx, "settle failed; retrying", slog.Duration("in", delay), slog.Any("err", err))
		select {
		case <-time.After(delay):
		case <-b.closing:
			return r, fmt.Errorf("%w (while retrying a settle: %v)", backend.ErrClosed, err)
		case <-ctx.Done():
			return r, ctx.Err()
		}
		delay = min(2*delay, time.Second)
	}
}

// isNetwork reports an error of the connection rather than a reply of Redis: the
// command may or may not have run.
func isNetwork(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "LOADING") || strings.Contains(msg, "connection pool timeout") ||
		strings.Contains(msg, "use of closed network connection")
}

func isOOM(err error) bool { return strings.HasPrefix(err.Error(), "OOM") }

// scrub removes the URL's passwords from an error's text.
func scrub(err error, url string) error {
	msg := err.Error()
	if masked := maskSecrets(msg, url); masked != msg {
		return errors.New(masked)
	}
	return err
}
