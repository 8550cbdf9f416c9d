"""``agentexec_fastapi.router(...)``: the HTTP API, the live stream and the dashboard."""

# no ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, which
# name the router's own scope dependency (a local), at definition time

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any
from uuid import UUID

import anyio
from agentexec.activity.metadata import metadata_matches, validate_metadata_filter
from agentexec.activity.status import Status
from agentexec.backends import ActivityChange
from agentexec.config import CONF
from agentexec.results import Outcome
from agentexec.task import TaskDefinition
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.params import Depends as DependsParam
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import ValidationError

from agentexec_fastapi._feed import ActivityFeed, FeedUnavailableError
from agentexec_fastapi.models import (
    ActivityChangeOut,
    ActivityDetailSchema,
    ActivityListSchema,
    CancelIn,
    CancelOut,
    DeadLetterOut,
    EnqueueIn,
    EnqueueOut,
    PurgeOut,
    QueueOut,
    RequeueIn,
    RequeueOut,
    ResultOut,
    WorkerOut,
)

#: the longest a result request may wait (seconds); longer waits belong on the stream
MAX_WAIT = 60.0
#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE = 15.0
#: the endpoints the dashboard may offer buttons for
HAS_CANCEL = True
HAS_SCHEDULES = True
#: the dashboard's files, shipped in the wheel, and their content types
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}

#: a FastAPI dependency giving the metadata filter a request is confined to (``None``: none)
Scope = Callable[..., Any]


def _no_scope() -> dict[str, Any] | None:
    return None


def _backends() -> Any:
    from agentexec.runtime import get_backends

    return get_backends()


def _metadata_param(metadata: str | None) -> dict[str, Any] | None:
    if metadata is None or metadata == "":
        return None
    try:
        parsed = json.loads(metadata)
    except ValueError:
        raise HTTPException(
            422, 'metadata must be a JSON object, e.g. metadata={"tenant": "acme"}'
        ) from None
    try:
        return validate_metadata_filter(parsed)
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, f"metadata: {exc}") from None


def _merge(asked: dict[str, Any] | None, pinned: dict[str, Any] | None) -> dict[str, Any] | None:
    """The filter of a request: what the client asked for, with the scope's pairs winning (a
    client asking for another tenant gets its own tenant's, never the other's)."""
    if pinned is None:
        return asked
    return {**(asked or {}), **pinned}


