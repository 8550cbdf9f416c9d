"""Worker log records travel to the pool's main process, which prints them as ``[Worker N] ...``.

In a worker process every record that the inherited logging configuration lets through is sent,
once, on the ``logs:<queue>`` channel. The main process hands each one to the logger of the same
name, so the user's handlers, formats and levels apply as if the record had been logged there.

The records a worker logged meanwhile travel together: one message holds a JSON array of them
(at most ``BATCH_RECORDS`` and about ``CONF.max_event_bytes``), so a busy worker's two lines per
task cost the events backend, and the main process reading it, a message per batch, not one
per line. A message holding one object is one record (what a worker's exit notice is).

The per-task lines (``Processing task`` / ``Task completed``, the spec's log format) mostly do not
travel at all:
when every handler that would print them in the main process only writes to a file descriptor
the worker shares (``agentexec run``'s console, a ``logging.basicConfig`` stream or file), the
worker formats them with those handlers and writes them itself, batched, each write whole lines
of at most ``PIPE_BUF`` bytes (so lines of several workers never mix). Relayed, they cost more
than a no-op task itself (two messages through the events backend, decoded and printed by the
main process: measured ~400 us of worker CPU and ~280 us of the main process's per task on the
SQL stacks). Handlers of any other kind (a rotating file, a socket, a test's capture) keep
getting them in the main process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import Any

import anyio

from agentexec.backends import BatchPublish, EventBackend
from agentexec.backoff import Backoff
from agentexec.config import CONF
from agentexec.faults import clean_text, describe, is_transient
from agentexec.lifecycle import COMPLETED, PROCESSING, current_task
from agentexec.limits import joined, pack, truncate

#: records kept while the events backend is slow; past this the oldest are dropped (and counted)
BUFFER = 10_000
#: most records in one message on the logs channel
BATCH_RECORDS = 500
#: a worker that just logged waits this long (seconds) for more records before it sends them,
#: unless it already holds ``LINGER_RECORDS`` or a warning: fewer, larger messages under a steady
#: stream, and an error out before the worker can die with it. The per-task lines it prints
#: itself linger alike: with handlers that await (slots ending one at a time), printing each
#: turn of the event loop's lines at once cost ~20 us of worker CPU per task (measured with
#: py-spy, ``benchmarks/cli_pool.py --hook``), a turn of this loop each time
LINGER = 0.01
LINGER_RECORDS = 200
#: the lifecycle's per-task lines, which a worker prints itself where it can
PER_TASK = frozenset({PROCESSING, COMPLETED})
PER_TASK_LOGGER = "agentexec.worker"
#: characters per write of printed lines: at most PIPE_BUF (4096) bytes in UTF-8, so a write to
#: a pipe is atomic and lines of several workers never interleave
WRITE_CHARS = 1024


class LogForwarder(logging.Handler):
    """In a worker process: sends log records to the main process over the events backend."""

    def __init__(
        self,
        worker_index: int,
        pool_id: str | None = None,
        printers: list[logging.StreamHandler[Any]] | None = None,
    ) -> None:
        super().__init__(logging.NOTSET)
        #: the handlers that print the per-task lines in this process (``None``: relay them)
        self.printers = printers
        #: per-task lines formatted by a printer, not written yet
        self._printed: list[tuple[logging.StreamHandler[Any], str]] = []
        self.worker_index = worker_index
        #: the pool the worker belongs to: its main process relays only its own workers' records
        self.pool_id = pool_id
        self.pid = os.getpid()
        self._buffer: deque[str] = deque(maxlen=BUFFER)
        self._dropped = 0
        self._wake: anyio.Event | None = None
        #: a warning or an error is buffered: send without lingering
        self._urgent = False
        #: :meth:`_linger` is waiting: a record or line wakes it only when urgent or full
        self._lingering = False
        self._loop_thread: int | None = None
        self._formatter = logging.Formatter()
        #: the events backend is unreachable: records are kept, and sent again after a pause
        self._down = False
        self._pause = 0.0
        self._pauses = Backoff(0.1, 2.0)  # while the events backend is unreachable
        #: messages no longer than this fit CONF.max_log_line_bytes whatever their characters
        self._short = CONF.max_log_line_bytes // 4

    def emit(self, record: logging.LogRecord) -> None:
        if self.printers is not None and record.msg in PER_TASK and record.name == PER_TASK_LOGGER:
            self._print(record)
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + self._formatter.formatException(record.exc_info)
            elif record.exc_text:
                message += "\n" + record.exc_text
            if record.stack_info:
                message += "\n" + self._formatter.formatStack(record.stack_info)
            if len(message) > self._short:
                message = truncate(message, CONF.max_log_line_bytes)
            if len(self._buffer) == self._buffer.maxlen:
                self._dropped += 1
            payload: dict[str, Any] = {
                "worker": self.worker_index,
                "pool": self.pool_id,
                "pid": self.pid,
                "level": record.levelname,
                "levelno": record.levelno,
                "logger": record.name,
                "message": message,
                "time": record.created,
            }
            task = current_task()
            if task is not None:  # for --log-format json: which task the line is about
                payload["task"] = task.task_name
                payload["agent_id"] = str(task.agent_id)
                payload["attempt"] = task.attempts + 1
            self._buffer.append(json.dumps(payload))
            if record.levelno >= logging.WARNING:
                self._urgent = True
            self._wake_publisher(len(self._buffer))
        except Exception:
            self.handleError(record)

    def _print(self, record: logging.LogRecord) -> None:
        """A per-task line, formatted as the main process would (``[Worker N] ...``, the worker
        and task on the record for ``--log-format json``), for :meth:`write_printed`."""
        try:
            record.msg = f"[Worker {self.worker_index}] {record.msg}"
            record.worker = self.worker_index
            task = current_task()
            if task is not None:
                record.task_name = task.task_name
                record.agent_id = str(task.agent_id)
                record.attempt = task.attempts + 1
            for handler in self.printers or ():
                if record.levelno >= handler.level:
                    self._printed.append((handler, handler.format(record) + handler.terminator))
            self._wake_publisher(len(self._printed))
        except Exception:
            self.handleError(record)

    def _wake_publisher(self, held: int) -> None:
        """A record or a line was added (``held``: how many of its kind wait): wake
        :meth:`publish`, unless it lingers anyway and the batch is neither full nor urgent."""
        wake = self._wake
        if wake is None or threading.get_ident() != self._loop_thread:
            return  # records from other threads are picked up by the next poll
        if not self._lingering or self._urgent or held >= LINGER_RECORDS:
            wake.set()

    def write_printed(self) -> None:
        """Write the per-task lines formatted so far: whole lines, at most ``WRITE_CHARS`` per
        write, one flush each."""
        if not self._printed:
            return
        printed, self._printed = self._printed, []
        start = 0
        while start < len(printed):
            handler = printed[start][0]
            end, size = start, 0
            while end < len(printed) and printed[end][0] is handler and (
                end == start or size + len(printed[end][1]) <= WRITE_CHARS
            ):
                size += len(printed[end][1])
                end += 1
            text = "".join(line for _, line in printed[start:end])
            start = end
            try:
                with handler.lock or threading.Lock():
                    handler.stream.write(text)
                    handler.stream.flush()
            except Exception as exc:  # as logging does by default: the program goes on
                _stderr(f"[Worker {self.worker_index}] cannot print log lines ({describe(exc)})")

    async def publish(self, events: EventBackend, channel: str) -> None:
        """Send buffered records until cancelled (run it in the worker's task group)."""
        self._loop_thread = threading.get_ident()
        while True:
            self._wake = anyio.Event()
            if self._down:
                await anyio.sleep(self._pause)
            elif not self._buffer and not self._printed:
                with anyio.move_on_after(0.05):
                    await self._wake.wait()
            if not self._down:
                await self._linger()
            self._urgent = False
            self.write_printed()
            with anyio.CancelScope(shield=True):  # a record is sent whole, and only once
                await self.flush_to(events, channel)

    async def _linger(self) -> None:
        """Let more records join the batch for up to ``LINGER`` seconds, unless it is full or
        holds a warning or an error: those go at once, because a worker that is about to die
        (``os._exit`` in a handler, the OOM killer) takes what it still holds along."""
        self._lingering = True
        try:
            with anyio.move_on_after(LINGER):
                while (
                    (self._buffer or self._printed) and not self._urgent
                    and len(self._buffer) < LINGER_RECORDS and len(self._printed) < LINGER_RECORDS
                ):
                    self._wake = anyio.Event()
                    await self._wake.wait()
        finally:
            self._lingering = False

    def _unreachable(self, events: EventBackend, exc: Exception, batch: list[str], final: bool) -> bool:
        """A publish failed: when the backend is only unreachable (and the worker is not
        exiting), keep ``batch`` to send again later and say so once; False otherwise (the
        caller prints the records instead)."""
        if final or not is_transient(exc, events):
            return False
        self._buffer.extendleft(reversed(batch))
        self._pause = self._pauses.next()
        if not self._down:
            self._down = True
            _stderr(
                f"[Worker {self.worker_index}] cannot forward logs ({describe(exc)}); keeping up "
                f"to {BUFFER} records until the events backend is back"
            )
        return True

    async def flush_to(self, events: EventBackend, channel: str, *, final: bool = False) -> None:
        if final:
            self.write_printed()
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self._buffer.appendleft(json.dumps({
                "worker": self.worker_index, "pool": self.pool_id, "pid": self.pid, "level": "WARNING",
                "levelno": logging.WARNING,
                "logger": "agentexec.worker", "time": time.time(),
                "message": f"{dropped} log record(s) dropped: the events backend was too slow",
            }))
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(len(self._buffer), BATCH_RECORDS))]
            groups = pack(batch, CONF.max_event_bytes, BATCH_RECORDS)
            try:
                if isinstance(events, BatchPublish):
                    await events.publish_many(channel, [joined(g) for g in groups])
                else:
                    for sent, group in enumerate(groups):
                        try:
                            await events.publish(channel, joined(group))
                        except Exception:
                            # what was sent stays sent: only the rest is kept or printed
                            batch = [record for g in groups[sent:] for record in g]
                            raise
            except Exception as exc:
                if self._unreachable(events, exc, batch, final):
                    return
                _stderr(f"[Worker {self.worker_index}] cannot forward logs ({exc}); " + "\n".join(batch))
        self._down, self._pause = False, 0.0
        self._pauses.reset()


