package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
)

var _ backend.Roster = (*Backend)(nil)

// The roster of a group is one hash, <stream>:workers:<group>: a field per worker (its
// consumer name) holding {"seen":<ms>,"organs":{organ:[types]}}, where seen is the
// Redis server's clock at the worker's last heartbeat. The server's clock, not the
// workers', decides who is live, so workers whose clocks disagree still agree on that.

// rosterKey is the hash that holds the announcements of the group's workers.
func rosterKey(stream, group string) string { return stream + ":workers:" + group }

// rosterRetain is how long a member that stopped heartbeating stays in the hash, seen by
// inspect as gone, before a heartbeat removes it; the whole hash expires as long after
// the last heartbeat of any worker.
func (c Config) rosterRetain() time.Duration { return 10 * c.MemberTimeout }

// heartbeatScript writes this worker's announcement (unless ARGV[2] is empty) with the
// server's time, removes the members gone longer than ARGV[3] ms, and returns the
// server's time in ms and the remaining fields and values. KEYS: the roster hash. ARGV:
// this worker's name, its announcement as a JSON object without "seen", retain ms.
var heartbeatScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, body, retain = KEYS[1], ARGV[2], tonumber(ARGV[3])
if body ~= '' then
  redis.call('HSET', key, ARGV[1], string.format('{"seen":%d,', now) .. string.sub(body, 2))
end
local all = redis.call('HGETALL', key)
local out = {}
for i = 1, #all, 2 do
  local seen = tonumber(string.match(all[i + 1], '^{"seen":(%d+)'))
  if seen == nil or now - seen > retain then
    redis.call('HDEL', key, all[i])
  else
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
  end
end
if body ~= '' then redis.call('PEXPIRE', key, retain) end
return {string.format('%d', now), out}
`)

// rosterReadScript returns the server's time in ms and the roster's fields and values,
// changing nothing, for operators' tools. KEYS: the roster hash.
var rosterReadScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {string.format('%d', now), redis.call('HGETALL', KEYS[1])}
`)

// announcement is a roster entry as stored.
type announcement struct {
	Seen   int64               `json:"seen,omitempty"`
	Organs map[string][]string `json:"organs"`
}

// A Worker is one entry of a group's roster, as [Admin.Inspect] reports it.
type Worker struct {
	Name   string
	Organs []backend.OrganRoutes // sorted by organ name
	Seen   time.Time             // its last heartbeat, by the Redis server's clock
	Age    time.Duration         // since its last heartbeat
	Live   bool                  // its last heartbeat is at most MemberTimeout old
	// Problem says why the entry cannot be read, when it cannot: it was not written by
	// a necro worker. Such an entry is never live.
	Problem string
}

// parseRoster reads the reply of heartbeatScript or rosterReadScript into workers,
// sorted by name. An entry that cannot be read is a Worker with a Problem.
func parseRoster(raw []any, timeout time.Duration) (now time.Time, ws []Worker, err error) {
	if len(raw) != 2 {
		return time.Time{}, nil, fmt.Errorf("redis: roster script answered %v", raw)
	}
	s, _ := raw[0].(string)
	ms, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil {
		return time.Time{}, nil, fmt.Errorf("redis: roster script answered a time of %q", s)
	}
	now = time.UnixMilli(ms).UTC()
	fields, _ := raw[1].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		var a announcement
		if err := json.Unmarshal([]byte(val), &a); err != nil || a.Seen <= 0 {
			ws = append(ws, Worker{Name: name, Problem: fmt.Sprintf("unreadable roster entry %q", clipText(val, 64))})
			continue
		}
		w := Worker{Name: name, Seen: time.UnixMilli(a.Seen).UTC()}
		w.Age = max(now.Sub(w.Seen), 0)
		w.Live = w.Age <= timeout
		for organ, types := range a.Organs {
			w.Organs = append(w.Organs, backend.OrganRoutes{Organ: organ, Types: types})
		}
		slices.SortFunc(w.Organs, func(x, y backend.OrganRoutes) int { return cmp.Compare(x.Organ, y.Organ) })
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(x, y Worker) int { return cmp.Compare(x.Name, y.Name) })
	return now, ws, nil
}

