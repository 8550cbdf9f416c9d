"""``PydanticAIRunner.run_stream_events``'s result: every event of a run, recovery runs included.

The run is ``Agent.run`` with an ``event_stream_handler`` (so the model is called in streaming
mode and tool calls and results are reported as they happen), on a task of the ``async with``
block's task group. Its events reach the consumer through an unbuffered memory stream, so the run
goes at the pace the consumer reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from types import TracebackType
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic_ai import AgentRunResultEvent
from pydantic_ai.agent import AgentRunResult

from agentexec_pydantic_ai.call import RunCall


class StreamedRun:
    """A streamed agent run that survives turn-limit recovery::

        async with runner.run_stream_events(agent, "Research Acme") as stream:
            async for event in stream:
                ...
        print(stream.result.output)

    The events are pydantic-ai's ``AgentStreamEvent`` s of every run of the call, then one
    ``AgentRunResultEvent`` with the final result. An error of the run (``UsageLimitExceeded``
    without recovery, a failing model ...) is raised from the iteration, as it is; token usage
    is logged when the run ends, however it ends. Leaving the block early cancels the run.
    """

    def __init__(self, call: RunCall) -> None:
        self._call = call
        self._state: Literal["new", "running", "done"] = "new"
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[Any] | None = None
        self._error: BaseException | None = None
        self._result: AgentRunResult[Any] | None = None

    @property
    def result(self) -> AgentRunResult[Any]:
        """The final result (the recovery run's, after recovery); available once the stream ended."""
        if self._result is None:
            raise RuntimeError("the streamed run has not finished; iterate it to its end first")
        return self._result

    @property
    def is_complete(self) -> bool:
        return self._result is not None

    async def __aenter__(self) -> StreamedRun:
        if self._state != "new":
            raise RuntimeError("a streamed run can be entered only once")
        self._state = "running"
        send, self._receive = anyio.create_memory_object_stream[Any](0)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._produce, send)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None and self._receive is not None
        self._state = "done"
        # a consumer that stops early (break, error, cancellation) stops the run too
        self._task_group.cancel_scope.cancel()
        self._receive.close()
        # the block's own exception is not handed to the task group (which would wrap it in an
        # ExceptionGroup): the run task never raises, so the block's exception goes on as it is
        await self._task_group.__aexit__(None, None, None)
        return None

    def __aiter__(self) -> StreamedRun:
        return self

    async def __anext__(self) -> Any:
        if self._receive is None:
            raise RuntimeError("use the streamed run in `async with runner.run_stream_events(...)`")
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        # raised outside the except clause, so the error keeps its own cause and context
        error, self._error = self._error, None
        if error is not None:
            raise error
        raise StopAsyncIteration

    async def _produce(self, send: MemoryObjectSendStream[Any]) -> None:
        async def forward(ctx: Any, events: AsyncIterable[Any]) -> None:
            async for event in events:
                await send.send(event)

        async with send:
            try:
                result = await self._call.execute(event_stream_handler=forward)
            except Exception as error:
                self._error = error
                return
            self._result = result
            await send.send(AgentRunResultEvent(result=result))

    def __repr__(self) -> str:
        return f"StreamedRun(state={self._state!r}, complete={self.is_complete})"
