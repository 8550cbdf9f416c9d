"""The queue's multi-step changes as Lua scripts, so no interleaving loses or duplicates a task.

Every script declares all its keys, and every key of one call shares the queue's hash slot
(see :mod:`agentexec_redis.keys`), so the scripts run unchanged on Redis Cluster. Time comes from
the server (``TIME``), so consumers on machines with skewed clocks agree on lease expiry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

_COMMON = """
local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function bury(dead, seq, queue_name, now, raw, reason)
  local id = tostring(redis.call('INCR', seq))
  local record = cjson.encode({id = id, queue = queue_name, reason = reason,
                               payload = raw, failed_at = now})
  redis.call('RPUSH', dead, record)
  return record
end
"""


class Script:
    """A Lua script run by SHA (EVALSHA), loaded on first use on each server (EVAL)."""

    def __init__(self, body: str) -> None:
        self.body = _COMMON + body
        self.sha = hashlib.sha1(self.body.encode()).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.body, len(keys), *keys, *args)


#: KEYS: consumers. ARGV: consumer id. The consumer is alive now (server time).
HEARTBEAT = Script("""
redis.call('ZADD', KEYS[1], now_seconds(), ARGV[1])
return 1
""")

#: KEYS: consumers, dead. {server time, {consumer, last beat, ...}, dead-letter count}; time as
#: a string because Redis truncates Lua numbers to integers.
STATS = Script("""
return {tostring(now_seconds()), redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'),
        redis.call('LLEN', KEYS[2])}
""")

#: KEYS: consumers. ARGV: lease timeout. The consumers whose last heartbeat is older than it.
EXPIRED = Script("""
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now_seconds() - tonumber(ARGV[1])))
""")

#: KEYS: queue, consumers, inflight, dead, dead_seq.
#: ARGV: consumer id, lease timeout, max attempts, force ("1": reap even if alive), queue name.
#: Hands the consumer's in-flight tasks back to the FRONT of the queue (RPUSH, oldest first)
#: with attempts + 1, or dead-letters those whose attempts + 1 reach max attempts.
#: Returns {requeued payloads, dead-letter records}.
#:
#: In-flight payloads are always in the canonical form ``Envelope.model_dump_json()`` writes
#: (``reserve`` rewrites other forms), where the top-level ``"attempts":N`` is the one
#: followed by ``,"enqueued_at":``; a nested ``attempts`` inside ``context`` comes earlier,
#: so the greedy match below finds the top-level field.
REAP = Script("""
local now = now_seconds()
if ARGV[4] ~= '1' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if score and tonumber(score) > now - tonumber(ARGV[2]) then
    return {{}, {}}
  end
end
redis.call('ZREM', KEYS[2], ARGV[1])
local max_attempts = tonumber(ARGV[3])
local requeued, dead = {}, {}
while true do
  local raw = redis.call('RPOP', KEYS[3])
  if not raw then break end
  local head, n, tail = string.match(raw, '^(.*"attempts":)(%-?%d+)(,"enqueued_at":.*)$')
  if not head then
    table.insert(dead, bury(KEYS[4], KEYS[5], ARGV[5], now, raw,
      'lease expired and the in-flight payload is not a canonical task envelope'))
  else
    local attempts = tonumber(n) + 1
    if attempts >= max_attempts then
      table.insert(dead, bury(KEYS[4], KEYS[5], ARGV[5], now, raw, string.format(
        'lease expired %d times (max_attempts=%d): the worker running it stopped heartbeating',
        attempts, max_attempts)))
    else
      local again = head .. string.format('%d', attempts) .. tail
      redis.call('RPUSH', KEYS[1], again)
      table.insert(requeued, again)
    end
  end
end
return {requeued, dead}
""")

#: KEYS: queue, inflight, consumers. ARGV: how many, heartbeat ("1": record the consumer as
#: alive first, as HEARTBEAT does), consumer id. Moves up to that many payloads from the right
#: of the queue into the in-flight list, as that many ``LMOVE queue inflight RIGHT LEFT`` would
#: (one atomic step: each payload is either waiting or in flight), and returns them in the order
#: taken (an empty array when none wait).
#: the due members of a queue's delayed set, moved to its list: a member is "H:" or "L:" (its
#: priority) followed by the payload. KEYS: delayed set, queue list. Returns the next due time
#: (server seconds) of what is left, or false. Shared by TAKE (KEYS[4] there).
_PROMOTE = """
local function promote(delayed, queue)
  local now = now_seconds()
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
  for _, member in ipairs(due) do
    redis.call('ZREM', delayed, member)
    local body = string.sub(member, 3)
    if string.sub(member, 1, 1) == 'H' then
      redis.call('RPUSH', queue, body)
    else
      redis.call('LPUSH', queue, body)
    end
  end
  local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if nxt[2] then return tostring(tonumber(nxt[2]) - now) end
  return false
