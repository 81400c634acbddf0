package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
)

// Errors of [Admin].
var (
	// ErrNoDeadLetter reports a dead-letter entry id that the dead-letter stream does
	// not hold: it never did, or the entry was replayed or purged.
	ErrNoDeadLetter = errors.New("redis: no such dead letter")
	// ErrNotReplayable reports a dead letter whose stored event cannot be decoded, such
	// as a poison entry's or one deleted from the stream while pending: there is no
	// event to enqueue again.
	ErrNotReplayable = errors.New("redis: dead letter holds no event to replay")
	// ErrNoLiveOrgan reports a replay refused because no live worker of the group would
	// handle the event: no live worker mounts an organ it is targeted at, or, untargeted,
	// no live worker listens to its type.
	ErrNoLiveOrgan = errors.New("redis: no live worker would handle the event")
)

// An Admin looks at a stream from outside and repairs it: it inspects the stream, its
// consumer groups and its consumers, and lists, replays and purges dead letters. It is
// the operator's tool, not a consumer: opening one creates no group and no consumer and
// starts no background work, so that looking at a stream never changes it. Create it
// with [OpenAdmin]; all methods are safe for concurrent use.
type Admin struct {
	cfg  Config
	rdb  *goredis.Client
	keys []string // stream, dead-letter stream, delayed set
}

// OpenAdmin connects to the Redis of cfg, which names the stream (Stream and
// DeadLetterStream; the group and consumer settings are not used), and checks that it
// answers. A connection or authentication failure is returned with the URL's password
// masked.
func OpenAdmin(ctx context.Context, cfg Config) (*Admin, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opt, err := cfg.options()
	if err != nil {
		return nil, err
	}
	// As for the store: a script whose reply was lost must not run again unnoticed.
	opt.MaxRetries = -1
	a := &Admin{cfg: cfg, rdb: goredis.NewClient(opt),
		keys: []string{cfg.Stream, cfg.DeadLetterStream, cfg.Stream + ":delayed"}}
	if err := a.rdb.Ping(ctx).Err(); err != nil {
		_ = a.rdb.Close() // the ping's failure is the one to report
		return nil, connectError(cfg, opt, err)
	}
	return a, nil
}

// Config returns the configuration in use, defaults filled in.
func (a *Admin) Config() Config { return a.cfg }

// Close closes the connections.
func (a *Admin) Close() error { return a.rdb.Close() }

// An Inspection is what [Admin.Inspect] finds.
type Inspection struct {
	Stream  string
	Exists  bool   // the stream key exists
	Length  int64  // entries in the stream, acknowledged ones not yet trimmed included
	FirstID string // the oldest entry's id; "" when the stream is empty
	LastID  string // the newest entry's id; "" when the stream is empty
	Groups  []GroupInfo

	DeadLetterStream string
	DeadLetters      int64     // entries in the dead-letter stream
	Delayed          int64     // retries waiting in <stream>:delayed until they are due
	NextRetry        time.Time // when the first of them is due; zero when there are none

	ServerVersion string // Redis's redis_version
}

// A GroupInfo describes one consumer group of the stream.
type GroupInfo struct {
	Name            string
	Pending         int64  // entries handed out and not acknowledged
	LastDeliveredID string // the last entry the group read
	Lag             int64  // entries the group has not read yet; -1 when Redis cannot tell
	Consumers       []ConsumerInfo
	// Workers is the group's roster: the workers that announced the organs they mount,
	// live or gone lately, sorted by name.
	Workers []Worker
}

// A ConsumerInfo describes one consumer of a group.
type ConsumerInfo struct {
	Name    string
	Pending int64         // entries handed out to it and not acknowledged
	Idle    time.Duration // since it last tried to read or claim
	// Inactive is the time since it last read or claimed an entry; -1 (a negative
	// duration) when Redis does not tell (before 7.2) or the consumer never did.
	Inactive time.Duration
}

