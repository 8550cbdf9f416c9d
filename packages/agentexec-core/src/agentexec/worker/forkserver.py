"""The fork server: a single-threaded copy of the pool process that forks every worker.

``fork()`` copies only the calling thread, but it copies all memory, including the C-level
locks other threads hold at that instant. A worker forked while some thread of the pool process
was inside SQLite (the pool's own log relay polls the database on the embedded backend) starts
with SQLite's internal mutex locked and hangs on its first query. Measured: about one fork in
twenty, with a thread reading SQLite in a loop.

So ``pool.start()`` forks this server first, before the pool starts any thread of its own; the
server never runs a thread, an event loop or a query. It forks the workers the pool asks for
(the initial ones and every replacement), reaps them, and reports their exits. Each worker is a
clean copy of the pool as it was at ``start()``, with every registered task.

Surviving the server's death (``kill -9``, the OOM killer): the pool must not stop, and the
workers must not die with it.

- The workers outlive it: the pool process is a child subreaper, so they are adopted by the
  pool process, which reaps them itself from then on (see :mod:`.process`).
- Its replacement must be as clean a copy as the server itself, and the pool process can no
  longer make one (it runs threads now). So the server keeps a *standby*: a fork of itself,
  idle and single-threaded, whose socket it hands to the pool (``SCM_RIGHTS``). When the server
  dies the pool promotes the standby, which becomes the server and forks a standby of its own.
  A standby that dies is forked again by its server. Only when the server and its standby are
  both gone does the pool fork a new server from its own, threaded, process
  (:meth:`ForkServer.replace`): the last resort, which carries the hazard above. A server
  stuck that way (or stopped) stops answering the pool's pings, and the pool kills it and
  replaces it like a dead one.

Why a standby rather than, say, re-executing the program: the pool is often built at module
level of a script with no ``__main__`` guard (see :mod:`.process`), so a fresh interpreter
cannot rebuild it; a fork of a clean copy is the only other clean copy.

Signals: the server and its standby ignore SIGINT and SIGTERM, which reach them too when the
whole process group is signalled: the pool process decides, and stops them with ``quit``.

Protocol, newline-delimited JSON over a socket pair:
pool → server ``{"op": "spawn", "index": i, "consumer": id}``, ``{"op": "ping"}``,
``{"op": "quit"}``;
server → pool ``{"op": "spawned", "index": i, "pid": p}``, ``{"op": "pong"}``,
``{"op": "exited", "pid": p, "code": c, "signal": s}``,
``{"op": "standby", "pid": p}`` with the standby's socket attached;
pool → standby ``{"op": "promote"}``, after which it is the server on that same socket.
The server exits, killing its workers and its standby, on ``quit`` or when the socket closes;
every pool process exits when the pool process is gone (:func:`.process.tie_to_pool`).
"""

from __future__ import annotations

import contextvars
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agentexec.worker.process import (
    PROCESS_NAME_PREFIX,
    STOP_SIGNALS,
    WorkerSpec,
    fork_worker,
    open_gate,
    set_process_name,
    tie_to_pool,
)

#: builds a worker's spec in the server: (index, consumer id, the server's pid, the pool's pid)
SpecFactory = Callable[[int, str, int, int], WorkerSpec]

#: a standby that dies sooner than this after its fork is forked again only after this long
STANDBY_RETRY = 0.5
#: how long the pool waits for a process it stops to exit before it kills it
STOP_WAIT = 5.0


@dataclass
class Standby:
    """The pool's handle on its server's standby."""

    pid: int
    sock: socket.socket


