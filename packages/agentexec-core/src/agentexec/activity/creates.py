"""The QUEUED activities ``ax.enqueue`` creates, written behind the push by one thread.

A single producer calling ``enqueue`` in a loop would otherwise wait for two round trips per
task, one to the database and one to the queue. ``enqueue`` pushes the task, then hands the
activity to this writer and returns; the writer's thread creates whatever has queued up with
one ``acreate_many`` per store.

Nothing is lost and nothing reads stale in this process:

- every ``ax.activity`` call of this process that could see the activity (``detail``,
  ``list``, ``update`` ...) first waits for its creation (:func:`created` / :func:`acreated`),
  so ``detail`` right after ``enqueue`` says QUEUED;
- the task in the queue is the source of truth: a worker that takes it before its activity
  exists waits briefly, then creates the activity from the task itself (see
  ``agentexec.worker.writer``). That also covers a producer that dies before this thread has
  written, and an activity a database crash forgot;
- the first activity per store is created before ``enqueue`` returns, so a misconfigured
  database (missing tables, wrong URL) fails the call that would have used it;
- at interpreter exit everything queued is written (bounded by ``EXIT_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import anyio
import anyio.to_thread

from agentexec import task_events
from agentexec.backends import ActivityItem, ActivityStore
from agentexec.backoff import Backoff
from agentexec.faults import clean_text, describe, is_transient

log = logging.getLogger("agentexec")

#: how long one batch is retried while its store fails, and so how long a reader of this
#: process may wait for it; past that the batch is given up (logged), and the worker that takes
#: each task creates its activity (agentexec.worker.writer)
RETRY_FOR = 5.0
EXIT_TIMEOUT = 10.0
#: a batch that comes within BUSY seconds of the last one waits LINGER seconds for company
BUSY = 0.002
LINGER = 0.001


@dataclass(eq=False)
class _Batch:
    items: dict[int, list[ActivityItem]] = field(default_factory=dict)
    stores: dict[int, ActivityStore] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


class CreateBehind:
    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # a forked child starts empty: what its parent queued is the parent's to write
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._open = _Batch()
        self._pending: dict[UUID, _Batch] = {}
        self._thread: threading.Thread | None = None
        # held, not only their ids: a store collected and its id reused must not pass as checked
        self._checked: dict[int, ActivityStore] = {}

    # -- producers -------------------------------------------------------------------------
    def checked(self, store: ActivityStore) -> bool:
        """Whether ``store`` has had one activity created before its ``enqueue`` returned."""
        return self._checked.get(id(store)) is store

    def mark_checked(self, store: ActivityStore) -> None:
        self._checked[id(store)] = store

    def submit(
        self,
        store: ActivityStore,
        agent_id: UUID,
        task_name: str,
        message: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        item: ActivityItem = (
            (agent_id, task_name, message) if metadata is None
            else (agent_id, task_name, message, metadata)
        )
        with self._lock:
            batch = self._open
            batch.stores[id(store)] = store
            batch.items.setdefault(id(store), []).append(item)
            self._pending[agent_id] = batch
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agentexec-creates", daemon=True)
                self._thread.start()
            self._wake.notify()

    # -- readers ---------------------------------------------------------------------------
    def _batches(self, agent_id: UUID | None) -> list[_Batch]:
        with self._lock:
            if agent_id is None:
                return list({id(b): b for b in self._pending.values()}.values())
            batch = self._pending.get(agent_id)
            return [] if batch is None else [batch]

    def wait(self, agent_id: UUID | None = None, timeout: float = RETRY_FOR) -> None:
        """Block until the activity of ``agent_id`` (every queued one when ``None``) is written."""
        if threading.current_thread() is self._thread:
            return
        for batch in self._batches(agent_id):
            batch.done.wait(timeout)

    async def await_written(self, agent_id: UUID | None = None) -> None:
        batches = self._batches(agent_id)
        if batches:
            await anyio.to_thread.run_sync(lambda: [b.done.wait(RETRY_FOR) for b in batches])

    def flush(self, timeout: float = EXIT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for batch in self._batches(None):
            batch.done.wait(max(0.0, deadline - time.monotonic()))

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()  # the stores' async connections live on it
        last = 0.0
        while True:
            with self._lock:
                while not self._open.items:
                    self._wake.wait()
            if time.monotonic() - last < BUSY:
                # a steady stream of enqueues: let a few more join this batch, which costs this
                # thread (and the GIL it shares with the producers) less per activity
                time.sleep(LINGER)
            with self._lock:
                batch, self._open = self._open, _Batch()
            try:
                loop.run_until_complete(self._write(batch))
            except BaseException as exc:  # never leave a waiter hanging
                log.error("agentexec: creating queued activities failed: %r", exc)
            finally:
                with self._lock:
                    for items in batch.items.values():
                        for item in items:
                            if self._pending.get(item[0]) is batch:
                                del self._pending[item[0]]
                batch.done.set()
                last = time.monotonic()

    async def _write(self, batch: _Batch) -> None:
        for key, items in batch.items.items():
            await _create_isolated(batch.stores[key], items, time.monotonic() + RETRY_FOR)
        # ``task.queued`` rides behind the creation, off the producer's path (task_events)
        await task_events.publish_now(task_events.queued(
            (item[0], item[1], item[3] if len(item) > 3 else None)  # type: ignore[misc]
            for items in batch.items.values() for item in items
        ))


async def _create_isolated(
    store: ActivityStore, items: list[ActivityItem], deadline: float
) -> None:
    """Create ``items``, retrying while the store is unreachable (until ``deadline``). A batch
    the store refuses (one activity it cannot hold) is split until that one is alone, so the
    others are created; the refused one is logged, and the worker that takes its task tries
    again from the task."""
    wait = Backoff(0.05, 2.0)
    while True:
        try:
            await _create(store, items)
            return
        except Exception as exc:
            if is_transient(exc, store):
                if time.monotonic() >= deadline:
                    log.error(
                        "agentexec: %d queued activities not created (%s); workers create "
                        "them when they take the tasks", len(items), describe(exc),
                    )
                    return
                log.warning("agentexec: creating %d queued activities failed (%s); retrying",
                            len(items), describe(exc))
                await wait.sleep()
                continue
            if len(items) == 1:
                agent_id, task_name = items[0][0], items[0][1]
                log.error(
                    "agentexec: the store refused the activity of %s (task %r): %s",
                    agent_id, clean_text(task_name, 80), describe(exc),
                )
                return
            half = len(items) // 2
            await _create_isolated(store, items[:half], deadline)
            await _create_isolated(store, items[half:], deadline)
            return


async def _create(store: ActivityStore, items: list[ActivityItem]) -> None:
    try:
        await store.acreate_many(items)
    except UnicodeError:
        raise  # text no driver takes: _create_isolated finds which
    except ValueError:
        # one already exists: the worker that took its task first created it (enqueue's
        # agent_ids are fresh uuid4s); create the others one by one
        for item in items:
            try:
                if len(item) > 3:
                    await store.acreate(item[1], item[2], item[0], item[3])  # type: ignore[misc]
                else:
                    await store.acreate(item[1], item[2], item[0])
            except UnicodeError:
                raise
            except ValueError:
                pass


CREATES = CreateBehind()
atexit.register(CREATES.flush)


def created(agent_id: UUID | None = None) -> None:
    """Wait until this process's queued activity of ``agent_id`` (all, when ``None``) exists."""
    CREATES.wait(agent_id)


async def acreated(agent_id: UUID | None = None) -> None:
    await CREATES.await_written(agent_id)