end
"""

#: what ``push_at`` puts at the front of a queue's list to wake one consumer blocked in
#: BLMOVE (BLMOVE watches one list, and a new delayed task is not in it): the consumer that
#: takes it drops it and blocks again, only until the earliest due time. Never an envelope.
WAKE = "agentexec:wake"

#: KEYS: delayed set, queue list. ARGV: member ("H:"/"L:" + payload), seconds from now until
#: due, the wake token. Adds the member due at server time + seconds; when it is now the
#: earliest, wakes a blocked consumer (the token at the front, unless one is there already).
PUSH_AT = Script("""
redis.call('ZADD', KEYS[1], now_seconds() + tonumber(ARGV[2]), ARGV[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if first[1] == ARGV[1] and redis.call('LINDEX', KEYS[2], -1) ~= ARGV[3] then
  redis.call('RPUSH', KEYS[2], ARGV[3])
end
return 1
""")

#: KEYS: queue list. ARGV: the wake token. Tasks waiting: the list's length less wake tokens.
LENGTH = Script("""
return redis.call('LLEN', KEYS[1]) - #redis.call('LPOS', KEYS[1], ARGV[1], 'COUNT', 0)
""")

#: KEYS: delayed set, queue list. Returns seconds until the next due task, or nil.
PROMOTE = Script(_PROMOTE + """
return promote(KEYS[1], KEYS[2])
""")

#: ... ARGV[4] (optional): the wake token, left at the front of the queue (never taken here).
#: Returns {payloads taken, what PROMOTE returns (false without KEYS[4])}: a consumer that
#: found nothing waits in BLMOVE next without a PROMOTE of its own first.
TAKE = Script(_PROMOTE + """
local left = false
if KEYS[4] then left = promote(KEYS[4], KEYS[1]) end
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[3], now_seconds(), ARGV[3])
end
local popped = redis.call('RPOP', KEYS[1], ARGV[1])
if not popped then return {{}, left} end
local items, wakes = {}, 0
for _, item in ipairs(popped) do
  if ARGV[4] and item == ARGV[4] then wakes = wakes + 1 else table.insert(items, item) end
end
-- a wake token is for a consumer blocked in BLMOVE (it re-plans its wait): it stays in front
for _ = 1, wakes do redis.call('RPUSH', KEYS[1], ARGV[4]) end
if #items == 0 then return {{}, left} end
for i = 1, #items, 1000 do
  redis.call('LPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
end
return {items, left}
""")

#: KEYS: in-flight lists. ARGV: for each key in turn, a count n, then n payloads to remove from
#: that list (``LREM list 1 payload`` each: what ``ack`` does for one lease).
ACK = Script("""
local a = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  for i = a + 1, a + n do
    redis.call('LREM', KEYS[k], 1, ARGV[i])
  end
  a = a + n + 1
end
return 1
""")

#: KEYS: the results-done stream, then one result key per value. ARGV: ttl (seconds), the
#: stream's approximate max length, the wake-up's field name and value, then the values. Stores
#: every value (``SET ... EX ttl``), then appends ONE wake-up entry (``id=<id>`` for one value,
#: ``ids=<id>,<id>,...`` for several). Only where all keys live on one server (not a cluster).
SET_RESULTS = Script("""
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 3], 'EX', ARGV[1])
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4])
""")

#: KEYS: one staged-outcome key per value. ARGV: ttl (seconds), then the values. ``SET ... EX
#: ttl`` of each: what a pipeline of SETs does, at half its client CPU (measured: ~90 against
#: ~200 us per call of 7). Only where all keys live on one server (not a cluster).
STAGE = Script("""
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
end
return 1
""")

#: KEYS: inflight, dead, dead_seq. ARGV: payload, reason, queue name, payload as UTF-8 text.
#: Moves a payload the consumer cannot run from its in-flight list to the dead letters (the
#: record keeps the text form: JSON holds text, and a malformed payload may be any bytes).
BURY = Script("""
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return false end
return bury(KEYS[2], KEYS[3], ARGV[3], now_seconds(), ARGV[4], ARGV[2])
""")

#: KEYS: inflight. ARGV: payload as taken, its canonical form. 1 when swapped, 0 when the
#: payload was no longer ours (a reaper took it back).
CANONICALIZE = Script("""
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[2])
return 1
""")

#: KEYS: inflight, queue. ARGV: payload. Back to the front of the queue, attempts unchanged.
RELEASE = Script("""
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
""")

#: KEYS: dead, queue. ARGV: record1, payload1, record2, payload2, ... Each record still in the
#: dead letters is removed and its payload pushed to the front. Returns how many.
REQUEUE_DEAD = Script("""
local count = 0
for i = 1, #ARGV, 2 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    count = count + 1
  end
end
return count
""")

#: KEYS: dead. Deletes the dead letters; returns how many there were.
PURGE_DEAD = Script("""
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
""")
