"""Task locks (``TaskLocks``) and enqueue keys (``EnqueueKeys``) of :class:`RedisQueue`.

Keys, all in the queue's hash slot (:func:`agentexec_redis.keys.slot_prefix`):

- ``{q}:lock:<key>``: hash, agent id -> consumer id, of the tasks holding lock ``<key>``;
- ``{q}:held``: hash, agent id -> the lock keys its lease holds (newline-separated), so a reap
  that gets back only a payload still knows what to release;
- ``{q}:park:<key>``: list of agent ids parked on ``<key>``, oldest first;
- ``{q}:parked``: hash, agent id -> its parked payload (``remove`` deletes it from here; the
  id left in the park list is skipped when its turn comes);
- ``{q}:keys``: hash, enqueue key -> the agent id holding it.

``ACQUIRE`` and ``UNLOCK`` are scripts, so a task is parked and a holder's release moves it
back in one atomic order: no wake-up is ever lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

import redis.asyncio as aioredis
from agentexec.backends import Lease
from agentexec.task import Envelope

from agentexec_redis._lua import Script
from agentexec_redis.keys import slot_prefix

#: KEYS: inflight, parked, held, consumers, then per lock: lock hash, park list.
#: ARGV: agent id, consumer id, payload (the lease's token), lease timeout, the limit of each
#: lock, then the lock names joined by newlines. 1: the locks are held; 0: parked (or the
#: payload was no longer in flight).
ACQUIRE = Script("""
local agent, consumer, raw, timeout = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local n = (#KEYS - 4) / 2
local now = now_seconds()
local full = nil
for i = 1, n do
  local lock = KEYS[3 + 2 * i]
  local holders = redis.call('HGETALL', lock)
  local count = 0
  for j = 1, #holders, 2 do
    local a, c = holders[j], holders[j + 1]
    if a ~= agent then
      local beat = redis.call('ZSCORE', KEYS[4], c)
      if beat and now - tonumber(beat) <= timeout then
        count = count + 1
      else
        redis.call('HDEL', lock, a)  -- its consumer is gone: its lease, and lock, ended
      end
    end
  end
  if count >= tonumber(ARGV[4 + i]) then
    full = i
    break
  end
end
if not full then
  for i = 1, n do
    redis.call('HSET', KEYS[3 + 2 * i], agent, consumer)
  end
  redis.call('HSET', KEYS[3], agent, ARGV[5 + n])
  return 1
end
if redis.call('LREM', KEYS[1], 1, raw) == 1 then
  redis.call('RPUSH', KEYS[4 + 2 * full], agent)
  redis.call('HSET', KEYS[2], agent, raw)
end
return 0
""")

#: KEYS: held, queue, parked, then per lock: lock hash, park list. ARGV: agent id. Releases
#: the agent's locks (once: nothing when it holds none) and moves the oldest task parked on
#: each to the front of the queue. Returns how many it moved.
UNLOCK = Script("""
local agent = ARGV[1]
if redis.call('HDEL', KEYS[1], agent) == 0 then
  return 0
end
local moved = 0
for i = 1, (#KEYS - 3) / 2 do
  redis.call('HDEL', KEYS[2 + 2 * i], agent)
  local park = KEYS[3 + 2 * i]
  while true do
    local a = redis.call('LPOP', park)
    if not a then break end
    local raw = redis.call('HGET', KEYS[3], a)
    if raw then
      redis.call('HDEL', KEYS[3], a)
      redis.call('RPUSH', KEYS[2], raw)
      moved = moved + 1
      break
    end
  end
end
return moved
""")

#: KEYS: keys hash. ARGV: key, agent id, the agent id it may replace (or ""). The holder, or
#: false when the agent now holds the key.
CLAIM = Script("""
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if (not holder) or (ARGV[3] ~= '' and holder == ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return false
end
return holder
""")

#: KEYS: keys hash. ARGV: key, agent id. Drops the key if that agent holds it.
DROP_KEY = Script("""
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
""")


def lock_keys(queue_name: str, locks: Sequence[str]) -> list[str]:
    tag = slot_prefix(queue_name)
    out: list[str] = []
    for name in locks:
        out += [f"{tag}:lock:{name}", f"{tag}:park:{name}"]
    return out


def held_key(queue_name: str) -> str:
    return f"{slot_prefix(queue_name)}:held"


def parked_key(queue_name: str) -> str:
    return f"{slot_prefix(queue_name)}:parked"


def keys_key(queue_name: str) -> str:
    return f"{slot_prefix(queue_name)}:keys"


async def acquire(r: aioredis.Redis, lease: Lease, inflight: str, consumers: str, lease_timeout: float) -> bool:
    locks: Mapping[str, int] = lease.envelope.locks or {}
    q = lease.queue_name
    names = list(locks)
    got = await ACQUIRE(
        r, [inflight, parked_key(q), held_key(q), consumers, *lock_keys(q, names)],
        [str(lease.envelope.agent_id), lease.consumer_id, lease.token, lease_timeout,
         *[locks[n] for n in names], "\n".join(names)],
    )
    return bool(got)


async def unlock(r: aioredis.Redis, queue_name: str, agent_id: UUID, names: Sequence[str] | None) -> int:
    """Release the locks of ``agent_id`` (``names``; ``None``: look them up)."""
    if names is None:
        raw = await r.hget(held_key(queue_name), str(agent_id))  # type: ignore[misc]
        if raw is None:
            return 0
        names = [n for n in (raw.decode() if isinstance(raw, bytes) else raw).split("\n") if n]
    return int(await UNLOCK(
        r, [held_key(queue_name), queue_name, parked_key(queue_name), *lock_keys(queue_name, names)],
        [str(agent_id)],
    ))


async def ended(r: aioredis.Redis, queue_name: str, envelopes: Sequence[Envelope], dead: bool) -> None:
    """Leases of ``envelopes`` ended in a reap: their locks go (looked up: the payload may not
    name them); a dead-lettered task's enqueue key too."""
    for env in envelopes:
        await unlock(r, queue_name, env.agent_id, None)
        if dead and env.key is not None:
            await drop_key(r, queue_name, env.key, env.agent_id)


async def claim(r: aioredis.Redis, queue_name: str, key: str, agent_id: UUID, replace: UUID | None) -> UUID | None:
    holder = await CLAIM(r, [keys_key(queue_name)], [key, str(agent_id), "" if replace is None else str(replace)])
    if not holder:
        return None
    return UUID(holder.decode() if isinstance(holder, bytes) else holder)


async def drop_key(r: aioredis.Redis, queue_name: str, key: str, agent_id: UUID) -> None:
    await DROP_KEY(r, [keys_key(queue_name)], [key, str(agent_id)])