// Announce publishes the organs this worker mounts on the group's roster, with a
// heartbeat every Heartbeat until [Backend.Withdraw] or [Backend.Close]. Other workers
// of the group then hand this one the events only it routes. The announcement is kept
// even when writing it fails now (the error says why): the next heartbeat writes it.
func (b *Backend) Announce(ctx context.Context, organs []backend.OrganRoutes) error {
	if !b.enter() {
		return backend.ErrClosed
	}
	defer b.inflight.RUnlock()
	a := announcement{Organs: make(map[string][]string, len(organs))}
	for _, o := range organs {
		types := slices.Clone(o.Types)
		slices.Sort(types)
		a.Organs[o.Organ] = slices.Compact(types)
	}
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("redis: announce: %w", err)
	}
	b.mu.Lock()
	b.announced = string(body)
	b.mu.Unlock()
	if err := b.heartbeat(ctx); err != nil {
		return fmt.Errorf("redis: announce on %s: %w", rosterKey(b.cfg.Stream, b.cfg.Group), err)
	}
	b.log.InfoContext(ctx, "announced on the group's roster", slog.Int("organs", len(organs)))
	return nil
}

// Withdraw removes this worker from the group's roster: others no longer hand it
// events. It stops the heartbeat.
func (b *Backend) Withdraw(ctx context.Context) error {
	if !b.enter() {
		return backend.ErrClosed
	}
	defer b.inflight.RUnlock()
	return b.withdraw(ctx)
}

func (b *Backend) withdraw(ctx context.Context) error {
	b.mu.Lock()
	was := b.announced != ""
	b.announced = ""
	b.mu.Unlock()
	if !was {
		return nil
	}
	if err := b.rdb.HDel(ctx, rosterKey(b.cfg.Stream, b.cfg.Group), b.cfg.Consumer).Err(); err != nil {
		return fmt.Errorf("redis: withdraw from the roster: %w", err)
	}
	return nil
}

// Roll reads the live workers of the group from Redis.
func (b *Backend) Roll(ctx context.Context) (backend.Roll, error) {
	if !b.enter() {
		return backend.Roll{}, backend.ErrClosed
	}
	defer b.inflight.RUnlock()
	roll, err := b.readRoll(ctx, "")
	if err != nil {
		return backend.Roll{}, fmt.Errorf("redis: read the roster: %w", err)
	}
	return roll, nil
}

// heartbeat renews this worker's announcement, when it made one.
func (b *Backend) heartbeat(ctx context.Context) error {
	b.mu.Lock()
	body := b.announced
	b.mu.Unlock()
	if body == "" {
		return nil
	}
	_, err := b.readRoll(ctx, body)
	return err
}

// readRoll runs heartbeatScript, writing body as this worker's entry unless it is
// empty, and returns the live members it read. At is when the read was sent.
func (b *Backend) readRoll(ctx context.Context, body string) (backend.Roll, error) {
	at := time.Now()
	raw, err := heartbeatScript.Run(ctx, b.rdb, []string{rosterKey(b.cfg.Stream, b.cfg.Group)},
		b.cfg.Consumer, body, b.cfg.rosterRetain().Milliseconds()).Slice()
	if err != nil {
		return backend.Roll{}, err
	}
	_, ws, err := parseRoster(raw, b.cfg.MemberTimeout)
	roll := backend.Roll{At: at}
	for _, w := range ws {
		if w.Live {
			roll.Members = append(roll.Members, backend.Member{Name: w.Name, Self: w.Name == b.cfg.Consumer, Organs: w.Organs, Seen: w.Seen})
		}
	}
	return roll, err
}

// beating reports whether this worker has announced itself and so heartbeats.
func (b *Backend) beating() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.announced != ""
}

// handoffScript passes an entry this consumer holds to another consumer, unhandled,
// with an idle time that makes the receiver adopt it at its next look (see adopt), and
// without counting a delivery. KEYS: stream. ARGV: group, this consumer, the receiver,
// the entry id, idle ms. It returns {status, detail} as the settle script does: OK,
// GONE or STOLEN.
var handoffScript = goredis.NewScript(`
local stream, group, id = KEYS[1], ARGV[1], ARGV[4]
local p = redis.call('XPENDING', stream, group, id, id, 1)
if #p == 0 then return {'GONE', id} end
if p[1][2] ~= ARGV[2] then return {'STOLEN', p[1][2]} end
redis.call('XCLAIM', stream, group, ARGV[3], 0, id, 'IDLE', ARGV[5], 'JUSTID')
return {'OK', ''}
`)

