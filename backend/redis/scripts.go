package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts run atomically inside Redis. Each is loaded once per connection
// (EVALSHA, falling back to EVAL when Redis has forgotten it after a restart).
//
// Shared pieces: idlt compares two stream ids; trim removes the entries every group
// has acknowledged, never one that some group still needs.
//
// Ids are compared and stepped as decimal text, never as Lua numbers: each part goes up
// to 2^64-1, and a double holds integers exactly only up to 2^53, so a rounded id would
// trim entries a group has not read, or name an id Redis refuses.
const luaShared = `
-- num returns the digits of n without leading zeros ('0' for zero).
local function num(n)
  local s = string.gsub(n, '^0+', '')
  if s == '' then return '0' end
  return s
end
local function idparts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return num(ms), num(seq)
end
-- numlt compares two numbers written by num: the shorter is the smaller, and digits of
-- equal length compare byte by byte (not with <, which follows the server's locale).
local function numlt(a, b)
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
local function idlt(a, b)
  local am, as = idparts(a)
  local bm, bs = idparts(b)
  if am ~= bm then return numlt(am, bm) end
  return numlt(as, bs)
end
-- succ returns the number after n, written by num.
local function succ(n)
  local i = #n
  while i > 0 and string.byte(n, i) == 57 do i = i - 1 end -- 57 is '9'
  if i == 0 then return '1' .. string.rep('0', #n) end
  return string.sub(n, 1, i - 1) .. string.char(string.byte(n, i) + 1) .. string.rep('0', #n - i)
end
local idmax = '18446744073709551615' -- 2^64-1, the largest part of an id
-- nextid returns the id right after id: the sequence part plus one, or, after the
-- largest sequence, the next millisecond's first id. nil after the largest id.
local function nextid(id)
  local ms, seq = idparts(id)
  if seq ~= idmax then return ms .. '-' .. succ(seq) end
  if ms == idmax then return nil end
  return succ(ms) .. '-0'
end
-- The lowest id some group has not acknowledged: for each group its oldest pending
-- entry, or the entry after the last one it read. nil when no group reads the stream,
-- or none can read anything more (each read up to the largest id there can be).
local function needed(stream)
  local low
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    local cand
    if tonumber(f['pending']) > 0 then
      cand = redis.call('XPENDING', stream, f['name'])[2]
    else
      cand = nextid(f['last-delivered-id'])
    end
    if cand ~= nil and (low == nil or idlt(cand, low)) then low = cand end
  end
  return low
end
local function trim(stream)
  if redis.call('EXISTS', stream) == 0 then return 0 end
  local low = needed(stream)
  if low == nil then return 0 end
  return redis.call('XTRIM', stream, 'MINID', low)
end
`