def router(
    pool: Any = None,
    *,
    queues: Sequence[str] | None = None,
    scope: Scope | None = None,
    dependencies: Sequence[DependsParam] = (),
    dashboard: bool = True,
    poll_interval: float = 0.025,
    keepalive: float = KEEPALIVE,
    tags: Sequence[str] = ("agentexec",),
) -> APIRouter:
    """The agentexec HTTP API as an ``APIRouter``: ``app.include_router(router(pool), prefix=...)``.

    - ``pool``: an ``ax.Pool`` (it need not run in this process): its tasks can be enqueued by
      name, their contexts validated against their models; its queue is listed.
    - ``queues``: the queues ``/queues`` shows and manages (default: the pool's, else
      ``CONF.queue_name``).
    - ``scope``: a FastAPI dependency returning a metadata filter (``{"tenant": ...}``) or
      ``None``; every endpoint, the stream included, sees only the activities that match it,
      and what is enqueued through it carries it. This is how tenants are kept apart.
    - ``dependencies``: FastAPI dependencies run before every endpoint (authentication).
    - ``dashboard``: serve the dashboard at the router's root.
    - ``poll_interval``: how often the live stream reads the store's new lines (seconds).
    - ``keepalive``: seconds of silence after which the stream sends a comment line.

    The app must open and close agentexec's backends: ``FastAPI(lifespan=agentexec_fastapi.lifespan)``
    or, inside an existing lifespan, ``async with agentexec_fastapi.lifespan(app): ...``.
    """
    tasks: Mapping[str, TaskDefinition] = getattr(pool, "tasks", None) or {}
    queue_names = list(queues or [getattr(pool, "queue_name", None) or CONF.queue_name])
    feed = ActivityFeed(lambda: _backends().activity, poll_interval)
    api = APIRouter(tags=list(tags), dependencies=list(dependencies))
    api.state = {"feed": feed}  # type: ignore[attr-defined]
    Pinned = Annotated[dict[str, Any] | None, Depends(scope or _no_scope)]

    # -- activities -------------------------------------------------------------------------
    @api.get("/activities", response_model=ActivityListSchema, summary="List activities (executions)")
    async def list_activities(
        pinned: Pinned,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        status: Status | None = None,
        task: Annotated[str | None, Query(description="only this task's activities")] = None,
        metadata: Annotated[str | None, Query(description='a JSON object, e.g. {"tenant": "acme"}')] = None,
    ) -> Any:
        from agentexec import activity

        found = _merge(_metadata_param(metadata), pinned)
        if task is None:
            return await activity.alist(page, page_size, status, metadata_filter=found)
        store = _backends().activity
        await activity._awritten(writing=False)  # what this process just enqueued is listed
        try:
            return await store.alist(page, page_size, status, found, task_name=task)
        except TypeError:
            raise HTTPException(
                422, f"the activity store {type(store).__name__} cannot filter by task"
            ) from None

    @api.get(
        "/activities/stream", summary="Live activity changes (server-sent events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}},
                         "description": "`event: activity`, `id:` the log line id, `data:` an ActivityChangeOut"}},
    )
    async def stream(
        request: Request,
        pinned: Pinned,
        agent_id: UUID | None = None,
        metadata: Annotated[str | None, Query(description="a JSON object every event's activity must match")] = None,
        last_event_id: Annotated[int | None, Query(alias="last_event_id", description="resume after this id (or send Last-Event-ID)")] = None,
    ) -> StreamingResponse:
        found = _merge(_metadata_param(metadata), pinned)
        header = request.headers.get("last-event-id")
        after = last_event_id
        if header:
            try:
                after = int(header)
            except ValueError:
                raise HTTPException(422, f"Last-Event-ID must be an event id (an integer), got {header!r}") from None

        def wanted(change: ActivityChange) -> bool:
            if agent_id is not None and change.agent_id != agent_id:
                return False
            return found is None or metadata_matches(change.metadata, found)

        try:
            feed.check()
        except FeedUnavailableError as exc:
            raise HTTPException(501, str(exc)) from None

        async def events() -> AsyncIterator[str]:
            # the listener lives inside the generator: a client gone before the first byte
            # leaves nothing registered
            async with feed.listen(after) as changes:
                yield "retry: 1000\n: connected\n\n"
                while True:
                    with anyio.move_on_after(keepalive) as idle:
                        try:
                            change = await changes.next()  # safe to cancel
                        except StopAsyncIteration:
                            return
                    if idle.cancelled_caught:
                        yield ": keep-alive\n\n"
                        continue
                    if wanted(change):
                        yield _sse(change)

        return StreamingResponse(
            events(), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.get("/activities/{agent_id}", response_model=ActivityDetailSchema, summary="One activity with its logs",
             responses={404: {"description": "no such activity (or not in scope)"}})
    async def activity_detail(agent_id: UUID, pinned: Pinned) -> Any:
        from agentexec import activity

        found = await activity.adetail(agent_id, metadata_filter=pinned)
        if found is None:
            raise HTTPException(404, f"no activity {agent_id}")
        return found

    @api.post("/activities/{agent_id}/cancel", response_model=CancelOut, summary="Cancel a queued or running task",
              responses={404: {"description": "no such activity (or not in scope)"},
                         409: {"description": "the task has already ended"}})
    async def cancel(agent_id: UUID, pinned: Pinned, body: CancelIn | None = None) -> CancelOut:
        import agentexec as ax
        from agentexec import activity

        if pinned is not None and await activity.adetail(agent_id, metadata_filter=pinned) is None:
            raise HTTPException(404, f"no activity {agent_id}")
        reason = (body.reason if body is not None else None) or "cancelled through the API"
        try:
            done = await ax.cancel(agent_id, reason, queue_name=queue_names[0])
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if done.state == "unknown":
            raise HTTPException(404, done.message)
        if done.state == "finished":
            raise HTTPException(409, done.message)
        return CancelOut(agent_id=agent_id, state=done.state, message=done.message)

    # -- tasks and results ------------------------------------------------------------------
    @api.get("/tasks", response_model=list[str], summary="Names of the tasks that can be enqueued")
    async def task_names() -> list[str]:
        return sorted(tasks)

    @api.post("/tasks/{task_name}", response_model=EnqueueOut, status_code=202, summary="Enqueue a task",
              responses={404: {"description": "no such task"},
                         422: {"description": "the context does not validate against the task's model"}})
    async def enqueue(task_name: str, body: EnqueueIn, pinned: Pinned) -> EnqueueOut:
        import agentexec as ax

        definition = tasks.get(task_name)
        if definition is None:
            known = ", ".join(sorted(tasks)) or "none (pass the pool to agentexec_fastapi.router(pool))"
            raise HTTPException(404, f"unknown task {task_name!r}; tasks: {known}")
        try:
            context = definition.validate_context(body.context)
        except ValidationError as exc:
            raise HTTPException(422, jsonable_encoder(exc.errors(include_url=False))) from None
        metadata = None if body.metadata is None and pinned is None else {**(body.metadata or {}), **(pinned or {})}
        queue_name = queue_names[0]
        try:
            task = await ax.enqueue(task_name, context, body.priority, queue_name, metadata=metadata)
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
        return EnqueueOut(agent_id=task.agent_id, task_name=task_name, queue_name=queue_name)

    @api.get("/results/{agent_id}", response_model=ResultOut, summary="A task's result",
             responses={202: {"model": ResultOut, "description": "not finished within the wait"},
                        404: {"description": "no such activity (or not in scope)"}})
    async def result(
        agent_id: UUID, response: Response, pinned: Pinned,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for it")] = 0,
    ) -> ResultOut:
        from agentexec import activity

        if pinned is not None and await activity.adetail(agent_id, metadata_filter=pinned) is None:
            raise HTTPException(404, f"no activity {agent_id}")
        results = _backends().results
        data: bytes | None
        if wait > 0:
            try:
                data = await results.wait(agent_id, wait)
            except TimeoutError:
                data = None
        else:
            data = await results.get(agent_id)
        if data is None:
            response.status_code = 202
            return ResultOut(agent_id=agent_id, status="pending")
        outcome = Outcome.decode(data)
        if outcome.status in ("error", "cancelled"):
            return ResultOut(agent_id=agent_id, status="failed" if outcome.status == "error" else "cancelled", task_name=outcome.task_name,
                             error=outcome.error, attempts=outcome.attempts)
        return ResultOut(agent_id=agent_id, status="complete", task_name=outcome.task_name,
                         result=outcome.value, attempts=outcome.attempts)

    # -- queues, dead letters, workers --------------------------------------------------------
    def _queue(name: str) -> str:
        if name not in queue_names:
            raise HTTPException(404, f"unknown queue {name!r}; queues: {', '.join(queue_names)}")
        return name

    async def _queue_out(name: str) -> QueueOut:
        stats = await _backends().queue.stats(name)
        return QueueOut(
            name=name, high=stats.high, low=stats.low, in_flight=stats.in_flight, dead=stats.dead,
            workers=[WorkerOut(id=c, queue_name=name, heartbeat_age=age) for c, age in sorted(stats.consumers.items())],
        )

    @api.get("/queues", response_model=list[QueueOut], summary="Depth per queue and priority, in flight, dead letters, workers")
    async def list_queues() -> list[QueueOut]:
        return [await _queue_out(name) for name in queue_names]

    @api.get("/workers", response_model=list[WorkerOut], summary="Workers seen (heartbeats)")
    async def workers() -> list[WorkerOut]:
        return [w for name in queue_names for w in (await _queue_out(name)).workers]

    @api.get("/queues/{queue_name}/dead-letters", response_model=list[DeadLetterOut], summary="Dead letters")
    async def dead_letters(
        queue_name: str, pinned: Pinned, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[DeadLetterOut]:
        found = await _backends().queue.dead_letters(_queue(queue_name), limit)
        return [
            DeadLetterOut(
                id=d.id, queue_name=d.queue_name, reason=d.reason, failed_at=d.failed_at, payload=d.payload,
                task_name=d.envelope.task_name if d.envelope else None,
                agent_id=d.envelope.agent_id if d.envelope else None,
            )
            for d in found
            if pinned is None or (d.envelope is not None and metadata_matches(d.envelope.metadata, pinned))
        ]

    @api.post("/queues/{queue_name}/dead-letters/requeue", response_model=RequeueOut, summary="Requeue dead letters")
    async def requeue(queue_name: str, body: RequeueIn, pinned: Pinned) -> RequeueOut:
        ids = body.ids
        if pinned is not None:  # only the scope's own, named one by one
            mine = {d.id for d in await dead_letters(queue_name, pinned, 1000)}
            ids = [i for i in (ids if ids is not None else mine) if i in mine]
        return RequeueOut(requeued=await _backends().queue.requeue_dead(_queue(queue_name), ids))

    @api.delete("/queues/{queue_name}/dead-letters", response_model=PurgeOut, summary="Purge dead letters")
    async def purge(queue_name: str, pinned: Pinned) -> PurgeOut:
        if pinned is not None:
            raise HTTPException(403, "purging dead letters drops every tenant's; it is not allowed in a scope")
        return PurgeOut(purged=await _backends().queue.purge_dead(_queue(queue_name)))

    from agentexec_fastapi._schedules import add_schedule_routes

    add_schedule_routes(api, queue_names[0], Pinned)

    # -- the dashboard ------------------------------------------------------------------------
    if dashboard:
        @api.get("/", response_class=HTMLResponse, include_in_schema=False)
        async def index() -> HTMLResponse:
            config = json.dumps({"cancel": HAS_CANCEL, "schedules": HAS_SCHEDULES})
            return HTMLResponse(_asset("index.html").replace("__CONFIG__", config))

        @api.get("/static/{name}", include_in_schema=False)
        async def static(name: str) -> Response:
            if name not in STATIC:
                raise HTTPException(404, f"no file {name!r}")
            return Response(_asset(name), media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    return api


def _asset(name: str) -> str:
    return (resources.files("agentexec_fastapi") / "static" / name).read_text(encoding="utf-8")


def _sse(change: ActivityChange) -> str:
    body = ActivityChangeOut(
        id=change.id, agent_id=change.agent_id, task_name=change.task_name, status=change.status,
        percentage=change.percentage, message=change.message, created_at=change.created_at,
    ).model_dump_json()
    return f"id: {change.id}\nevent: activity\ndata: {body}\n\n"


def feed_of(api: APIRouter) -> ActivityFeed:
    return api.state["feed"]  # type: ignore[attr-defined,no-any-return]


@asynccontextmanager
async def lifespan(app: FastAPI | None = None) -> AsyncIterator[None]:
    """Open agentexec's backends when the app starts and close them when it stops:
    ``FastAPI(lifespan=agentexec_fastapi.lifespan)``, or ``async with lifespan(app):`` inside
    the app's own lifespan."""
    backends = _backends()
    ensure_schema = getattr(backends.activity, "ensure_schema", None)
    if callable(ensure_schema):  # a fresh database (the embedded SQLite default) gets its tables
        await anyio.to_thread.run_sync(ensure_schema)
    try:
        yield
    finally:
        await backends.aclose()


def create_app(pool: Any = None, *, prefix: str = "", title: str = "agentexec", **options: Any) -> FastAPI:
    """A ready app: the router under ``prefix`` (the dashboard at its root), with the lifespan.
    Serve it with ``uvicorn module:app`` or :func:`serve`; ``options`` go to :func:`router`."""
    api = router(pool, **options)

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app):
            try:
                yield
            finally:
                await feed_of(api).aclose()

    app = FastAPI(title=title, lifespan=_lifespan)
    app.include_router(api, prefix=prefix)
    return app

