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
- Signals: every process of the pool may get a signal meant for the whole process group
  (Ctrl+C in a terminal; systemd's KillMode=control-group and ``docker stop`` send SIGTERM to
  every process). Workers ignore SIGINT and treat SIGTERM as "finish the running tasks, take
  no more, exit": the same drain the pool process starts on either signal, so a group signal
  and a signal to the pool process end the same way.
- Workers never outlive the pool, yet outlive their fork server. The pool process is a child
  subreaper (``PR_SET_CHILD_SUBREAPER``), so a worker whose fork server dies is adopted by the
  pool process rather than by init, and keeps running its tasks. Its parent-death signal is
  therefore not SIGKILL (Linux sends it again at every adoption) but :data:`PARENT_GONE_SIGNAL`,
  whose handler exits only when the new parent is not the pool process; a watchdog thread
  checks the same every :data:`WATCHDOG_INTERVAL` seconds (and is the only guard elsewhere).
- A worker starts only once its fork server has told the pool its pid (:func:`fork_worker`'s
  gate): a server killed between ``fork()`` and that message leaves no worker the pool does not
  know about.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from agentexec.activity.creates import CREATES
from agentexec.config import CONF
from agentexec.lanes import Lane
from agentexec.runtime import Backends, get_backends, has_backends, set_backends
from agentexec.task import TaskDefinition
from agentexec.worker.channels import logs_channel
from agentexec.worker.consumer import Worker
from agentexec.worker.logs import LogForwarder, install_forwarder

log = logging.getLogger("agentexec.worker")

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
#: how often a worker checks that its pool process is still there
WATCHDOG_INTERVAL = 1.0
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: the parent-death signal of every process of the pool. Its default action is to do nothing,
#: so one that arrives before its handler is in place is harmless; nothing else sends it (it
#: means out-of-band data on a socket that asked for it with F_SETOWN)
PARENT_GONE_SIGNAL = signal.SIGURG
#: a worker that drained itself to be recycled (``CONF.max_tasks_per_worker``,
#: ``CONF.max_worker_rss_mb``) exits with this code: the pool replaces it at once, quietly
RECYCLED_EXIT_CODE = 75
#: the prefix of every pool process's name (``ps -o comm``): ``agentexec:w0`` is worker 0
PROCESS_NAME_PREFIX = "agentexec:"

#: resolved once, at import: a child forked from a threaded process must not dlopen (the
#: loader's lock may have been copied held)
_libc: Any = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        pass

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
    #: the fork server that forks it
    parent_pid: int
    #: the pool's main process, which adopts the worker if its fork server dies
    pool_pid: int
    engine: Any = None
    #: ``anyio.run``'s backend options (:func:`agentexec.worker.event_loop.worker_loop_options`)
    loop_options: dict[str, Any] = field(default_factory=dict)


def _prctl(option: int, arg: int) -> int | None:
    """``prctl(option, arg)``'s result, or None where there is no prctl (not Linux)."""
    if _libc is None:
        return None
    try:
        return int(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))
    except AttributeError:
        return None


def set_parent_death_signal(sig: int = PARENT_GONE_SIGNAL) -> bool:
    """Ask Linux to send ``sig`` to this process when the thread that forked it ends, and again
    whenever it is adopted by another parent."""
    return _prctl(PR_SET_PDEATHSIG, int(sig)) == 0


def set_child_subreaper(on: bool = True) -> bool:
    """Make this process adopt its orphaned descendants (instead of init); False where it can't."""
    return _prctl(PR_SET_CHILD_SUBREAPER, int(on)) == 0


def is_child_subreaper() -> bool:
    if _libc is None:
        return False
    try:
        flag = ctypes.c_int(0)
        return bool(_libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value)
    except AttributeError:
        return False


def set_process_name(name: str) -> None:
    """Name this process for ``ps``/``top`` (``comm``, 15 bytes; the command line stays)."""
    if _libc is None:
        return
    try:
        _libc.prctl(PR_SET_NAME, ctypes.c_char_p((PROCESS_NAME_PREFIX + name).encode()[:15]), 0, 0, 0)
    except AttributeError:
        pass