// settleScript applies a batch of operations in order and stops at the first that
// cannot be applied. KEYS: stream, dead-letter stream, delayed set. ARGV: group,
// consumer, capacity (0: none), dead-letter bound (0: none), then per operation:
//
//	id ack nEntries (event meta)*n nDelayed (score member)*d nDead (10 fields)*k
//
// id is the stream entry settled ("" when the operation only adds, as Enqueue does);
// ack is "1" to acknowledge it. The ten dead-letter fields are original_id, event,
// reason, failed_at, organ, attempts, error, meta, receipt and size, the last written
// only when not empty (a poison entry's, whose text the dead letter keeps in part). It
// returns {applied, status, detail, dead letters trimmed, entries trimmed}; status is
// OK, FULL (no room), GONE (the entry is pending nowhere) or STOLEN (another consumer
// holds it; detail names it).
var settleScript = goredis.NewScript(luaShared + `
local stream, dlq, delayed = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local cap, dlqmax = tonumber(ARGV[3]), tonumber(ARGV[4])
local i, applied, dlqtrimmed, trimmed, tried = 5, 0, 0, 0, false
while i <= #ARGV do
  local id, ack = ARGV[i], ARGV[i + 1] == '1'
  local n = tonumber(ARGV[i + 2])
  local e0 = i + 3
  local d = tonumber(ARGV[e0 + 2 * n])
  local d0 = e0 + 2 * n + 1
  local k = tonumber(ARGV[d0 + 2 * d])
  local k0 = d0 + 2 * d + 1
  if cap > 0 and n + d > 0 then
    local size = redis.call('XLEN', stream) + redis.call('ZCARD', delayed)
    if size + n + d > cap and not tried then
      tried = true
      trimmed = trimmed + trim(stream)
      size = redis.call('XLEN', stream) + redis.call('ZCARD', delayed)
    end
    if size + n + d > cap then return {applied, 'FULL', tostring(size), dlqtrimmed, trimmed} end
  end
  -- The ack goes before the writes: the script is atomic, so the order inside it is not seen by
  -- anyone, and XACK's answer tells whether the entry is still pending. An entry that
  -- another consumer claimed meanwhile is acked here; that consumer's own settle then
  -- finds it gone and writes nothing, so one set of children is written, not two.
  if ack then
    if redis.call('XACK', stream, group, id) == 0 then return {applied, 'GONE', id, dlqtrimmed, trimmed} end
  elseif id ~= '' then
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    if #p == 0 then return {applied, 'GONE', id, dlqtrimmed, trimmed} end
    if p[1][2] ~= consumer then return {applied, 'STOLEN', p[1][2], dlqtrimmed, trimmed} end
  end
  for j = 0, n - 1 do
    redis.call('XADD', stream, '*', 'event', ARGV[e0 + 2 * j], 'meta', ARGV[e0 + 2 * j + 1])
  end
  for j = 0, d - 1 do
    redis.call('ZADD', delayed, ARGV[d0 + 2 * j], ARGV[d0 + 2 * j + 1])
  end
  for j = 0, k - 1 do
    local f = k0 + 10 * j
    local add = {'XADD', dlq, '*', 'original_id', ARGV[f], 'event', ARGV[f + 1], 'reason', ARGV[f + 2],
      'failed_at', ARGV[f + 3], 'organ', ARGV[f + 4], 'attempts', ARGV[f + 5], 'error', ARGV[f + 6],
      'meta', ARGV[f + 7], 'receipt', ARGV[f + 8]}
    if ARGV[f + 9] ~= '' then
      table.insert(add, 'size')
      table.insert(add, ARGV[f + 9])
    end
    redis.call(unpack(add))
  end
  if k > 0 and dlqmax > 0 then
    dlqtrimmed = dlqtrimmed + redis.call('XTRIM', dlq, 'MAXLEN', dlqmax)
  end
  applied = applied + 1
  i = k0 + 10 * k
end
return {applied, 'OK', '', dlqtrimmed, trimmed}
`)