def install_forwarder(worker_index: int, pool_id: str | None = None) -> LogForwarder:
    """Route this (worker) process's log records to a :class:`LogForwarder`, each record once.

    Handlers inherited from the main process would print from the worker directly; they are
    replaced. A logger that does not propagate keeps forwarding its own records. The per-task
    lines are printed here instead, by the inherited handlers that would print them, when all
    of those may (:func:`printers`).
    """
    forwarder = LogForwarder(worker_index, pool_id, printers(PER_TASK_LOGGER, logging.INFO))
    root = logging.getLogger()
    loggers = [root] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        had_handlers = bool(lg.handlers)
        for handler in list(lg.handlers):
            lg.removeHandler(handler)
        if lg is root or (had_handlers and not lg.propagate):
            lg.addHandler(forwarder)
    return forwarder


def emit_worker_records(data: str, pool_id: str | None = None) -> list[dict[str, Any]]:
    """In the main process: re-emit the records of one message of the logs channel (one record,
    or a JSON array of them) through the user's logging config, in order. Returns the decoded
    messages of ``pool_id``'s workers (every worker's when ``None``); what is not a record is
    skipped."""
    try:
        decoded = json.loads(data)
    except (ValueError, TypeError, RecursionError):  # not a record: skipped
        return []
    out: list[dict[str, Any]] = []
    for msg in decoded if isinstance(decoded, list) else [decoded]:
        if isinstance(msg, dict) and _emit(msg, pool_id):
            out.append(msg)
    return out