// handoffIdle is the idle time a handed-off entry starts with, and the idle time from
// which a worker adopts entries pending to it that it does not hold. It is below
// ClaimAfter, so no other consumer claims the entry before its receiver adopts it,
// unless the receiver died; then the entry is claimed as any dead consumer's is.
func (c Config) handoffIdle() time.Duration { return max(c.ClaimAfter/2, time.Millisecond) }

// handoff settles one delivery as a Handoff to st.To.
func (b *Backend) handoff(ctx context.Context, st backend.Settlement, h *holding) error {
	if st.To == "" || st.To == b.cfg.Consumer {
		return fmt.Errorf("redis: handoff of %s to %q: the receiver must be another worker", h.id, st.To)
	}
	raw, err := handoffScript.Run(ctx, b.rdb, b.keys[:1], b.cfg.Group, b.cfg.Consumer, st.To, h.id,
		b.cfg.handoffIdle().Milliseconds()).StringSlice()
	if err != nil {
		return fmt.Errorf("redis: handoff of %s to %q: %w", h.id, st.To, err)
	}
	if len(raw) != 2 {
		return fmt.Errorf("redis: handoff script answered %v", raw)
	}
	b.mu.Lock()
	if raw[0] == "OK" || raw[0] == "GONE" || raw[0] == "STOLEN" {
		b.drop(h) // not ours any more, either way
	}
	b.mu.Unlock()
	if raw[0] != "OK" {
		return settleResult{status: raw[0], detail: raw[1]}.err(b, 0)
	}
	b.counts.handedOff.Add(1)
	return nil
}

// adoptScript takes over the given entries that are still pending to this consumer, as
// a handoff leaves them, and returns them with their fields, as pendingScript does: an
// entry deleted while pending is acked and dead-lettered with the reason, one over
// MaxEntryBytes is buried, and it stops before an entry that would pass the budget.
// KEYS: stream, dead-letter stream. ARGV as luaBounds says, then the ids. It returns
// {{{id, fields, deliveries}...}, {deleted ids}, {{id, size} buried...}, dead letters
// trimmed, ids examined}.
var adoptScript = goredis.NewScript(luaBounds + `
local out, deleted, used, j = {}, {}, 0, 9
while j <= #ARGV do
  local id = ARGV[j]
  local p = redis.call('XPENDING', B.stream, B.group, id, id, 1)
  if p[1] and p[1][2] == B.consumer then
    local n = p[1][4] + 1
    local m = redis.call('XRANGE', B.stream, id, id)[1]
    if not m then
      redis.call('XACK', B.stream, B.group, id)
      redis.call('XADD', B.dlq, '*', 'original_id', id, 'event', '{}',
        'reason', 'entry deleted from the stream while pending', 'failed_at', B.at)
      table.insert(deleted, id)
    else
      local s = entrysize(m[2])
      if s > B.max then
        bury(id, m[2], s, n)
      elseif used + s > B.budget and #out > 0 then
        break
      else
        used = used + s
        redis.call('XCLAIM', B.stream, B.group, B.consumer, 0, id, 'RETRYCOUNT', n, 'JUSTID')
        table.insert(out, {id, m[2], n})
      end
    end
  end
  j = j + 1
end
return {out, deleted, B.buried, B.trimmed, j - 9}
`)

