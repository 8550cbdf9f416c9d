"""``OpenAIRunner.run_streamed``'s result: the SDK's streamed run, continued through recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any, Literal

from agents import MaxTurnsExceeded, Runner
from agents.result import RunResultStreaming
from agents.stream_events import StreamEvent

from agentexec_openai.call import RunCall
from agentexec_openai.conversation import usage_of, usage_of_error


class StreamedRun:
    """A streamed agent run that survives max-turns recovery.

    Use it like the SDK's ``RunResultStreaming`` (every attribute not defined here, such as
    ``final_output``, ``new_items`` or ``cancel()``, is read from the current SDK run)::

        streamed = runner.run_streamed(agent, "Research Acme")
        async for event in streamed.stream_events():
            ...
        print(streamed.final_output)

    or ``await runner.run_streamed(...)`` to consume every event and get it back finished.
    The run starts at once, and ``report_status`` records progress while it runs; when it
    exceeds its turns and recovery is on, the recovery run's events follow in the same stream.
    Token usage is logged once the stream has been consumed to its end (or has failed).
    """

    def __init__(self, call: RunCall) -> None:
        self._call = call
        first = call.first
        self._current = Runner.run_streamed(first.agent, first.input, **call.kwargs(first))
        #: every SDK run of this call, the recovery runs after the first
        self.runs: list[RunResultStreaming] = [self._current]
        self._state: Literal["new", "streaming", "done"] = "new"

    @property
    def current(self) -> RunResultStreaming:
        """The SDK run now streaming (the last recovery run once recovery started)."""
        return self._current

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._current, name)

    async def stream_events(self) -> AsyncIterator[StreamEvent]:
        """The SDK's stream events, recovery runs included; iterate it once."""
        if self._state != "new":
            raise RuntimeError("a streamed run's events can be iterated only once")
        self._state = "streaming"
        call = self._call
        try:
            while True:
                try:
                    async for event in self._current.stream_events():
                        yield event
                except MaxTurnsExceeded as error:
                    call.add_usage(usage_of_error(error))
                    attempt = await call.after_max_turns(error)
                    self._current = Runner.run_streamed(
                        attempt.agent, attempt.input, **call.kwargs(attempt)
                    )
                    self.runs.append(self._current)
                    continue
                except Exception as error:
                    call.add_usage(usage_of_error(error))
                    raise
                call.add_usage(usage_of(self._current))
                break
        except Exception:
            self._state = "done"
            await call.finish()
            raise
        self._state = "done"
        await call.finish()

    def __await__(self) -> Generator[Any, None, StreamedRun]:
        return self._drain().__await__()

    async def _drain(self) -> StreamedRun:
        if self._state == "streaming":
            raise RuntimeError("this run is being streamed already; await it after the stream ends")
        if self._state == "new":
            async for _ in self.stream_events():
                pass
        return self

    def __repr__(self) -> str:
        return f"StreamedRun(state={self._state!r}, runs={len(self.runs)}, current={self._current!r})"