def printers(name: str, level: int) -> list[logging.StreamHandler[Any]] | None:
    """The handlers a record of logger ``name`` at ``level`` reaches (call it in a worker before
    :func:`install_forwarder` replaces them), when each of them may write from a worker: a plain
    ``StreamHandler`` or ``FileHandler`` without filters on an open file descriptor, which the
    worker shares with the main process. ``None`` when one of them may not (a subclass: a
    rotating file, pytest's capture ...; a stream without a descriptor) or there is none."""
    found: list[logging.StreamHandler[Any]] = []
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        for handler in logger.handlers:
            if level < handler.level:
                continue
            if type(handler) not in (logging.StreamHandler, logging.FileHandler) or handler.filters:
                return None
            assert isinstance(handler, logging.StreamHandler)
            try:
                handler.stream.fileno()
            except Exception:
                return None
            found.append(handler)
        logger = logger.parent if logger.propagate else None
    return found or None


def emit_worker_record(data: str, pool_id: str | None = None) -> dict[str, Any] | None:
    """In the main process: re-emit one forwarded record through the user's logging config.
    Returns the decoded message (``None`` if it was not one). With ``pool_id``, a record of
    another pool's worker (pools on one queue share its logs channel) is neither emitted nor
    returned."""
    try:
        msg = json.loads(data)
    except (ValueError, TypeError, RecursionError):  # not a record: skipped
        return None
    return msg if isinstance(msg, dict) and _emit(msg, pool_id) else None