class ForkServer:
    """The pool's side of its fork server (and of the standby the server keeps)."""

    def __init__(self, make_spec: SpecFactory) -> None:
        self.make_spec = make_spec
        self.pid = 0
        self.pool_pid = 0
        self.sock: socket.socket | None = None
        self.standby: Standby | None = None
        self._buffer = b""
        self._fds: deque[int] = deque()
        #: when the unanswered ping was sent (None: none is), and when the last answer came
        self.pinged_at: float | None = None
        self.ponged_at = 0.0

    def start(self) -> None:
        """Fork the server (call before the pool starts any thread)."""
        self.pool_pid = os.getpid()
        self._fork_here()

    def _fork_here(self) -> None:
        ours, theirs = socket.socketpair()
        _flush_stdio()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                ours.close()
                if self.standby is not None:
                    self.standby.sock.close()
                # the last resort forks from inside the supervisor's event loop, whose context
                # says "asyncio is running here" (sniffio): the workers' anyio.run would refuse
                code = contextvars.Context().run(_serve, theirs, self.make_spec, self.pool_pid)
            except BaseException:
                _print_exc()
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        self._serving(pid, ours)

    def _serving(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock, self._buffer = pid, sock, b""
        self.pinged_at, self.ponged_at = None, time.monotonic()

    def send(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            return
        self.sock.setblocking(True)
        try:
            self.sock.sendall(_encode(message))
        except OSError:
            pass  # the server is gone; the supervisor notices through waitpid
        finally:
            self.sock.setblocking(False)

    def spawn(self, index: int, consumer_id: str) -> None:
        self.send({"op": "spawn", "index": index, "consumer": consumer_id})

    def ping(self) -> None:
        """Ask the server to answer (:meth:`read` notes the answer): a stuck one never does."""
        self.pinged_at = time.monotonic()
        self.send({"op": "ping"})

    def read(self) -> list[dict[str, Any]]:
        """Messages received so far (non-blocking); a new standby is taken in on the way."""
        if self.sock is None:
            return []
        try:
            while True:
                chunk, fds, _, _ = socket.recv_fds(self.sock, 65536, 8)
                self._fds.extend(fds)
                if not chunk:
                    break
                self._buffer += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass
        *lines, self._buffer = self._buffer.split(b"\n")
        messages = list(_decode(lines))
        for message in messages:
            if message.get("op") == "standby" and self._fds:
                self._take_standby(int(message["pid"]), self._fds.popleft())
            elif message.get("op") == "pong":
                self.pinged_at, self.ponged_at = None, time.monotonic()
        return messages

    def _take_standby(self, pid: int, fd: int) -> None:
        if self.standby is not None:  # its server replaced it: the old one is dead
            self.standby.sock.close()
        self.standby = Standby(pid, socket.socket(fileno=fd))

    def alive(self) -> bool:
        """Whether the server runs (a dead one is reaped here)."""
        if not self.pid:
            return False
        return _child_running(self.pid)

    def lost(self) -> int:
        """Forget a dead server once its last messages were read; returns its pid."""
        pid, self.pid = self.pid, 0
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._buffer = b""
        for fd in self._fds:  # a standby announced in a line the server never finished
            os.close(fd)
        self._fds.clear()
        return pid

    def replace(self) -> str:
        """Make a new server after :meth:`lost`: promote the standby, or, when it is gone too,
        fork one from this process (the last resort). Returns which it did."""
        standby, self.standby = self.standby, None
        if standby is not None and _child_running(standby.pid):
            try:
                standby.sock.setblocking(True)
                standby.sock.sendall(_encode({"op": "promote"}))
            except OSError:
                standby.sock.close()
                _stop_child(standby.pid, 0)
            else:
                standby.sock.setblocking(False)
                self._serving(standby.pid, standby.sock)
                return "standby"
        elif standby is not None:
            standby.sock.close()
        self._fork_here()
        return "fork"

    def stop(self) -> None:
        """Ask the server to exit (killing any worker still there and its standby) and reap it."""
        self.send({"op": "quit"})
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.pid:
            _stop_child(self.pid, STOP_WAIT)
            self.pid = 0
        standby, self.standby = self.standby, None
        if standby is not None:
            # its server has killed it; one adopted after its server died exits on this close
            standby.sock.close()
            _stop_child(standby.pid, STOP_WAIT)
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def _child_running(pid: int) -> bool:
    """Whether ``pid``, a child of this process, still runs; reaps it if it ended. A pid that is
    not (or no longer) our child counts as ended: one whose first parent reaped it before dying
    is never handed to us."""
    try:
        got, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return got == 0


def _stop_child(pid: int, wait: float) -> None:
    """Wait up to ``wait`` seconds for child ``pid`` to exit, then kill it; reap it either way."""
    deadline = time.monotonic() + wait
    while _child_running(pid):
        if time.monotonic() >= deadline:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            return
        time.sleep(0.01)


def reap_strays(known: set[int]) -> list[int]:
    """Reap this process's dead children that a pool process left behind and nobody waits for
    (a worker or standby whose server died before announcing it); returns their pids. Only
    processes named by agentexec (``agentexec:...``) and not in ``known`` are touched: other
    children of the pool process belong to the application."""
    me, reaped = os.getpid(), []
    for pid in _children(me):
        if pid in known:
            continue
        state, name = _stat(pid)
        if state == "Z" and name.startswith(PROCESS_NAME_PREFIX):
            try:
                os.waitpid(pid, os.WNOHANG)
                reaped.append(pid)
            except ChildProcessError:
                pass
    return reaped


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def _stat(pid: int) -> tuple[str, str]:
    """A process's state letter and name, from /proc (``("", "")`` when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return "", ""
    name = stat[stat.find("(") + 1 : stat.rfind(")")]
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0], name


# -- in the server -------------------------------------------------------------------------------
def _serve(sock: socket.socket, make_spec: SpecFactory, pool_pid: int, buffer: bytes = b"") -> int:
    set_process_name("fork")
    _ignore_stop_signals()
    if not tie_to_pool(pool_pid, watchdog=False):
        return 1
    children: set[int] = set()
    standby = 0
    standby_at = 0.0
    standby_since = 0.0

    def say(message: dict[str, Any]) -> None:
        sock.sendall(_encode(message))

    try:
        while os.getppid() == pool_pid:
            if not standby and time.monotonic() >= standby_at:
                standby, standby_since = _fork_standby(sock, make_spec, pool_pid), time.monotonic()
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable or buffer:
                chunk = sock.recv(65536) if readable else b""
                if readable and not chunk:
                    break  # the pool closed its end
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                quit_ = False
                for message in _decode(lines):
                    if message.get("op") == "quit":
                        quit_ = True
                        break
                    if message.get("op") == "ping":
                        say({"op": "pong"})
                    if message.get("op") == "spawn":
                        spec = make_spec(
                            int(message["index"]), str(message["consumer"]), os.getpid(), pool_pid
                        )
                        # SIGTERM stays blocked until the worker has its own handler
                        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                        try:
                            pid, gate = fork_worker(spec, in_child=sock.close)
                        finally:
                            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                        children.add(pid)
                        try:
                            say({"op": "spawned", "index": spec.index, "pid": pid})
                        finally:
                            open_gate(gate)  # only now may it take tasks: the pool knows it
                if quit_:
                    break
            for pid, code, sig in _reap():
                if pid == standby:
                    standby = 0
                    quick = time.monotonic() - standby_since < STANDBY_RETRY
                    standby_at = time.monotonic() + (STANDBY_RETRY if quick else 0.0)
                    continue
                children.discard(pid)
                say({"op": "exited", "pid": pid, "code": code, "signal": sig})
    except OSError:
        pass  # the socket broke: the pool is gone
    if standby:
        children.add(standby)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return 0


def _fork_standby(sock: socket.socket, make_spec: SpecFactory, pool_pid: int) -> int:
    """Fork this server's standby and hand its socket to the pool; returns its pid."""
    ours, theirs = socket.socketpair()
    server_pid = os.getpid()
    _flush_stdio()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            set_process_name("spare")  # comm holds 15 bytes: agentexec:standby would not fit
            sock.close()
            ours.close()
            code = _stand_by(theirs, make_spec, pool_pid, server_pid)
        except BaseException:
            _print_exc()
        finally:
            os._exit(code)
    theirs.close()
    try:
        socket.send_fds(sock, [_encode({"op": "standby", "pid": pid})], [ours.fileno()])
    finally:
        ours.close()  # the pool holds the only other end now
    return pid


def _stand_by(sock: socket.socket, make_spec: SpecFactory, pool_pid: int, server_pid: int) -> int:
    """A standby's life: wait, idle, until the pool promotes it, then serve."""
    _ignore_stop_signals()
    if not tie_to_pool(server_pid, pool_pid, watchdog=False):
        return 1
    buffer = b""
    while os.getppid() in (server_pid, pool_pid):
        readable, _, _ = select.select([sock], [], [], 0.5)
        if not readable:
            continue
        chunk = sock.recv(65536)
        if not chunk:
            return 0  # no one holds the other end: its server died before handing it over
        buffer += chunk
        line, sep, rest = buffer.partition(b"\n")
        if sep:
            if json.loads(line).get("op") == "promote":
                return _serve(sock, make_spec, pool_pid, rest)
            buffer = rest
    return 1


def _ignore_stop_signals() -> None:
    # a group SIGTERM/SIGINT (Ctrl+C, systemd, docker stop) reaches this process too: the pool
    # process coordinates the stop and ends this one with ``quit``
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        signal.set_wakeup_fd(-1)  # the pool's event loop may have set one
    except (ValueError, OSError):
        pass


def _encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


def _decode(lines: list[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            message = json.loads(line)
            if isinstance(message, dict):
                yield message


def _reap() -> Iterator[tuple[int, int | None, int | None]]:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status):
            yield pid, None, os.WTERMSIG(status)
        else:
            yield pid, os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, None


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or the child would print the parent's buffered output again
        except Exception:
            pass


def _print_exc() -> None:
    try:
        traceback.print_exc()
    except BaseException:
        pass
