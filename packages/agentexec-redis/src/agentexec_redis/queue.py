"""``RedisQueue``: the spec's Redis list queue, made reliable.

Layout (key names in :mod:`agentexec_redis.keys`):

- the queue is a list under its bare name; LOW is LPUSHed (back), HIGH is RPUSHed (front), and
  consumers take from the right, exactly as ``spec/task-lifecycle.md`` describes;
- a take is ``BLMOVE queue -> {queue}:inflight:<consumer>``: one atomic step, so a task is
  either waiting or held by exactly one consumer (``reserve_many`` moves a batch of waiting
  tasks with the ``TAKE`` script, likewise one atomic step);
- ``ack`` removes the payload from the consumer's in-flight list;
- consumers record their last heartbeat (server time) in the sorted set ``{queue}:consumers``;
  ``reap`` runs a Lua script per silent consumer that moves its in-flight tasks back to the
  front with ``attempts + 1``, or to the dead-letter list ``{queue}:dead`` past ``max_attempts``.

Why per-consumer lists rather than a stream consumer group: the queue stays the spec's plain
list (``LLEN`` works, ``redis-cli LPUSH`` works, priorities are the two ends of one list), a
take is one BLMOVE, and a reap is one script per dead consumer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from agentexec._redact import mask_url
from agentexec.backends import DeadLetter, Lease, QueueStats, ReapReport
from agentexec.config import CONF
from agentexec.task import Envelope, Priority
from pydantic import ValidationError
from redis.exceptions import ResponseError

from agentexec_redis import _locks, _lua
from agentexec_redis._dead import malformed_reason, parse_envelope, parse_record, text
from agentexec_redis._resilience import TRANSIENT, is_transient, outage, redis_backoff, retrying
from agentexec_redis.client import async_client, block_for, close_redis, is_cluster, resolve_url
from agentexec_redis.keys import QueueKeys, queue_keys

log = logging.getLogger("agentexec.redis")

#: shortest BLMOVE timeout sent; Redis reads a timeout that rounds to 0 ms as "block forever"
_MIN_BLOCK = 0.01
_STATS_CHUNK = 1000

_Pair = tuple[str, str]  # (queue name, consumer id)


class _Again:
    """``_take_one`` found a payload it could not hand out (dead-lettered or lost to a reaper)."""


_AGAIN = _Again()


@dataclass
class _Consumer:
    """What one instance knows about one consumer id on one queue."""

    #: payloads handed out and not yet acked or released
    held: Counter[bytes] = field(default_factory=Counter)
    #: monotonic time of the last heartbeat sent
    last_beat: float | None = None
    #: the in-flight tasks of an earlier process under this id have been reaped
    started: bool = False
    #: a take failed midway: a task may sit in the in-flight list without a lease
    dirty: bool = False
    #: takes between their BLMOVE and their lease (their task is in the list, not yet held)
    busy: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    #: serializes the start-up reap and the recovery of stranded tasks
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)


async def _until_idle(state: _Consumer, deadline: float) -> bool:
    """Wait until no take of the consumer is between its BLMOVE and its lease."""
    while state.busy:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(state.idle.wait(), remaining)
        except TimeoutError:
            return False
    return True


_WAKE = _lua.WAKE.encode()


async def _command(r: aioredis.Redis, *args: Any) -> Any:
    """A raw command (redis-py types BLMOVE's timeout as int; Redis takes fractional seconds)."""
    return await r.execute_command(*args)  # type: ignore[no-untyped-call]


def _config_value(reply: Any, name: str) -> Any:
    """One setting out of a ``CONFIG GET`` reply (a dict; per node on a cluster: the first)."""
    if isinstance(reply, dict):
        for key, value in reply.items():
            if isinstance(value, dict):  # a cluster's {node: {name: value}}
                return _config_value(value, name)
            if (key.decode() if isinstance(key, bytes) else key) == name:
                return value.decode() if isinstance(value, bytes) else value
    return ""


class RedisQueue:
    """A reliable priority queue on Redis lists. ``RedisQueue(url)``; see the module doc."""

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """:class:`agentexec.backends.TransientErrors`: Redis unreachable or not serving
        writes for now (a worker waits), as opposed to a reply refusing the data."""
        return is_transient(exc)

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        self.lease_timeout: float = CONF.lease_timeout
        self.max_attempts: int = CONF.max_attempts
        self._consumers: dict[_Pair, _Consumer] = {}

    def __repr__(self) -> str:
        return f"RedisQueue({mask_url(self.url)!r})"

    def _consumer(self, pair: _Pair) -> _Consumer:
        state = self._consumers.get(pair)
        if state is None:
            state = self._consumers[pair] = _Consumer()
            state.idle.set()
        return state

    def _redis(self) -> aioredis.Redis:
        return async_client(self.url)

    @staticmethod
    def _op_window() -> float:
        return float(max(CONF.redis_pool_timeout, 1))

    # -- producing ---------------------------------------------------------------------------
    async def push(self, envelope: Envelope, priority: Priority | None = None) -> None:
        await self.push_raw(
            envelope.queue_name, envelope.model_dump_json(), priority or envelope.priority
        )

    async def push_raw(
        self, queue_name: str, payload: str | bytes, priority: Priority = Priority.LOW
    ) -> None:
        """Push a payload as-is, as ``redis-cli LPUSH``/``RPUSH`` would (tests push bad data)."""
        key = queue_keys(queue_name).queue
        command = "RPUSH" if priority is Priority.HIGH else "LPUSH"
        await retrying("push", lambda: _command(self._redis(), command, key, payload), self._op_window())

    async def push_many(self, envelopes: Sequence[Envelope]) -> None:
        """One round trip: runs of the same queue and priority become one variadic push."""
        batches: list[tuple[str, str, list[str]]] = []
        for env in envelopes:
            key = queue_keys(env.queue_name).queue
            command = "RPUSH" if env.priority is Priority.HIGH else "LPUSH"
            if batches and batches[-1][0] == command and batches[-1][1] == key:
                batches[-1][2].append(env.model_dump_json())
            else:
                batches.append((command, key, [env.model_dump_json()]))
        if not batches:
            return

        async def send() -> None:
            async with self._redis().pipeline(transaction=False) as pipe:
                for command, key, payloads in batches:
                    pipe.execute_command(command, key, *payloads)
                await pipe.execute()

        await retrying("push_many", send, self._op_window())

    async def remove(self, queue_name: str, agent_id: UUID) -> Envelope | None:
        """Take a waiting task out of the list by its agent id (``ax.cancel``): the list is
        read whole (cancelling is rare), then ``LREM`` of that exact payload decides the race
        with a consumer's take: 1 removed, 0 taken meanwhile."""
        key = queue_keys(queue_name).queue
        needle = str(agent_id).encode()

        delayed = queue_keys(queue_name).delayed

        async def run() -> Envelope | None:
            env = await find()
            if env is not None and env.key is not None:
                await _locks.drop_key(self._redis(), queue_name, env.key, agent_id)
            return env

        async def find() -> Envelope | None:
            r = self._redis()
            parked = _locks.parked_key(queue_name)
            raw_parked = await r.hget(parked, str(agent_id))  # type: ignore[misc]
            if raw_parked is not None and await r.hdel(parked, str(agent_id)):  # type: ignore[misc]
                return parse_envelope(raw_parked)
            members: list[bytes] = await r.zrange(delayed, 0, -1)  # type: ignore[assignment]
            for member in members:
                if needle not in member:
                    continue
                try:
                    env = Envelope.model_validate_json(member[2:])
                except ValidationError:
                    continue
                if env.agent_id == agent_id:
                    return env if await r.zrem(delayed, member) else None
            for raw in await r.lrange(key, 0, -1):
                if needle not in raw:
                    continue
                try:
                    env = Envelope.model_validate_json(raw)
                except ValidationError:
                    continue
                if env.agent_id == agent_id:
                    return env if await r.lrem(key, 1, raw) else None  # type: ignore[arg-type]
            return None

        return await retrying("remove", run, self._op_window())

    # -- consuming ---------------------------------------------------------------------------
    async def reserve(self, queue_name: str, consumer_id: str, timeout: float) -> Lease | None:
        """Take the next task into ``consumer_id``'s in-flight list, waiting up to ``timeout`` s.

        While Redis is unreachable this backs off and retries (logging at most once a second)
        until ``timeout``, then returns ``None``, so a worker loop never crash-loops.
        """
        return await self._reserve(queue_name, consumer_id, timeout)

    async def _reserve(
        self, queue_name: str, consumer_id: str, timeout: float, promoted: float | None = None
    ) -> Lease | None:
        """``reserve``; ``promoted``: a ``TAKE`` that found nothing just moved the due delayed
        tasks, and the next is due then (monotonic; ``inf``: none delayed), so the first try
        blocks without a ``PROMOTE`` of its own."""
        keys = queue_keys(queue_name)
        state = self._consumer((queue_name, consumer_id))
        deadline = time.monotonic() + max(timeout, 0.0)
        backoff = redis_backoff()
        while True:
            try:
                # due delayed tasks join the list first; a block ends when the next is due
                if promoted is not None:
                    until, promoted = min(deadline, promoted), None
                else:
                    until = await self._promote(keys, deadline)
                got = await self._take_one(keys, consumer_id, state, until)
                if got is None and time.monotonic() < deadline:
                    continue
            except TRANSIENT as exc:
                state.dirty = True
                outage.failed("reserve", exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                await backoff.sleep(remaining)
                continue
            except BaseException:
                # cancelled mid-BLMOVE: the server may still have moved a task to us
                state.dirty = True
                raise
            outage.ok()
            if not isinstance(got, _Again):
                return got

    async def _promote(self, keys: QueueKeys, deadline: float) -> float:
        """Move the queue's due delayed tasks into its list; returns ``deadline``, or sooner:
        when the next delayed task falls due."""
        left = await _lua.PROMOTE(self._redis(), [keys.delayed, keys.queue])
        if left is None:
            return deadline  # nothing delayed: a push_at that comes meanwhile wakes us (WAKE)
        return min(deadline, time.monotonic() + max(float(left), 0.0) + 0.001)

    async def push_at(self, envelope: Envelope, due: float) -> None:
        """Wait in the queue's delayed set until ``due`` (the server's clock is compared with
        it, as for leases: keep clocks in sync)."""
        left = due - time.time()
        if left <= 0:
            await self.push(envelope)
            return
        keys = queue_keys(envelope.queue_name)
        member = ("H:" if envelope.priority is Priority.HIGH else "L:") + envelope.model_dump_json()

        await retrying(
            "push_at",
            lambda: _lua.PUSH_AT(self._redis(), [keys.delayed, keys.queue], [member, left, _lua.WAKE]),
            self._op_window(),
        )

    async def delayed(self, queue_name: str) -> int:
        keys = queue_keys(queue_name)
        return int(await retrying("delayed", lambda: self._redis().zcard(keys.delayed), self._op_window()))

    async def _take_one(
        self, keys: QueueKeys, consumer_id: str, state: _Consumer, deadline: float
    ) -> Lease | _Again | None:
        r = self._redis()
        inflight = keys.inflight(consumer_id)
        if not state.started or state.dirty:
            # no take of this consumer runs meanwhile: the others queue on the gate
            async with state.gate:
                if not state.started:
                    # a consumer id reused after a crash: its old tasks go back (attempts + 1)
                    await self._reap_one(r, keys, consumer_id, force=True)
                    # the reap also unregistered the consumer, perhaps after a heartbeat had
                    # registered it: register it again before the take, or a worker killed
                    # before its next heartbeat leaves its task where no reaper looks
                    state.last_beat = None
                    state.started = True
                if state.dirty:
                    if not await _until_idle(state, deadline):
                        return None
                    orphan = await self._orphan(r, inflight, state)
                    if orphan is not None:
                        return await self._leased(r, keys, consumer_id, state, orphan)
                    state.dirty = False
        # counted as busy from here (no await since the gate check), so a recovery that starts
        # now waits for this take instead of mistaking its task for a stranded one
        state.busy += 1
        state.idle.clear()
        try:
            await self._beat_if_due(r, keys, consumer_id, state)
            remaining = block_for(r, deadline - time.monotonic())
            if remaining < _MIN_BLOCK:
                raw = await _command(r, "LMOVE", keys.queue, inflight, "RIGHT", "LEFT")
            else:
                raw = await _command(
                    r, "BLMOVE", keys.queue, inflight, "RIGHT", "LEFT", f"{remaining:.3f}"
                )
            if raw is None:
                return None
            return await self._leased(r, keys, consumer_id, state, raw)
        finally:
            state.busy -= 1
            if state.busy == 0:
                state.idle.set()

    async def reserve_many(
        self, queue_name: str, consumer_id: str, max_count: int, timeout: float
    ) -> list[Lease]:
        """Up to ``max_count`` tasks. While tasks wait this is one round trip: the ``TAKE``
        script moves up to ``max_count`` of them into the consumer's in-flight list in one
        atomic step. When none wait, the first is taken as :meth:`reserve` takes it (waiting up
        to ``timeout``) and returned alone, at once: a task that woke an idle worker starts
        without another round trip, and whatever arrived with it is the next call's ``TAKE``
        (a consumer's first call, which recovers its earlier tasks first, takes the rest at
        once). ``[]`` when nothing came."""
        deadline = time.monotonic() + max(timeout, 0.0)
        keys = queue_keys(queue_name)
        state = self._consumer((queue_name, consumer_id))
        started = state.started and not state.dirty
        promoted: float | None = None
        if started and max_count >= 1:
            # one TAKE even for one task: reserve's PROMOTE + BLMOVE is two round trips
            leases, promoted = await self._take_more(keys, consumer_id, state, max_count)
            if leases:
                return leases
        first = await self._reserve(queue_name, consumer_id, deadline - time.monotonic(), promoted)
        if first is None:
            return []
        if max_count <= 1 or started:
            return [first]
        more, _ = await self._take_more(keys, consumer_id, state, max_count - 1)
        return [first, *more]

    async def _take_more(
        self, keys: QueueKeys, consumer_id: str, state: _Consumer, count: int
    ) -> tuple[list[Lease], float | None]:
        """Tasks already waiting, without blocking (one ``TAKE``), and, when it took none, when
        the next delayed task is due (monotonic, ``inf`` for none; ``None``: not known). A
        failure midway leaves the consumer dirty, so its next take recovers whatever was moved
        but never leased (as after a cut-off ``reserve``); the leases made so far are returned."""
        leases: list[Lease] = []
        if state.dirty or not state.started:
            return leases, None  # a recovery is due or running: leave it to the next `reserve`
        promoted: float | None = None
        r = self._redis()
        inflight = keys.inflight(consumer_id)
        # counted as busy with no await since the check above (see `_take_one`)
        state.busy += 1
        state.idle.clear()
        try:
            # the consumer is re-registered before the take when due (see `_beat_if_due`)
            sent = time.monotonic()
            beat = state.last_beat is None or sent - state.last_beat >= self.lease_timeout / 4
            taken, left = await _lua.TAKE(
                r, [keys.queue, inflight, keys.consumers, keys.delayed],
                [count, "1" if beat else "0", consumer_id, _lua.WAKE],
            )
            if beat:
                state.last_beat = sent
            if not taken:
                promoted = math.inf if left is None else sent + max(float(left), 0.0) + 0.001
            for raw in taken:
                got = await self._leased(r, keys, consumer_id, state, raw)
                if isinstance(got, Lease):
                    leases.append(got)
        except Exception as exc:
            # the leases already made (the caller's first task among them) must still reach
            # the caller: a raise here would strand them in flight under a live consumer
            state.dirty = True
            if isinstance(exc, TRANSIENT):
                outage.failed("reserve", exc)
            else:
                log.warning("taking more tasks from %r failed: %r", keys.queue, exc)
        except BaseException:
            state.dirty = True
            raise
        finally:
            state.busy -= 1
            if state.busy == 0:
                state.idle.set()
        return leases, promoted

    async def _leased(
        self, r: aioredis.Redis, keys: QueueKeys, consumer_id: str, state: _Consumer, raw: bytes
    ) -> Lease | _Again:
        """A lease for a payload now in the consumer's in-flight list (or a dead letter)."""
        inflight = keys.inflight(consumer_id)
        if raw == _WAKE:  # a push_at's wake-up: the reserve re-reads the earliest due time
            await r.lrem(inflight, 1, raw)  # type: ignore[arg-type]
            return _AGAIN
        try:
            envelope = Envelope.model_validate_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValidationError) as exc:
            await _lua.BURY(
                r, [inflight, keys.dead, keys.dead_seq],
                [raw, malformed_reason(exc), keys.queue, text(raw)],
            )
            return _AGAIN
        canonical = envelope.model_dump_json().encode()
        if canonical != raw:
            # the reaper edits the attempts field of the canonical form only
            if not await _lua.CANONICALIZE(r, [inflight], [raw, canonical]):
                return _AGAIN
            raw = canonical
        state.held[raw] += 1
        return Lease(envelope, consumer_id, keys.queue, raw)

    async def _orphan(self, r: aioredis.Redis, inflight: str, state: _Consumer) -> bytes | None:
        """A payload in the in-flight list that this instance never handed out, oldest first."""
        items: list[bytes] = await _command(r, "LRANGE", inflight, 0, -1)
        held = Counter(state.held)
        for raw in reversed(items):
            if held[raw] > 0:
                held[raw] -= 1
            else:
                return raw
        return None

    def _forget(self, lease: Lease) -> None:
        state = self._consumers.get((lease.queue_name, lease.consumer_id))
        if state is not None and state.held[lease.token] > 0:
            state.held[lease.token] -= 1
            if state.held[lease.token] == 0:
                del state.held[lease.token]

    # -- locks (TaskLocks) and enqueue keys (EnqueueKeys): agentexec_redis._locks --------
    async def acquire(self, lease: Lease) -> bool:
        keys = queue_keys(lease.queue_name)
        got = await retrying(
            "acquire",
            lambda: _locks.acquire(
                self._redis(), lease, keys.inflight(lease.consumer_id), keys.consumers, self.lease_timeout
            ),
            max(self.lease_timeout, 1.0),
        )
        if not got:
            self._forget(lease)  # parked: out of the in-flight list
        return got

    async def unlock(self, lease: Lease) -> None:
        names = list(lease.envelope.locks or ())
        await retrying(
            "unlock",
            lambda: _locks.unlock(self._redis(), lease.queue_name, lease.envelope.agent_id, names),
            max(self.lease_timeout, 1.0),
        )

    async def parked(self, queue_name: str) -> int:
        key = _locks.parked_key(queue_name)
        return int(await retrying("parked", lambda: self._redis().hlen(key), self._op_window()))  # type: ignore[arg-type]

    async def claim_key(
        self, queue_name: str, key: str, agent_id: UUID, replace: UUID | None = None
    ) -> UUID | None:
        return await retrying(
            "claim_key", lambda: _locks.claim(self._redis(), queue_name, key, agent_id, replace), self._op_window()
        )

    async def release_key(self, queue_name: str, key: str, agent_id: UUID) -> None:
        await retrying(
            "release_key", lambda: _locks.drop_key(self._redis(), queue_name, key, agent_id), self._op_window()
        )

    async def _lease_ending(self, leases: Sequence[Lease], acked: bool) -> None:
        """Before a lease's end: its locks go first (a crash after that costs at most one
        more delivery, which finds the task finished), and, once acknowledged, its key."""
        for lease in leases:
            env = lease.envelope
            if env.locks is None and (env.key is None or not acked):
                continue

            async def send(env: Envelope = env, lease: Lease = lease) -> None:
                r = self._redis()
                if env.locks is not None:
                    await _locks.unlock(r, lease.queue_name, env.agent_id, list(env.locks))
                if acked and env.key is not None:
                    await _locks.drop_key(r, lease.queue_name, env.key, env.agent_id)

            await retrying("unlock", send, max(self.lease_timeout, 1.0))

    async def ack(self, lease: Lease) -> None:
        await self._lease_ending([lease], acked=True)
        inflight = queue_keys(lease.queue_name).inflight(lease.consumer_id)
        await retrying(
            "ack",
            lambda: self._redis().lrem(inflight, 1, lease.token),
            max(self.lease_timeout, 1.0),
        )
        self._forget(lease)

    async def ack_many(self, leases: Sequence[Lease]) -> None:
        """``ack`` of each lease in one round trip: one ``ACK`` script call (one per queue on a
        cluster, where each queue's keys share one hash slot)."""
        if not leases:
            return
        await self._lease_ending(leases, acked=True)
        cluster = is_cluster(self._redis())
        # group -> in-flight list -> payloads to remove
        groups: dict[str, tuple[dict[str, list[bytes]], list[Lease]]] = {}
        for lease in leases:
            lists, members = groups.setdefault(lease.queue_name if cluster else "", ({}, []))
            lists.setdefault(queue_keys(lease.queue_name).inflight(lease.consumer_id), []).append(
                lease.token
            )
            members.append(lease)

        async def send(lists: dict[str, list[bytes]]) -> None:
            args: list[Any] = []
            for tokens in lists.values():
                args.append(len(tokens))
                args += tokens
            await _lua.ACK(self._redis(), list(lists), args)

        for lists, members in groups.values():
            await retrying("ack", functools.partial(send, lists), max(self.lease_timeout, 1.0))
            for lease in members:
                self._forget(lease)

    async def release(self, lease: Lease) -> None:
        await self._lease_ending([lease], acked=False)
        keys = queue_keys(lease.queue_name)
        inflight = keys.inflight(lease.consumer_id)
        await retrying(
            "release",
            lambda: _lua.RELEASE(self._redis(), [inflight, keys.queue], [lease.token]),
            max(self.lease_timeout, 1.0),
        )
        self._forget(lease)

    # -- liveness ----------------------------------------------------------------------------
    async def heartbeat(self, queue_name: str, consumer_id: str) -> None:
        """Refresh the consumer's liveness. An outage is logged and retried for half a lease."""
        keys = queue_keys(queue_name)
        state = self._consumer((queue_name, consumer_id))
        try:
            await retrying(
                "heartbeat",
                lambda: self._beat(self._redis(), keys, consumer_id, state),
                self.lease_timeout / 2,
            )
        except TRANSIENT:
            pass  # logged by `retrying`; the next heartbeat tries again

    async def _beat(
        self, r: aioredis.Redis, keys: QueueKeys, consumer_id: str, state: _Consumer
    ) -> None:
        sent = time.monotonic()
        await _lua.HEARTBEAT(r, [keys.consumers], [consumer_id])
        state.last_beat = sent

    async def _beat_if_due(
        self, r: aioredis.Redis, keys: QueueKeys, consumer_id: str, state: _Consumer
    ) -> None:
        # A reaper drops a consumer only after a full lease of silence, which this instance
        # would have seen as more than a quarter lease: the consumer is re-registered before
        # its next take, so no task is ever moved to an in-flight list nobody watches.
        if state.last_beat is None or time.monotonic() - state.last_beat >= self.lease_timeout / 4:
            await self._beat(r, keys, consumer_id, state)

    def _reap_keys(self, keys: QueueKeys, consumer_id: str) -> list[str]:
        return [keys.queue, keys.consumers, keys.inflight(consumer_id), keys.dead, keys.dead_seq]

    def _reap_args(self, keys: QueueKeys, consumer_id: str, force: bool) -> list[Any]:
        return [consumer_id, self.lease_timeout, self.max_attempts, "1" if force else "0", keys.queue]

    async def _reap_one(
        self, r: aioredis.Redis, keys: QueueKeys, consumer_id: str, force: bool
    ) -> ReapReport:
        again, buried = await _lua.REAP(
            r, self._reap_keys(keys, consumer_id), self._reap_args(keys, consumer_id, force)
        )
        report = ReapReport(
            tuple(Envelope.model_validate_json(p) for p in again),
            tuple(parse_record(rec, keys.queue) for rec in buried),
        )
        await _locks.ended(r, keys.queue, report.requeued, dead=False)
        await _locks.ended(r, keys.queue, [d.envelope for d in report.dead if d.envelope is not None], dead=True)
        return report

    async def reap(self, queue_name: str) -> ReapReport:
        keys = queue_keys(queue_name)

        async def run() -> ReapReport:
            r = self._redis()
            requeued: list[Envelope] = []
            dead: list[DeadLetter] = []
            for consumer in await _lua.EXPIRED(r, [keys.consumers], [self.lease_timeout]):
                report = await self._reap_one(r, keys, text(consumer), force=False)
                requeued += report.requeued
                dead += report.dead
            return ReapReport(tuple(requeued), tuple(dead))

        return await retrying("reap", run, self._op_window())

    async def in_flight(self, queue_name: str, consumer_id: str) -> list[Envelope]:
        key = queue_keys(queue_name).inflight(consumer_id)
        raw = await retrying("in_flight", lambda: self._redis().lrange(key, 0, -1), self._op_window())
        # LPUSH on take: the list's tail is the oldest
        return [env for p in reversed(raw) if (env := parse_envelope(p)) is not None]

    async def reap_consumer(self, queue_name: str, consumer_id: str) -> ReapReport:
        """Hand out again the tasks of one consumer known to be dead, whatever its heartbeat age
        (the pool calls it when a worker process dies); same rules as :meth:`reap`."""
        keys = queue_keys(queue_name)
        return await retrying(
            "reap_consumer",
            lambda: self._reap_one(self._redis(), keys, consumer_id, force=True),
            self._op_window(),
        )

    # -- operations --------------------------------------------------------------------------
    async def durability_warnings(self) -> list[str]:
        """A warning when the Redis server keeps neither an AOF nor RDB snapshots: a restart
        then loses every queued task. Nothing when it does, or when ``CONFIG GET`` is refused
        (managed services rename it): a warning must be true."""
        r = self._redis()
        try:
            appendonly = await r.config_get("appendonly")
            save = await r.config_get("save")
        except Exception as exc:
            if isinstance(exc, (ResponseError, *TRANSIENT)):
                return []
            raise
        aof = str(_config_value(appendonly, "appendonly")).lower() in ("yes", "1")
        rdb = bool(str(_config_value(save, "save")).strip())
        if aof or rdb:
            return []
        return [
            f"Redis at {mask_url(self.url)} has neither AOF nor RDB persistence "
            f"(appendonly no, save \"\"): a Redis restart loses queued tasks. Set "
            f"`appendonly yes` (see docs/operations.md, Persistence)"
        ]

    # -- inspection --------------------------------------------------------------------------
    async def length(self, queue_name: str) -> int:
        key = queue_keys(queue_name).queue
        return int(await retrying("length", lambda: _lua.LENGTH(self._redis(), [key], [_lua.WAKE]), self._op_window()))

    async def stats(self, queue_name: str) -> QueueStats:
        keys = queue_keys(queue_name)
        return await retrying("stats", lambda: self._stats(keys), self._op_window())

    async def _stats(self, keys: QueueKeys) -> QueueStats:
        r = self._redis()
        now, beats, dead = await _lua.STATS(r, [keys.consumers, keys.dead])
        consumers = {
            text(beats[i]): max(0.0, float(now) - float(beats[i + 1])) for i in range(0, len(beats), 2)
        }
        in_flight = 0
        if consumers:
            async with r.pipeline(transaction=False) as pipe:
                for consumer in consumers:
                    pipe.llen(keys.inflight(consumer))
                in_flight = sum(await pipe.execute())
        high = low = 0
        start = 0
        while True:
            chunk: list[bytes] = await _command(
                r, "LRANGE", keys.queue, start, start + _STATS_CHUNK - 1
            )
            for raw in chunk:
                envelope = parse_envelope(raw)
                if envelope is None:
                    continue  # malformed: dead-lettered when a consumer reaches it
                if envelope.priority is Priority.HIGH:
                    high += 1
                else:
                    low += 1
            if len(chunk) < _STATS_CHUNK:
                break
            start += _STATS_CHUNK
        return QueueStats(keys.queue, high, low, in_flight, int(dead), consumers)

    async def dead_letters(self, queue_name: str, limit: int = 100) -> list[DeadLetter]:
        keys = queue_keys(queue_name)
        if limit <= 0:
            return []
        records = await retrying(
            "dead_letters", lambda: self._redis().lrange(keys.dead, 0, limit - 1), self._op_window()
        )
        return [parse_record(rec, queue_name) for rec in records]

    async def requeue_dead(self, queue_name: str, ids: Sequence[str] | None = None) -> int:
        """Push dead letters (all, or ``ids``) back to the front with attempts 0.

        Records whose payload is not a task (malformed payloads) stay where they are.
        """
        keys = queue_keys(queue_name)
        wanted = None if ids is None else {str(i) for i in ids}

        async def run() -> int:
            r = self._redis()
            args: list[Any] = []
            for record in await _command(r, "LRANGE", keys.dead, 0, -1):
                dl = parse_record(record, queue_name)
                if dl.envelope is None or (wanted is not None and dl.id not in wanted):
                    continue
                args += [record, dl.envelope.model_copy(update={"attempts": 0}).model_dump_json()]
            if not args:
                return 0
            return int(await _lua.REQUEUE_DEAD(r, [keys.dead, keys.queue], args))

        return await retrying("requeue_dead", run, self._op_window())

    async def purge_dead(self, queue_name: str) -> int:
        keys = queue_keys(queue_name)
        return int(
            await retrying(
                "purge_dead", lambda: _lua.PURGE_DEAD(self._redis(), [keys.dead]), self._op_window()
            )
        )

    async def close(self) -> None:
        """Close this process's connection pool for the URL; the next call reconnects."""
        await close_redis(self.url)
