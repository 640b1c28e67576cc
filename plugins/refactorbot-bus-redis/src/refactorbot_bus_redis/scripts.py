"""The two Lua scripts of the bus; each runs atomically in Redis.

``PUBLISH``  KEYS: stream, seq, floor.  ARGV: max_len, max_unacked, check, publish id, topic,
             payload, source, published_at, traceparent (``''``: none).
    Gives the event the next offset (``seq`` + 1) and appends it with the ID ``<offset>-0``, so a
    stream ID is the event's offset. ``MAXLEN ~ keep`` trims on the way, with ``keep`` the larger
    of ``max_len`` and the number of entries from the stored floor (the oldest entry some group
    still needs) to the new one: an entry a group has not acknowledged is never trimmed. A floor
    that is stale is lower than the real one, so it only keeps more. Refused (``{-1, group,
    unacked}``) when the slowest group would hold ``max_unacked`` entries. With ``check`` = 1 (a
    retry after a lost reply) the newest 1000 entries are searched for the publish id first, so a
    retried publish that was stored returns its offset instead of storing the event twice.
    Returns ``{1, id}`` stored, ``{0, id}`` already stored.

``TRIM``  KEYS: stream, seq, floor.  ARGV: max_len, now.
    Computes the floor: for each consumer group, its oldest pending entry, or the entry after its
    last delivered one when nothing is pending; the lowest of those. Stores it (with the group
    that holds it) for ``PUBLISH``, then ``XTRIM MAXLEN ~`` to the larger of ``max_len`` and the
    entries from the floor on. Returns ``{floor, group, trimmed, last offset}``.
"""

from __future__ import annotations

PUBLISH = """
local stream, seqkey, floorkey = KEYS[1], KEYS[2], KEYS[3]
if ARGV[3] == '1' then
  local recent = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1000)
  for _, entry in ipairs(recent) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'p' then
        if f[i + 1] == ARGV[4] then return {0, entry[1]} end
        break
      end
    end
  end
end
local nxt = tonumber(redis.call('GET', seqkey) or '0') + 1
local floor = tonumber(redis.call('HGET', floorkey, 'offset') or '0')
if floor > nxt then floor = 0 end
local keep = nil
if floor > 0 then
  local unacked = nxt - floor
  if unacked >= tonumber(ARGV[2]) then
    return {-1, redis.call('HGET', floorkey, 'group') or '', unacked}
  end
  keep = math.max(tonumber(ARGV[1]), unacked + 1)
end
local fields = {'t', ARGV[5], 'd', ARGV[6], 'at', ARGV[8], 'p', ARGV[4]}
if ARGV[7] ~= '' then
  fields[#fields + 1] = 's'
  fields[#fields + 1] = ARGV[7]
end
if ARGV[9] and ARGV[9] ~= '' then
  fields[#fields + 1] = 'tp'
  fields[#fields + 1] = ARGV[9]
end
local function add(offset)
  if keep then
    return redis.pcall('XADD', stream, 'MAXLEN', '~', keep, offset .. '-0', unpack(fields))
  end
  return redis.pcall('XADD', stream, offset .. '-0', unpack(fields))
end
local id = add(nxt)
if type(id) == 'table' and id.err then
  if not string.find(id.err, 'equal or smaller') then return id end
  -- The counter is behind the stream (it was lost or reset): continue after the stream's last ID.
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      nxt = tonumber(string.match(info[i + 1], '^(%d+)')) + 1
    end
  end
  id = add(nxt)
  if type(id) == 'table' and id.err then return id end
end
redis.call('SET', seqkey, nxt)
return {1, id}
"""

TRIM = """
local stream, seqkey, floorkey = KEYS[1], KEYS[2], KEYS[3]
local last = tonumber(redis.call('GET', seqkey) or '0')
if redis.call('EXISTS', stream) == 0 then
  redis.call('HSET', floorkey, 'offset', last + 1, 'group', '', 'at', ARGV[2])
  return {last + 1, '', 0, last}
end
local floor, holder = last + 1, ''
local groups = redis.call('XINFO', 'GROUPS', stream)
for _, g in ipairs(groups) do
  local name, pending, delivered = nil, 0, '0-0'
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1]
    elseif g[i] == 'pending' then pending = tonumber(g[i + 1])
    elseif g[i] == 'last-delivered-id' then delivered = g[i + 1] end
  end
  local need
  if pending > 0 then
    local summary = redis.call('XPENDING', stream, name)
    need = tonumber(string.match(summary[2], '^(%d+)'))
  else
    need = tonumber(string.match(delivered, '^(%d+)')) + 1
  end
  if need < floor then
    floor, holder = need, name
  end
end
redis.call('HSET', floorkey, 'offset', floor, 'group', holder, 'at', ARGV[2])
local keep = math.max(tonumber(ARGV[1]), last - floor + 1)
local trimmed = redis.call('XTRIM', stream, 'MAXLEN', '~', keep)
return {floor, holder, trimmed, last}
"""