// Inspect asks Redis about the stream, all its consumer groups (by name) and their
// consumers (by name), the dead-letter stream and the delayed retries. A stream that
// does not exist is reported with Exists false and no groups.
func (a *Admin) Inspect(ctx context.Context) (Inspection, error) {
	in := Inspection{Stream: a.cfg.Stream, DeadLetterStream: a.cfg.DeadLetterStream}
	pipe := a.rdb.Pipeline()
	info := pipe.XInfoStream(ctx, a.keys[0])
	groups := pipe.XInfoGroups(ctx, a.keys[0])
	dead := pipe.XLen(ctx, a.keys[1])
	delayed := pipe.ZCard(ctx, a.keys[2])
	next := pipe.ZRangeWithScores(ctx, a.keys[2], 0, 0)
	server := pipe.Info(ctx, "server")
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	for _, c := range []goredis.Cmder{dead, delayed, next, server} {
		if err := c.Err(); err != nil {
			return in, fmt.Errorf("redis: inspect: %s: %w", c.Name(), err)
		}
	}
	in.DeadLetters, in.Delayed = dead.Val(), delayed.Val()
	if z := next.Val(); len(z) > 0 {
		in.NextRetry = time.UnixMilli(int64(z[0].Score)).UTC()
	}
	in.ServerVersion = infoField(server.Val(), "redis_version")
	si, err := info.Result()
	switch {
	case noSuchKey(err):
		return in, nil
	case err != nil:
		return in, fmt.Errorf("redis: inspect: XINFO STREAM: %w", err)
	}
	in.Exists, in.Length, in.FirstID, in.LastID = true, si.Length, si.FirstEntry.ID, si.LastEntry.ID
	gs, err := groups.Result()
	if err != nil && !noSuchKey(err) { // the stream may have been deleted in between
		return in, fmt.Errorf("redis: inspect: XINFO GROUPS: %w", err)
	}
	if len(gs) == 0 {
		return in, nil
	}
	pipe = a.rdb.Pipeline()
	consumers := make([]*goredis.XInfoConsumersCmd, len(gs))
	for i, g := range gs {
		consumers[i] = pipe.XInfoConsumers(ctx, a.keys[0], g.Name)
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	inactive := versionAtLeast(in.ServerVersion, 7, 2)
	for i, g := range gs {
		gi := GroupInfo{Name: g.Name, Pending: g.Pending, LastDeliveredID: g.LastDeliveredID, Lag: g.Lag}
		cs, err := consumers[i].Result()
		if err != nil && !strings.Contains(err.Error(), "NOGROUP") && !noSuchKey(err) { // deleted in between
			return in, fmt.Errorf("redis: inspect: XINFO CONSUMERS %s: %w", g.Name, err)
		}
		for _, c := range cs {
			ci := ConsumerInfo{Name: c.Name, Pending: c.Pending, Idle: c.Idle, Inactive: -1}
			if inactive && c.Inactive >= 0 {
				ci.Inactive = c.Inactive
			}
			gi.Consumers = append(gi.Consumers, ci)
		}
		slices.SortFunc(gi.Consumers, func(x, y ConsumerInfo) int { return cmp.Compare(x.Name, y.Name) })
		if gi.Workers, err = a.workers(ctx, g.Name); err != nil {
			return in, fmt.Errorf("redis: inspect: %w", err)
		}
		in.Groups = append(in.Groups, gi)
	}
	slices.SortFunc(in.Groups, func(x, y GroupInfo) int { return cmp.Compare(x.Name, y.Name) })
	return in, nil
}

func noSuchKey(err error) bool { return err != nil && strings.Contains(err.Error(), "no such key") }

// infoField returns a field of an INFO reply, or "".
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// versionAtLeast reports whether the version text v ("7.2.4") is major.minor or later.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (ma > major || ma == major && mi >= minor)
}

// A DeadLetterEntry is one entry of the dead-letter stream: its entry id, the dead
// letter as the store reads it, and the entry's fields as stored. An entry whose event
// cannot be decoded has a zero Event, and the stored text in Fields["event"].
type DeadLetterEntry struct {
	ID string // the entry's id in the dead-letter stream
	backend.DeadLetter
	// Fields are the entry's fields as written: original_id, event, reason, failed_at,
	// and, when necro wrote it, organ, attempts, error, meta and receipt, and size for a
	// poison entry.
	Fields map[string]string
	// Size is the size in bytes of the poison entry the dead letter was made of (its
	// field names and values), whose text it keeps only up to PoisonKeepBytes; zero
	// when the dead letter does not record one.
	Size int
}

// A DeadLetterFilter selects dead letters; the zero value selects all of them. A dead
// letter is selected when it passes every condition that is set.
type DeadLetterFilter struct {
	// Type selects the dead letters whose event has this type. An entry whose event
	// cannot be decoded has no type and is selected only when Type is "".
	Type string
	// Since selects the entries written to the dead-letter stream at or after this
	// time, as their entry ids tell (millisecond precision).
	Since time.Time
	// IDs selects these entries only; ids the stream does not hold are left out.
	IDs []string
	// Limit bounds the entries returned, oldest first; zero means no bound.
	Limit int
}

// deadLetterPage is how many entries one XRANGE of DeadLetterEntries reads.
const deadLetterPage = 1000