def _emit(msg: dict[str, Any], pool_id: str | None) -> bool:
    """Hand one decoded record to its logger; False when it is not one of ``pool_id``'s."""
    try:
        if pool_id is not None and msg.get("pool") != pool_id:
            return False
        if msg.get("event"):
            return True
        name = str(msg.get("logger") or "agentexec.worker")
        level = _level(msg)
        # cleaned: a lone surrogate in a task's error text would make the user's handler fail
        text = clean_text(f"[Worker {msg.get('worker', '?')}] {msg.get('message', '')}", None)
    except (ValueError, TypeError, RecursionError):  # not a record: skipped
        return False
    logger = logging.getLogger(name)
    if logger.isEnabledFor(level):
        record = logger.makeRecord(name, level, "(worker)", 0, text, (), None)
        created = msg.get("time")
        if isinstance(created, int | float):
            record.created = float(created)
            record.msecs = (record.created - int(record.created)) * 1000
        if isinstance(msg.get("pid"), int):
            record.process = msg["pid"]
        record.worker = msg.get("worker")
        if "task" in msg:
            record.task_name = msg.get("task")
            record.agent_id = msg.get("agent_id")
            record.attempt = msg.get("attempt")
        logger.handle(record)
    return True


def _level(msg: dict[str, Any]) -> int:
    levelno = msg.get("levelno")
    if isinstance(levelno, int):
        return levelno
    named = logging.getLevelName(str(msg.get("level", "INFO")).upper())
    return named if isinstance(named, int) else logging.INFO


def ensure_console_logging() -> None:
    """With no logging configured at all, print agentexec's INFO lines (``[Worker 0] Processing
    task: ...``) on stdout, as the spec shows. Any configuration of the user's wins."""
    root = logging.getLogger()
    ours = logging.getLogger("agentexec")
    if root.handlers or ours.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.addHandler(handler)
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.INFO)


def _stderr(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:
        pass


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line, with the worker and, for lines about a
    task, its name, agent id and attempt (for log pipelines: Loki, CloudWatch, Datadog ...)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        worker = getattr(record, "worker", None)
        if worker is not None:
            data["worker"] = worker
        task_name = getattr(record, "task_name", None)
        if task_name is None:
            task = current_task()  # a line logged in this process, inside a task
            if task is not None:
                data.update(task=task.task_name, agent_id=str(task.agent_id), attempt=task.attempts + 1)
        else:
            data.update(task=task_name, agent_id=getattr(record, "agent_id", None), attempt=getattr(record, "attempt", None))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


def configure_logging(level: str | None, log_format: str) -> None:
    """``agentexec run --log-level/--log-format``: agentexec's lines (and, in JSON, every
    logger's) on stdout, at ``level``. Called before the pool's module is imported, so its own
    logging configuration, if any, comes on top."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.getLogger().addHandler(handler)
        if level:
            logging.getLogger().setLevel(level)
    else:
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("agentexec").addHandler(handler)
    logging.getLogger("agentexec").setLevel(level or logging.INFO)
