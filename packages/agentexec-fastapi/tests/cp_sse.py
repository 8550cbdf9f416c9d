"""A small server-sent-events client for the tests: reads a stream in a thread, keeping each
event with the time it arrived."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit


@dataclass
class Received:
    id: int
    data: dict[str, Any]
    at: float


@dataclass
class Stream:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Received] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    keepalives: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _sock: socket.socket | None = None

    def __enter__(self) -> Stream:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.connected.wait(30), f"the stream {self.url} did not open (status {self.status})"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sock is not None:  # unblocks the reader at once (no wait for a keep-alive)
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(10)

    def _read(self) -> None:
        # a raw socket, so that leaving the block can cut the connection from this thread
        url = urlsplit(self.url)
        with socket.create_connection((url.hostname, url.port or 80), timeout=None) as sock:
            self._sock = sock
            target = url.path + (f"?{url.query}" if url.query else "")
            head = [f"GET {target} HTTP/1.1", f"Host: {url.netloc}", "Accept: text/event-stream",
                    *(f"{k}: {v}" for k, v in self.headers.items())]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            reader = sock.makefile("rb")
            try:
                self.status = int(reader.readline().split()[1])
                headers = {}
                while (line := reader.readline().strip()):
                    key, _, value = line.decode().partition(":")
                    headers[key.lower()] = value.strip()
                if self.status != 200:
                    self.connected.set()
                    return
                self._events(_body(reader, headers.get("transfer-encoding") == "chunked"))
            except (OSError, ValueError, IndexError):
                if not self._stop.is_set():
                    raise
            finally:
                self.connected.set()

    def _events(self, lines: Iterator[str]) -> None:
        event: dict[str, str] = {}
        for line in lines:
            if self._stop.is_set():
                return
            if line.startswith(": connected"):
                self.connected.set()
            elif line.startswith(": keep-alive"):
                self.keepalives += 1
            elif line == "":
                if "data" in event:
                    self.events.append(Received(int(event["id"]), json.loads(event["data"]), time.time()))
                event = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                event[key] = value.removeprefix(" ")

    def of(self, agent_id: str) -> list[Received]:
        return [e for e in list(self.events) if e.data["agent_id"] == agent_id]

    def wait_for(self, check: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"stream: not within {timeout}s; got {[e.data for e in self.events]}"
            time.sleep(0.01)


def _body(reader: IO[bytes], chunked: bool) -> Iterator[str]:
    """The lines of a response body (HTTP/1.1 chunked transfer coding undone)."""
    pending = b""
    while True:
        if chunked:
            size = int(reader.readline().strip() or b"0", 16)
            if size == 0:
                return
            data = reader.read(size)
            reader.readline()
        else:
            data = reader.read1(65536)  # type: ignore[attr-defined]
            if not data:
                return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode().rstrip("\r")