// luaBounds holds what the scripts that read entries share. entrysize measures an entry
// as MaxEntryBytes does: its field names and values together. cut returns the first n
// bytes of s, fewer when byte n+1 continues a UTF-8 character. bury dead-letters an
// entry over MaxEntryBytes and acks it; the dead letter keeps PoisonKeepBytes of its
// event and meta fields and its size. Each script first sets B from its ARGV, which
// begin with: group, consumer, failed_at, max entry bytes, keep bytes, dead-letter
// bound (0: none), byte budget, count.
const luaBounds = `
local B = {stream = KEYS[1], dlq = KEYS[2], group = ARGV[1], consumer = ARGV[2], at = ARGV[3],
  max = tonumber(ARGV[4]), keep = tonumber(ARGV[5]), dlqmax = tonumber(ARGV[6]),
  budget = tonumber(ARGV[7]), count = tonumber(ARGV[8]), trimmed = 0, buried = {}}
local function entrysize(f)
  local n = 0
  for i = 1, #f do n = n + #f[i] end
  return n
end
local function cut(s, n)
  if #s <= n then return s end
  local k = n
  while k > 0 and k > n - 3 do
    local c = string.byte(s, k + 1)
    if c < 128 or c >= 192 then break end
    k = k - 1
  end
  return string.sub(s, 1, k)
end
local function bury(id, f, size, deliveries)
  local ev, meta = '{}', ''
  for i = 1, #f, 2 do
    if f[i] == 'event' then ev = f[i + 1] elseif f[i] == 'meta' then meta = f[i + 1] end
  end
  local why = 'the entry holds ' .. size .. ' bytes, more than MaxEntryBytes (' .. B.max .. ') lets a valid event take'
  redis.call('XACK', B.stream, B.group, id)
  redis.call('XADD', B.dlq, '*', 'original_id', id, 'event', cut(ev, B.keep), 'reason', 'poison entry: ' .. why,
    'failed_at', B.at, 'organ', '', 'attempts', '0', 'error', why, 'meta', cut(meta, B.keep),
    'receipt', id .. '#' .. deliveries, 'size', size)
  if B.dlqmax > 0 then B.trimmed = B.trimmed + redis.call('XTRIM', B.dlq, 'MAXLEN', B.dlqmax) end
  table.insert(B.buried, {id, size})
end
`

// pendingScript takes over pending entries idle at least ARGV[9] ms: any consumer's
// (claims, in place of XAUTOCLAIM, which claims before anything can be measured), or
// with ARGV[11] = "own" this consumer's own (taken back at start, with 0 ms), or with
// "lost" this consumer's own delivered by a read whose reply did not arrive (whose
// delivery count stays: that delivery is the one handed out now), from the cursor
// ARGV[10] ("0-0" at the start of a scan; an id, or "(" and an id to start after it). It lists them with XPENDING, which sends no data, looking at ten times count
// entries at most for a claim, as XAUTOCLAIM does; then it reads each that is idle long
// enough alone with XRANGE: an entry deleted while pending is acked and dead-lettered
// with the reason, so none vanishes silently; one over MaxEntryBytes is buried; the
// others are claimed (XCLAIM JUSTID, the delivery counted with RETRYCOUNT) and
// returned, until count entries or budget bytes were examined. An entry that would pass
// the budget is left as it is, to start the next step of the scan. KEYS: stream,
// dead-letter stream; ARGV as luaBounds says, then min idle ms, cursor, "own" or "". It
// returns {next cursor ("0-0" when the scan is done), {{id, fields, deliveries}...},
// {deleted ids}, {{id, size} buried...}, dead letters trimmed}.
var pendingScript = goredis.NewScript(luaBounds + `
local idle, own = tonumber(ARGV[9]), ARGV[11] ~= ''
local again = 1 -- the delivery XCLAIM counts
if ARGV[11] == 'lost' then again = 0 end
local scan, p = B.count, nil
if own then
  p = redis.call('XPENDING', B.stream, B.group, ARGV[10], '+', scan, B.consumer)
else
  scan = 10 * B.count
  p = redis.call('XPENDING', B.stream, B.group, ARGV[10], '+', scan)
end
local out, deleted, taken, used, seen, nextc = {}, {}, 0, 0, 0, '0-0'
for i, e in ipairs(p) do
  local id, n = e[1], e[4] + again
  if taken >= B.count or seen >= B.budget then nextc = id break end
  if e[3] >= idle then
    taken = taken + 1
    local m = redis.call('XRANGE', B.stream, id, id)[1]
    if not m then
      redis.call('XACK', B.stream, B.group, id)
      table.insert(deleted, id)
    else
      local s = entrysize(m[2])
      if s > B.max then
        seen = seen + s
        bury(id, m[2], s, n)
      elseif used + s > B.budget then
        nextc = id
        break
      else
        seen, used = seen + s, used + s
        redis.call('XCLAIM', B.stream, B.group, B.consumer, idle, id, 'RETRYCOUNT', n, 'JUSTID')
        table.insert(out, {id, m[2], n})
      end
    end
  end
  if i == #p and #p == scan then nextc = '(' .. id end
end
for _, id in ipairs(deleted) do
  redis.call('XADD', B.dlq, '*', 'original_id', id, 'event', '{}', 'reason', 'entry deleted from the stream while pending',
    'failed_at', B.at)
end
if #deleted > 0 and B.dlqmax > 0 then B.trimmed = B.trimmed + redis.call('XTRIM', B.dlq, 'MAXLEN', B.dlqmax) end
if #B.buried > 0 then collectgarbage('collect') end
return {nextc, out, deleted, B.buried, B.trimmed}
`)