// adopt takes in the entries other workers handed to this one: pending to it, idle at
// least handoffIdle, and not held here. They wait first in line for the next Pull. It
// takes at most MaxPullBytes of them at a time, and looks again at once while more wait,
// up to adoptRounds times.
func (b *Backend) adopt(ctx context.Context) error {
	for range adoptRounds {
		ps, err := b.rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: b.cfg.Stream, Group: b.cfg.Group,
			Idle: b.cfg.handoffIdle(), Start: "-", End: "+", Count: 1000, Consumer: b.cfg.Consumer}).Result()
		if b.noGroup(ctx, err) {
			return nil
		}
		if err != nil {
			return err
		}
		var ids []any
		b.mu.Lock()
		for _, p := range ps {
			if b.held[p.ID] == nil {
				ids = append(ids, p.ID)
			}
		}
		b.mu.Unlock()
		if len(ids) == 0 {
			return nil
		}
		raw, err := b.runBounded(ctx, adoptScript, append(b.boundArgs(len(ids), b.cfg.MaxPullBytes), ids...))
		if err != nil {
			return err
		}
		if len(raw) != 5 {
			return fmt.Errorf("redis: adopt script answered %s", clipText(fmt.Sprint(raw), textMax))
		}
		msgs, deleted, err := parseClaimed(raw[0], raw[1])
		if err != nil {
			return err
		}
		trimmed, _ := raw[3].(int64)
		b.buried(ctx, raw[2], trimmed)
		b.lostWhilePending(ctx, deleted)
		if n := b.holdFirst(b.accept(ctx, msgs)); n > 0 {
			b.counts.adopted.Add(int64(n))
			b.log.DebugContext(ctx, "adopted entries handed over by other workers", slog.Int("entries", n))
		}
		examined, _ := raw[4].(int64)
		if int(examined) == len(ids) && len(ps) < 1000 {
			return nil
		}
	}
	return nil
}

// adoptRounds bounds the rounds of one adopt, so that the maintenance loop goes on to
// its other work; what is left is adopted at the next look.
const adoptRounds = 16

// holdFirst puts deliveries that accept just handed out back first in line, unhandled,
// for the next Pull to hand out, and returns how many.
func (b *Backend) holdFirst(ds []backend.Delivery) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range ds {
		h := b.held[entryID(d.Receipt)]
		h.state = stateReleased
		h.deliveries-- // handOut counts the delivery again
		b.released = append(b.released, h)
	}
	return len(ds)
}

// workers reads a group's roster without changing it.
func (a *Admin) workers(ctx context.Context, group string) ([]Worker, error) {
	raw, err := rosterReadScript.Run(ctx, a.rdb, []string{rosterKey(a.cfg.Stream, group)}).Slice()
	if err != nil {
		return nil, fmt.Errorf("read the roster of group %q: %w", group, err)
	}
	_, ws, err := parseRoster(raw, a.cfg.MemberTimeout)
	return ws, err
}

// Workers returns the roster of the configured group: every worker that announced the
// organs it mounts, live or gone lately, sorted by name.
func (a *Admin) Workers(ctx context.Context) ([]Worker, error) {
	ws, err := a.workers(ctx, a.cfg.Group)
	if err != nil {
		return ws, fmt.Errorf("redis: %w", err)
	}
	return ws, nil
}

// CheckReplay tells whether a live worker of the group would handle ev, replayed: each
// organ it is targeted at is mounted, listening to its type, by a live worker of the
// roster, or, untargeted, some live worker listens to its type. The error matches
// [ErrNoLiveOrgan] and names what is missing.
func (a *Admin) CheckReplay(ctx context.Context, ev necro.Event) error {
	ws, err := a.Workers(ctx)
	if err != nil {
		return err
	}
	serves := func(organ string) bool {
		for _, w := range ws {
			for _, o := range w.Organs {
				if w.Live && (organ == "" || o.Organ == organ) && slices.Contains(o.Types, ev.Type()) {
					return true
				}
			}
		}
		return false
	}
	live := 0
	for _, w := range ws {
		if w.Live {
			live++
		}
	}
	hint := fmt.Sprintf("%d live workers on the roster of group %q", live, a.cfg.Group)
	if live == 0 {
		hint = fmt.Sprintf("no live worker has announced itself in group %q (workers from before necro had a roster never do)", a.cfg.Group)
	}
	targets := ev.Meta().Targets
	if len(targets) == 0 {
		if !serves("") {
			return fmt.Errorf("%w: no live worker has an organ listening to type %q; %s", ErrNoLiveOrgan, ev.Type(), hint)
		}
		return nil
	}
	var missing []string
	for _, t := range targets {
		if !serves(t) {
			missing = append(missing, strconv.Quote(t))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: no live worker mounts organ %s listening to type %q; %s", ErrNoLiveOrgan,
			strings.Join(missing, ", "), ev.Type(), hint)
	}
	return nil
}
