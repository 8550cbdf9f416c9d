"""Worker processes: forked from one quiet thread, tied to the pool's lifetime.

Why ``fork``: the spec's own example defines a pool at module level and calls ``pool.run()``
with no ``if __name__ == "__main__"`` guard. ``spawn`` and ``forkserver`` start a fresh
interpreter that re-imports ``__main__``, which would run ``pool.run()`` again in every worker
(recursive spawning) and needs the guard. A forked child instead starts as a copy of the pool's
process at the moment of the fork: every task registered with ``@pool.task`` is already there and
nothing is imported again.

Fork hazards, and what we do about them:
- Only the forking thread exists in the child, with a copy of every lock other threads held at
  that instant. Every worker is forked by the pool's fork server (:mod:`.forkserver`), a
  single-threaded copy of the pool made at ``start()``, so no worker starts inside a lock or
  an event loop.
- Connections inherited from the parent must not be used or closed by the child: the child
  builds its own backends (engines are disposed without closing, per SQLAlchemy's advice) and
  keeps the inherited objects referenced so no finalizer touches a shared socket.
- Signals: Ctrl+C reaches the whole terminal process group, so workers ignore SIGINT and let
  the pool coordinate; SIGTERM means "finish the running tasks and exit".
- Workers never outlive the pool: on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` kills a worker
  when its parent (the fork server) ends, and kills the fork server when the pool process ends;
  elsewhere, and as a second guard, a watchdog exits when the parent process is gone.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from agentexec.activity.creates import CREATES
from agentexec.runtime import Backends, get_backends, has_backends, set_backends
from agentexec.task import TaskDefinition
from agentexec.worker.channels import logs_channel
from agentexec.worker.consumer import Worker
from agentexec.worker.lanes import Lane
from agentexec.worker.logs import LogForwarder, install_forwarder

log = logging.getLogger("agentexec.worker")

PR_SET_PDEATHSIG = 1
#: how often a worker checks that its pool process is still there
WATCHDOG_INTERVAL = 1.0
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

#: objects inherited from the parent, kept alive so their finalizers never run in the child
_inherited: list[Any] = []
_term_requested = False


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a forked worker needs (it inherits these objects through the fork)."""

    index: int
    consumer_id: str
    pool_id: str
    queue_name: str
    lanes: Sequence[Lane]
    definitions: Mapping[str, TaskDefinition]
    make_backends: Callable[[], Backends]
    parent_pid: int
    engine: Any = None


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when the thread that forked it ends."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def fork_worker(spec: WorkerSpec, in_child: Callable[[], None] | None = None) -> int:
    """Fork a worker process running ``spec``; returns its pid (in the parent only).
    ``in_child`` runs first in the child (to close the parent's private descriptors)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or the child would print the parent's buffered output again
        except Exception:
            pass
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        if in_child is not None:
            in_child()
        code = _child_main(spec)
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        # never return into the parent's stack, and skip its atexit handlers and finalizers
        os._exit(code)


def _on_term(signum: int, frame: Any) -> None:
    global _term_requested
    _term_requested = True


def _child_main(spec: WorkerSpec) -> int:
    set_parent_death_signal()
    if os.getppid() != spec.parent_pid:  # the pool died between fork() and prctl()
        return 1
    try:
        signal.set_wakeup_fd(-1)  # the parent's event loop may have set one
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    forwarder = install_forwarder(spec.index)
    if has_backends():
        _inherited.append(get_backends())
    if spec.engine is not None:
        _inherited.append(spec.engine)
        dispose = getattr(spec.engine, "dispose", None)
        if callable(dispose):
            dispose(close=False)  # fresh connections for this process; the parent keeps its own
    backends = spec.make_backends()
    set_backends(backends)
    _open_global_session(spec.engine, backends)
    # everything inherited from the pool and built so far lives as long as the worker: out of
    # the collector's reach, a full collection scans only what tasks allocate (measured: 500
    # concurrent tasks otherwise stall 30-60 ms now and then in one), and copy-on-write pages
    # shared with the pool stay shared
    gc.freeze()
    anyio.run(_serve, spec, backends, forwarder)
    CREATES.flush()  # activities of tasks its handlers enqueued (the child skips atexit)
    return 0


def _open_global_session(engine: Any, backends: Backends) -> None:
    """Each worker gets its process-local SQLAlchemy session (spec: worker initialization)."""
    engine = engine if engine is not None else getattr(backends.activity, "engine", None)
    if engine is None:
        return
    try:
        from agentexec.core.db import set_global_session
    except ImportError:
        return
    try:
        set_global_session(engine)
    except Exception as exc:
        log.warning("could not set up the worker's global database session: %s", exc)


async def _serve(spec: WorkerSpec, backends: Backends, forwarder: LogForwarder) -> None:
    worker = Worker(
        index=spec.index,
        consumer_id=spec.consumer_id,
        pool_id=spec.pool_id,
        queue_name=spec.queue_name,
        lanes=spec.lanes,
        definitions=spec.definitions,
        backends=backends,
        listen_for_shutdown=True,
    )
    channel = logs_channel(spec.queue_name)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(forwarder.publish, backends.events, channel)
            tg.start_soon(_stop_on_sigterm, worker)
            tg.start_soon(_watch_parent, spec.parent_pid)
            log.debug("Worker started (pid %d)", os.getpid())
            await worker.run()
            log.debug("Worker stopped (pid %d)", os.getpid())
            tg.cancel_scope.cancel()
        with anyio.move_on_after(5):
            await forwarder.flush_to(backends.events, channel)
            await backends.events.publish(
                channel, f'{{"worker": {spec.index}, "pid": {os.getpid()}, "event": "exit"}}'
            )
    finally:
        with anyio.move_on_after(5, shield=True):
            await backends.aclose()


async def _stop_on_sigterm(worker: Worker) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        if _term_requested:  # arrived before the receiver was in place
            worker.stop()
        async for _ in signals:
            worker.stop()


async def _watch_parent(parent_pid: int) -> None:
    while True:
        await anyio.sleep(WATCHDOG_INTERVAL)
        if os.getppid() != parent_pid:
            # the pool is gone (no parent-death signal on this platform): do not outlive it
            os._exit(1)