// refreshScript resets the idle time of the entries this consumer holds and still owns,
// so that no other consumer claims slow but live work. It never takes an entry back from
// another consumer, and it does not count as a delivery (JUSTID). KEYS: stream. ARGV:
// group, consumer, min idle ms, then the ids held. It returns how many it refreshed.
var refreshScript = goredis.NewScript(`
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local held = {}
for j = 4, #ARGV do held[ARGV[j]] = true end
local ids = {}
for _, e in ipairs(redis.call('XPENDING', stream, group, 'IDLE', ARGV[3], '-', '+', 100000, consumer)) do
  if held[e[1]] then table.insert(ids, e[1]) end
end
for s = 1, #ids, 1000 do
  local args = {'XCLAIM', stream, group, consumer, 0}
  for j = s, math.min(s + 999, #ids) do table.insert(args, ids[j]) end
  table.insert(args, 'JUSTID')
  redis.call(unpack(args))
end
return #ids
`)

// moveScript moves the retries that are due from the delayed set to the stream. KEYS:
// delayed set, stream, dead-letter stream. ARGV: now (ms), limit, failed_at, dead-letter
// bound (0: none), excerpt bytes. A member is token NUL event NUL meta; a member that is
// not (written by hand, or by another program) is dead-lettered instead, with a reason
// naming the problem and its size and, as its event, at most the excerpt bytes of it
// with each NUL written \0; it is taken out of the set either way, so that it never
// stops the retries behind it. It returns {taken, score of the next one or false,
// {reasons of the members dead-lettered}, dead letters trimmed}.
var moveScript = goredis.NewScript(`
local delayed, stream, dlq = KEYS[1], KEYS[2], KEYS[3]
local dlqmax, excerpt = tonumber(ARGV[4]), tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local bad, dlqtrimmed = {}, 0
for _, m in ipairs(due) do
  local a = string.find(m, '\0', 1, true)
  local b = a and string.find(m, '\0', a + 1, true)
  if b then
    redis.call('XADD', stream, '*', 'event', string.sub(m, a + 1, b - 1), 'meta', string.sub(m, b + 1))
  else
    local problem = 'it holds no NUL'
    if #m == 0 then problem = 'it is empty' elseif a then problem = 'it holds one NUL' end
    local kept = 'all kept as the event'
    if #m > excerpt then kept = 'the first ' .. excerpt .. ' kept as the event' end
    local reason = 'malformed member of the delayed set: ' .. problem ..
      ', where a retry is token NUL event NUL meta; ' .. #m .. ' bytes, ' .. kept
    local text = string.gsub(string.sub(m, 1, excerpt), '%z', '\\0')
    redis.call('XADD', dlq, '*', 'original_id', '', 'event', text, 'reason', reason, 'failed_at', ARGV[3])
    table.insert(bad, reason)
  end
  redis.call('ZREM', delayed, m)
end
if #bad > 0 and dlqmax > 0 then dlqtrimmed = redis.call('XTRIM', dlq, 'MAXLEN', dlqmax) end
local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false, bad, dlqtrimmed}
`)