def tie_to_pool(*parents: int, watchdog: bool = True) -> bool:
    """Exit at once whenever this process's parent is none of ``parents`` (its forker and the
    pool process): on :data:`PARENT_GONE_SIGNAL` (Linux) and, with ``watchdog``, from a thread
    that checks every :data:`WATCHDOG_INTERVAL` (the fork server and its standby run no thread:
    their own loops check). Returns False when that is already the case (the pool died before
    the signal was set up)."""
    allowed = frozenset(parents)

    def on_parent_gone(signum: int, frame: Any) -> None:
        if os.getppid() not in allowed:
            os._exit(1)  # the pool is gone: nothing left to report to or clean up for

    signal.signal(PARENT_GONE_SIGNAL, on_parent_gone)
    set_parent_death_signal(PARENT_GONE_SIGNAL)
    if os.getppid() not in allowed:
        return False
    if not watchdog:
        return True
    # a thread, not a task on the event loop: a handler that blocks the loop must not keep
    # the worker alive after its pool
    threading.Thread(target=_watch_parent, args=(allowed,), name="agentexec-watchdog", daemon=True).start()
    return True


def _watch_parent(allowed: frozenset[int]) -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL)
        if os.getppid() not in allowed:
            os._exit(1)


def fork_worker(spec: WorkerSpec, in_child: Callable[[], None] | None = None) -> tuple[int, int]:
    """Fork a worker process running ``spec``; returns its pid and its gate (in the parent).

    The worker waits until a byte is written to the gate, which the parent does once the pool
    knows the pid; if the gate closes first (the parent died), the worker exits without taking
    any task. ``in_child`` runs first in the child (to close the parent's private descriptors)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or the child would print the parent's buffered output again
        except Exception:
            pass
    gate_out, gate_in = os.pipe()
    pid = os.fork()
    if pid:
        os.close(gate_out)
        return pid, gate_in
    code = 70
    try:
        set_process_name(f"w{spec.index}")
        os.close(gate_in)
        if in_child is not None:
            in_child()
        opened = os.read(gate_out, 1)
        os.close(gate_out)
        code = _child_main(spec) if opened else 1
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


def open_gate(gate: int) -> None:
    """Let the worker forked with ``gate`` start (see :func:`fork_worker`)."""
    try:
        os.write(gate, b"1")
    except OSError:
        pass  # the worker is already gone
    finally:
        os.close(gate)


def _on_term(signum: int, frame: Any) -> None:
    global _term_requested
    _term_requested = True


def _child_main(spec: WorkerSpec) -> int:
    if not tie_to_pool(spec.parent_pid, spec.pool_pid):
        return 1
    try:
        signal.set_wakeup_fd(-1)  # the parent's event loop may have set one
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    forwarder = install_forwarder(spec.index, spec.pool_id)
    # the forwarder sends no caller information (the main process prints "(worker)"), so the
    # frame walk of every logging call is skipped: the logging HOWTO's "Optimization" switch
    logging._srcfile = None
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
    recycled = anyio.run(_serve, spec, backends, forwarder, backend_options=spec.loop_options)
    CREATES.flush()  # activities of tasks its handlers enqueued (the child skips atexit)
    return RECYCLED_EXIT_CODE if recycled else 0


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


async def _serve(spec: WorkerSpec, backends: Backends, forwarder: LogForwarder) -> bool:
    """Run the worker until it stops; True when it stopped to be recycled."""
    worker = Worker(
        index=spec.index,
        consumer_id=spec.consumer_id,
        pool_id=spec.pool_id,
        queue_name=spec.queue_name,
        lanes=spec.lanes,
        definitions=spec.definitions,
        backends=backends,
        listen_for_shutdown=True,
        max_tasks=CONF.max_tasks_per_worker,
        max_rss_mb=CONF.max_worker_rss_mb,
    )
    channel = logs_channel(spec.queue_name)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(forwarder.publish, backends.events, channel)
            tg.start_soon(_stop_on_sigterm, worker)
            log.debug("Worker started (pid %d)", os.getpid())
            await worker.run()
            log.debug("Worker stopped (pid %d)", os.getpid())
            tg.cancel_scope.cancel()
        with anyio.move_on_after(5):
            await forwarder.flush_to(backends.events, channel, final=True)
            await backends.events.publish(channel, json.dumps(
                {"worker": spec.index, "pool": spec.pool_id, "pid": os.getpid(), "event": "exit"}
            ))
    finally:
        with anyio.move_on_after(5, shield=True):
            await backends.aclose()
    return worker.recycled is not None


async def _stop_on_sigterm(worker: Worker) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        if _term_requested:  # arrived before the receiver was in place
            worker.stop()
        async for _ in signals:
            worker.stop()
