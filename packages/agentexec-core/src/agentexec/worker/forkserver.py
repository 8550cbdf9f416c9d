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

Protocol, newline-delimited JSON over a socket pair:
pool → server ``{"op": "spawn", "index": i, "consumer": id}``, ``{"op": "quit"}``;
server → pool ``{"op": "spawned", "index": i, "pid": p}``,
``{"op": "exited", "pid": p, "code": c, "signal": s}``.
The server exits, killing its workers, on ``quit``, when the socket closes, or when the pool
process is gone (plus the parent-death signal on Linux).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from agentexec.worker.process import STOP_SIGNALS, WorkerSpec, fork_worker, set_parent_death_signal

#: builds a worker's spec in the server: (index, consumer id, the server's pid) -> spec
SpecFactory = Callable[[int, str, int], WorkerSpec]


class ForkServer:
    def __init__(self, make_spec: SpecFactory) -> None:
        self.make_spec = make_spec
        self.pid = 0
        self.sock: socket.socket | None = None
        self._buffer = b""

    def start(self) -> None:
        """Fork the server (call before the pool starts any thread)."""
        ours, theirs = socket.socketpair()
        pool_pid = os.getpid()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                ours.close()
                code = _serve(theirs, self.make_spec, pool_pid)
            except BaseException:
                try:
                    traceback.print_exc()
                except BaseException:
                    pass
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        self.pid, self.sock = pid, ours

    def send(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            return
        data = (json.dumps(message) + "\n").encode()
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the server is gone; the supervisor notices through waitpid
        finally:
            self.sock.setblocking(False)

    def spawn(self, index: int, consumer_id: str) -> None:
        self.send({"op": "spawn", "index": index, "consumer": consumer_id})

    def read(self) -> list[dict[str, Any]]:
        """Messages received so far (non-blocking)."""
        if self.sock is None:
            return []
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self._buffer += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return []
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> None:
        """Ask the server to exit (killing any worker still there) and reap it."""
        self.send({"op": "quit"})
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0

    def alive(self) -> bool:
        if not self.pid:
            return False
        try:
            got, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if got:
            self.pid = 0
            return False
        return True


def _serve(sock: socket.socket, make_spec: SpecFactory, pool_pid: int) -> int:
    set_parent_death_signal()
    if os.getppid() != pool_pid:
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the process group: the pool decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    children: set[int] = set()
    buffer = b""

    def say(message: dict[str, Any]) -> None:
        sock.sendall((json.dumps(message) + "\n").encode())

    try:
        while os.getppid() == pool_pid:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    break  # the pool closed its end
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                quit_ = False
                for message in _decode(lines):
                    if message.get("op") == "quit":
                        quit_ = True
                        break
                    if message.get("op") == "spawn":
                        spec = make_spec(int(message["index"]), str(message["consumer"]), os.getpid())
                        # SIGTERM stays blocked until the worker has its own handler
                        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                        try:
                            pid = fork_worker(spec, in_child=sock.close)
                        finally:
                            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                        children.add(pid)
                        say({"op": "spawned", "index": spec.index, "pid": pid})
                if quit_:
                    break
            for pid, code, sig in _reap():
                children.discard(pid)
                say({"op": "exited", "pid": pid, "code": code, "signal": sig})
    except OSError:
        pass  # the socket broke: the pool is gone
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