// tidyScript trims the acknowledged entries (when ARGV[4] is "1") and removes the
// consumers of the group that have been idle longer than ARGV[3] ms (when positive)
// and hold nothing, never this one. KEYS: stream. ARGV: group, consumer, idle ms, trim.
// It returns {entries trimmed, {consumers removed}}.
var tidyScript = goredis.NewScript(luaShared + `
local stream, group, self = KEYS[1], ARGV[1], ARGV[2]
local idle = tonumber(ARGV[3])
local trimmed = 0
if ARGV[4] == '1' then trimmed = trim(stream) end
local gone = {}
if idle > 0 and redis.call('EXISTS', stream) == 1 then
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local f = {}
    for j = 1, #c, 2 do f[c[j]] = c[j + 1] end
    if f['name'] ~= self and tonumber(f['pending']) == 0 and tonumber(f['idle']) > idle then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, f['name'])
      table.insert(gone, f['name'])
    end
  end
end
return {trimmed, gone}
`)

// leaveScript removes this consumer from the group when it holds nothing. KEYS:
// stream. ARGV: group, consumer. It returns 1 when removed, 0 when entries are pending.
var leaveScript = goredis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// handBackScript makes entries this consumer holds but will not handle claimable at
// once by any other consumer, by setting their idle time far in the past. The entries
// keep their place in the stream and their delivery count. KEYS: stream. ARGV: group,
// consumer, idle ms, then the ids. It returns how many it handed back.
var handBackScript = goredis.NewScript(`
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local ids = {}
for j = 4, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[j], ARGV[j], 1)
  if p[1] and p[1][2] == consumer then table.insert(ids, ARGV[j]) end
end
for s = 1, #ids, 1000 do
  local args = {'XCLAIM', stream, group, consumer, 0}
  for j = s, math.min(s + 999, #ids) do table.insert(args, ids[j]) end
  table.insert(args, 'IDLE')
  table.insert(args, ARGV[3])
  table.insert(args, 'JUSTID')
  redis.call(unpack(args))
end
return #ids
`)

// enqueueScript adds one chunk of events at the tail of the stream, once. KEYS: stream,
// delayed set, the chunk's marker, then markers of earlier chunks to delete. ARGV:
// capacity (0: none), the room wanted (this chunk and the rest of its Enqueue call),
// the marker's lifetime in ms, then (event meta) per event.
//
// The marker records the chunk's fate the first time an attempt of it runs: a retry
// sent after a lost reply, or an attempt that reaches Redis after its own retry (it sat
// in a busy server's socket), finds it and applies nothing. It returns {status, detail,
// entries trimmed}: OK (added), FULL (no room; detail: the entries held), or SEEN
// (an earlier attempt ran; detail: its status, "OK" or "FULL <entries held>").
var enqueueScript = goredis.NewScript(luaShared + `
local stream, delayed, marker = KEYS[1], KEYS[2], KEYS[3]
-- The old markers go last: a first write turns off Redis's out-of-memory check for the
-- rest of a script, and the events must meet that check, not pass it unchecked.
local function forget()
  for j = 4, #KEYS do redis.call('DEL', KEYS[j]) end
end
local seen = redis.call('GET', marker)
if seen then
  forget()
  return {'SEEN', seen, 0}
end
local cap, want, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local trimmed = 0
if cap > 0 then
  local size = redis.call('XLEN', stream) + redis.call('ZCARD', delayed)
  if size + want > cap then
    trimmed = trim(stream)
    size = redis.call('XLEN', stream) + redis.call('ZCARD', delayed)
  end
  if size + want > cap then
    redis.call('SET', marker, 'FULL ' .. size, 'PX', ttl)
    forget()
    return {'FULL', tostring(size), trimmed}
  end
end
for j = 4, #ARGV, 2 do
  redis.call('XADD', stream, '*', 'event', ARGV[j], 'meta', ARGV[j + 1])
end
redis.call('SET', marker, 'OK', 'PX', ttl)
forget()
return {'OK', '', trimmed}
`)