// DeadLetterEntries returns the dead letters f selects, oldest first. It reads the
// dead-letter stream in pages, so a large one is never one reply.
func (a *Admin) DeadLetterEntries(ctx context.Context, f DeadLetterFilter) ([]DeadLetterEntry, error) {
	var out []DeadLetterEntry
	keep := func(msgs []goredis.XMessage) bool {
		for _, m := range msgs {
			e := deadLetterEntry(m)
			if f.Type != "" && e.Event.Type() != f.Type || !f.Since.IsZero() && idTime(e.ID).Before(f.Since.Truncate(time.Millisecond)) {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) == f.Limit {
				return false
			}
		}
		return true
	}
	if len(f.IDs) > 0 {
		ids, err := sortedIDs(f.IDs)
		if err != nil {
			return nil, err
		}
		pipe := a.rdb.Pipeline()
		cmds := make([]*goredis.XMessageSliceCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.XRange(ctx, a.keys[1], id, id)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redis: read dead letters: %w", err)
		}
		for _, c := range cmds {
			if !keep(c.Val()) {
				break
			}
		}
		return out, nil
	}
	start := "-"
	if !f.Since.IsZero() {
		start = strconv.FormatInt(max(f.Since.UnixMilli(), 0), 10)
	}
	for {
		msgs, err := a.rdb.XRangeN(ctx, a.keys[1], start, "+", deadLetterPage).Result()
		if err != nil {
			return nil, fmt.Errorf("redis: read dead letters: %w", err)
		}
		if !keep(msgs) || len(msgs) < deadLetterPage {
			return out, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// DeadLetterEntry returns the dead letter with entry id id, or an error matching
// [ErrNoDeadLetter] when the dead-letter stream does not hold it.
func (a *Admin) DeadLetterEntry(ctx context.Context, id string) (DeadLetterEntry, error) {
	if err := checkEntryID(id); err != nil {
		return DeadLetterEntry{}, err
	}
	msgs, err := a.rdb.XRange(ctx, a.keys[1], id, id).Result()
	if err != nil {
		return DeadLetterEntry{}, fmt.Errorf("redis: read dead letter %s: %w", id, err)
	}
	if len(msgs) == 0 {
		return DeadLetterEntry{}, fmt.Errorf("%w: %s is not in %s", ErrNoDeadLetter, id, a.cfg.DeadLetterStream)
	}
	return deadLetterEntry(msgs[0]), nil
}

func deadLetterEntry(m goredis.XMessage) DeadLetterEntry {
	e := DeadLetterEntry{ID: m.ID, DeadLetter: decodeDeadLetter(m.Values), Fields: make(map[string]string, len(m.Values))}
	for k, v := range m.Values {
		s, _ := v.(string)
		e.Fields[k] = s
	}
	e.Size, _ = strconv.Atoi(e.Fields["size"])
	return e
}

// ReplayOptions says how [Admin.Replay] enqueues a dead letter's event again.
type ReplayOptions struct {
	// EveryOrgan hands the event to every organ that listens to its type. By default it
	// goes only to the organ that gave up on it, when the dead letter names one, so that
	// the organs that handled it fine do not handle it twice.
	EveryOrgan bool
	// Targets re-targets the event: it goes to these organs instead (EveryOrgan then
	// does not apply). An operator re-targets a dead letter whose organ was renamed or
	// removed since.
	Targets []string
	// Unchecked replays without asking the group's roster whether a live worker mounts
	// the organs the event goes to (see [Admin.CheckReplay]).
	Unchecked bool
}

// ReplayEvent returns the event [Admin.Replay] enqueues for e: e's event with its
// original id, type, timestamp and payload, and its lineage (correlation and causation
// ids, depth, and the trace context it was created in, which links the replay to the
// original trace), with attempt 1 so that the retry policy starts afresh. Its targets
// are the organ that gave up on it when the dead letter names one that made attempts
// (a handler failure); otherwise, as for a child cut by the depth budget, one the store
// refused or one delivered too often, the targets the event had (usually none: every
// organ that listens). opts.EveryOrgan clears the targets. It returns an error matching
// [ErrNotReplayable] when e's event cannot be decoded.
func (e DeadLetterEntry) ReplayEvent(opts ReplayOptions) (necro.Event, error) {
	if e.Event.IsZero() {
		return necro.Event{}, fmt.Errorf("%w: %s: %s", ErrNotReplayable, e.ID, firstLine(e.Error))
	}
	m := e.Event.Meta()
	m.Attempt = 1
	switch {
	case len(opts.Targets) > 0:
		m.Targets = slices.Clone(opts.Targets)
	case opts.EveryOrgan:
		m.Targets = nil
	case e.Organ != "" && e.Attempts > 0:
		m.Targets = []string{e.Organ}
	}
	ev, err := e.Event.WithMeta(m)
	if err != nil {
		return necro.Event{}, fmt.Errorf("%w: %s: %w", ErrNotReplayable, e.ID, err)
	}
	return ev, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Replay enqueues the event of the dead letter with entry id id again, as
// [DeadLetterEntry.ReplayEvent] makes it, at the tail of the stream, and deletes the
// dead letter: both in one script, and only if the dead letter is still there, so a
// replay that runs twice, or two operators replaying at once, enqueue the event once.
// It returns the new stream entry's id, or "" when the dead letter is not there any
// more (replayed or purged already): nothing was enqueued then. An event that cannot be
// decoded is not replayed: the error matches [ErrNotReplayable] and nothing changes.
// The stream's Capacity does not apply: the operator asked for this event. Unless
// opts.Unchecked, an event that no live worker of the group would handle is not
// replayed either: the error matches [ErrNoLiveOrgan] and names the organ or type.
func (a *Admin) Replay(ctx context.Context, id string, opts ReplayOptions) (string, error) {
	e, err := a.DeadLetterEntry(ctx, id)
	if errors.Is(err, ErrNoDeadLetter) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	ev, err := e.ReplayEvent(opts)
	if err != nil {
		return "", err
	}
	if !opts.Unchecked {
		if err := a.CheckReplay(ctx, ev); err != nil {
			return "", fmt.Errorf("dead letter %s: %w", id, err)
		}
	}
	// The stored text is enqueued as it is (it decoded fine): an entry written by
	// Python keeps its exact form. The metadata is the replay's own.
	newID, err := replayScript.Run(ctx, a.rdb, []string{a.keys[1], a.keys[0]}, id, e.Fields["event"], ev.Meta().AppendJSON(nil)).Text()
	if errors.Is(err, goredis.Nil) {
		return "", nil // replayed or purged between the read and the script
	}
	if err != nil {
		return "", fmt.Errorf("redis: replay dead letter %s: %w", id, err)
	}
	return newID, nil
}

// replayScript moves one dead letter's event back to the stream. KEYS: dead-letter
// stream, stream. ARGV: dead-letter entry id, its event field as read, the meta of the
// copy. It returns the new entry's id, or nil when the dead letter is gone. Entry ids
// are never reused, so the comparison of the event only guards against a dead-letter
// stream deleted and written again in between.
var replayScript = goredis.NewScript(`
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local f, ev = e[1][2], nil
for i = 1, #f, 2 do
  if f[i] == 'event' then ev = f[i + 1] end
end
if ev ~= ARGV[2] then return redis.error_reply('CHANGED dead letter ' .. ARGV[1] .. ' is not the one read') end
local id = redis.call('XADD', KEYS[2], '*', 'event', ARGV[2], 'meta', ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
`)

// PurgeDeadLetters deletes the dead letters with the given entry ids and returns how
// many it deleted; ids the stream does not hold are not counted.
func (a *Admin) PurgeDeadLetters(ctx context.Context, ids []string) (int, error) {
	ids, err := sortedIDs(ids)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for chunk := range slices.Chunk(ids, deadLetterPage) {
		n, err := a.rdb.XDel(ctx, a.keys[1], chunk...).Result()
		deleted += int(n)
		if err != nil {
			return deleted, fmt.Errorf("redis: purge dead letters: %w", err)
		}
	}
	return deleted, nil
}

// Drop deletes the stream with all its groups, the dead-letter stream and the delayed
// retries: everything the store keeps in Redis. It is meant for throwaway streams, such
// as a benchmark's.
func (a *Admin) Drop(ctx context.Context) error {
	if err := a.rdb.Del(ctx, a.keys...).Err(); err != nil {
		return fmt.Errorf("redis: drop %s: %w", a.cfg.Stream, err)
	}
	return nil
}

// checkEntryID checks a stream entry id: "<ms>-<seq>", or "<ms>" for "<ms>-0".
func checkEntryID(id string) error {
	ms, seq, hasSeq := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return fmt.Errorf("redis: %q is not a stream entry id (want <milliseconds>-<sequence>)", id)
	}
	if _, err := strconv.ParseUint(seq, 10, 64); hasSeq && err != nil {
		return fmt.Errorf("redis: %q is not a stream entry id (want <milliseconds>-<sequence>)", id)
	}
	return nil
}

// sortedIDs checks ids and returns them in stream order, without repeats.
func sortedIDs(ids []string) ([]string, error) {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if err := checkEntryID(id); err != nil {
			return nil, err
		}
		if !strings.Contains(id, "-") {
			id += "-0"
		}
		out = append(out, id)
	}
	slices.SortFunc(out, func(x, y string) int {
		switch {
		case idLess(x, y):
			return -1
		case idLess(y, x):
			return 1
		}
		return 0
	})
	return slices.Compact(out), nil
}

// idTime returns the time a stream entry id was made at.
func idTime(id string) time.Time {
	ms, _ := splitID(id)
	return time.UnixMilli(int64(ms)).UTC()
}
