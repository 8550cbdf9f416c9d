"""A program under test in a process of its own: ``agentexec run app:pool``, a pool script, an
API server. Imports no pytest (a failed wait raises ``AssertionError``), so any test tree can
use it::

    from agentexec.testing.process import ProgramProcess

    pool = ProgramProcess.start(["agentexec", "run", "app:pool"], env={...}, cwd=here)
    pool.wait_output("Pool started")
    ...
    assert pool.stop() == 0, pool.output

The program runs in a session of its own, so :meth:`ProgramProcess.kill` takes its whole
process tree (a pool's fork server and workers) along; its combined output is collected line by
line as it comes, and every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: the default bound of every wait (seconds)
WAIT = 30.0


class ProgramProcess:
    """A started program and the lines it has printed so far (stdout and stderr together)."""

    def __init__(self, proc: subprocess.Popen[str], wait: float = WAIT) -> None:
        self.proc = proc
        self.wait = wait
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def popen(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | str,
        *,
        unset: tuple[str, ...] = ("AGENTEXEC_",),
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``argv`` unbuffered in a new session, with this process's environment less
        the variables named with an ``unset`` prefix (the test's own ``AGENTEXEC_*``), plus
        ``env``."""
        full = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
        full["PYTHONUNBUFFERED"] = "1"
        full.update(env)
        return subprocess.Popen(
            list(argv), cwd=cwd, env=full, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn,
        )

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | str,
        *,
        wait: float = WAIT,
        unset: tuple[str, ...] = ("AGENTEXEC_",),
    ) -> ProgramProcess:
        return cls(cls.popen(argv, env, cwd, unset=unset), wait)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_output(self, text: str, timeout: float | None = None) -> None:
        """Wait until ``text`` appears in the output; fail at once if the program exits first."""
        timeout = self.wait if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the reader catches up with the last lines
                if text in self.output:
                    return
                raise AssertionError(f"exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output}")
            time.sleep(0.02)

    def stop(
        self, sig: int | None = signal.SIGTERM, timeout: float | None = None, *, group: bool = False
    ) -> int:
        """Signal the program (``None``: signal nothing; ``group``: its whole process group)
        and wait for it to exit; its exit code. Killed, with its process group, if it outlives
        ``timeout``."""
        timeout = self.wait if timeout is None else timeout
        if sig is not None and self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            raise AssertionError(f"did not exit within {timeout}s:\n{self.output}") from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Last resort for a test that failed midway: SIGKILL to the whole process group."""
        kill_group(self.proc)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL to the process group of ``proc`` (started with ``start_new_session``), and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces; fields after the closing parenthesis are fixed
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)
