"""``CONF``: agentexec's configuration, read from ``AGENTEXEC_*`` environment variables.

``docs/configuration.md`` lists every setting; it is generated from :class:`Config` by
``scripts/gen-config-reference`` (a test keeps it in sync).

A value that does not validate stops the program with one line naming the variable, the value
and what is allowed (:class:`ConfigError`); an ``AGENTEXEC_*`` variable that names no setting
is reported once, with the closest setting's name (:class:`ConfigWarning`).
"""

from __future__ import annotations

import difflib
import os
import string
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

ENV_PREFIX = "AGENTEXEC_"
ENV_FILE = ".env"
#: variables the test suite reads (never agentexec itself); not reported as unknown
RESERVED_PREFIXES = ("AGENTEXEC_TEST_",)


def read_env_file(path: str | Path = ENV_FILE) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file (``export``, quotes and ``#`` comments as in
    python-dotenv's common subset); ``{}`` when there is none."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def environment() -> dict[str, str]:
    """The ``AGENTEXEC_*`` variables in effect, upper-cased: the ``.env`` file of the working
    directory, overridden by the process environment. The original agentexec's unprefixed
    names (:data:`ALIASES`) are included too."""
    merged = {**read_env_file(), **os.environ}
    return {
        k.upper(): v for k, v in merged.items()
        if k.upper().startswith(ENV_PREFIX) or k.upper() in ALIASES
    }


#: the original agentexec's names for settings, read when ours (``AGENTEXEC_<NAME>``) is not set
ALIASES: dict[str, str] = {
    "REDIS_URL": "redis_url",
    "REDIS_POOL_SIZE": "redis_pool_size",
    "REDIS_POOL_TIMEOUT": "redis_pool_timeout",
    "AGENTEXEC_SCHEDULER_TIMEZONE": "timezone",
    "AGENTEXEC_QUEUE_PREFIX": "queue_name",
}

#: the original agentexec's settings that have no counterpart here, and why
ORIGINAL_ONLY: dict[str, str] = {
    "AGENTEXEC_STATE_BACKEND": "backends are chosen by URL: AGENTEXEC_REDIS_URL, AGENTEXEC_DATABASE_URL",
    "AGENTEXEC_KEY_PREFIX": "Redis keys are named after the queue (AGENTEXEC_QUEUE_NAME)",
    "AGENTEXEC_SCHEDULER_POLL_INTERVAL": "the scheduler wakes at each schedule's next tick",
    "AGENTEXEC_MAX_TASK_RETRIES": "a task whose worker dies is handed out again up to "
    "AGENTEXEC_MAX_ATTEMPTS times; a handler that raises ends ERROR",
    "AGENTEXEC_LOCK_TTL": "per-key task locks are not available yet",
}


def source_variable(field: str, environ: dict[str, str]) -> str:
    """The variable a setting was read from: ``AGENTEXEC_<NAME>``, or the original's alias
    that supplied it."""
    name = env_name(field)
    if name in environ:
        return name
    return next((alias for alias, f in ALIASES.items() if f == field and alias in environ), name)


class Config(BaseModel):
    """Every setting can be given as ``AGENTEXEC_<NAME>`` in the environment (or a ``.env`` file
    in the working directory); keyword arguments override both.

    The first block is the documented contract of ``spec/core-api.md``; the rest are
    agentexec's additions for backend selection, reliability and concurrency. (A plain pydantic
    model reading the environment itself: pydantic-settings cost ~50 ms on every start.)
    """

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    def __init__(self, **values: Any) -> None:
        env = environment()
        from_env = {
            field: env[source_variable(field, env)] for field in type(self).model_fields
            if source_variable(field, env) in env
        }
        super().__init__(**{**from_env, **values})

    # -- the original agentexec's names ---------------------------------------------------
    @property
    def scheduler_timezone(self) -> str:
        """The original agentexec's name of :attr:`timezone` (``AGENTEXEC_SCHEDULER_TIMEZONE``)."""
        return self.timezone

    @scheduler_timezone.setter
    def scheduler_timezone(self, value: str) -> None:
        self.timezone = value

    @property
    def scheduler_tz(self) -> Any:
        """:attr:`timezone` as a ``ZoneInfo`` (the original agentexec's ``CONF.scheduler_tz``)."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    @property
    def queue_prefix(self) -> str:
        """The original agentexec's (0.3) name of :attr:`queue_name`."""
        return self.queue_name

    @queue_prefix.setter
    def queue_prefix(self, value: str) -> None:
        self.queue_name = value

    # -- spec/core-api.md ---------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="Redis connection URL. When unset, agentexec runs on the embedded SQL backend.",
    )
    queue_name: str = Field(
        default="agentexec_tasks", description="Default queue of `ax.enqueue` and `ax.Pool`."
    )
    table_prefix: str = Field(
        default="agentexec_",
        description="Prefix of agentexec's database tables (`{prefix}activity`, `{prefix}activity_log`).",
    )
    num_workers: int = Field(default=4, ge=1, description="Worker processes of a pool.")
    graceful_shutdown_timeout: int = Field(
        default=300,
        ge=0,
        description="Seconds a stopping pool waits for running tasks before killing the workers "
        "(their tasks go back to the queue).",
    )
    redis_pool_size: int = Field(default=10, ge=1, description="Redis connection pool size.")
    redis_pool_timeout: int = Field(
        default=5, ge=0, description="Seconds to wait for a free Redis connection from the pool."
    )
    result_ttl: int = Field(default=3600, ge=1, description="Seconds a task's result is kept.")
    activity_message_create: str = Field(
        default="Waiting to start.", description="Message of the QUEUED line `ax.enqueue` writes."
    )
    activity_message_started: str = Field(
        default="Task started.", description="Message of the RUNNING line a worker writes."
    )
    activity_message_complete: str = Field(
        default="Task completed successfully.",
        description="Message of the COMPLETE line written when a handler returns.",
    )
    activity_message_error: str = Field(
        default="Task failed with error: {error}",
        description="Message of the ERROR line written when a handler raises; `{error}` is the error.",
        json_schema_extra={
            "allowed": "text whose only field is `{error}` (write `{{` and `}}` for literal braces)"
        },
    )

    # -- backend selection ---------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the activity store (and of the embedded queue when no redis_url).",
    )
    embedded_db_path: str = Field(
        default="agentexec.db",
        description="SQLite file used when neither redis_url nor database_url is configured.",
    )
    queue_backend: str | None = Field(default=None, description="Backend name or URL for the queue.")
    results_backend: str | None = Field(default=None, description="Backend name or URL for results.")
    events_backend: str | None = Field(default=None, description="Backend name or URL for events.")
    activity_backend: str | None = Field(
        default=None, description="Backend name or URL for the activity store."
    )

    # -- plugins --------------------------------------------------------------------------
    plugins: str | None = Field(
        default=None, description="Comma-separated plugin names to load (all installed when unset)."
    )
    disabled_plugins: str | None = Field(
        default=None, description="Comma-separated plugin names never to load."
    )
    strict_plugins: bool = Field(
        default=False, description="Raise instead of warning when a plugin fails to load."
    )

    # -- reliability ----------------------------------------------------------------------
    max_attempts: int = Field(
        default=3, ge=1, description="Deliveries of one task before it is dead-lettered."
    )
    lease_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds without a consumer heartbeat after which its tasks are handed out again.",
    )
    task_retries: int = Field(
        default=0,
        ge=0,
        description="Times a failed task is run again, after a backoff, before it ends ERROR; "
        "`@pool.task(name, retries=...)` overrides it per task.",
    )
    retry_backoff: float = Field(
        default=1.0,
        gt=0,
        description="Seconds before the first retry; each next one waits twice as long (with "
        "jitter: between half and all of it), up to `retry_backoff_max`.",
    )
    retry_backoff_max: float = Field(
        default=300.0, gt=0, description="Longest wait (seconds) before a retry."
    )
    task_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a handler may run before it is cancelled and its task ends ERROR "
        "(`timed out after N s`); `@pool.task(name, timeout=...)` overrides it per task. "
        "Unset: no limit.",
    )

    # -- workers --------------------------------------------------------------------------
    worker_concurrency: int = Field(
        default=10,
        ge=1,
        description="Tasks one worker process runs at once on its event loop (agent tasks wait on "
        "LLM calls most of the time; see docs/worker-pool.md for why 10). Sync handlers each "
        "take a thread.",
    )
    worker_event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="Event loop of the worker processes: `uvloop` (installed with agentexec on "
        "Linux and macOS; fewer µs per task on every backend), `asyncio` (the standard library's), "
        "or `auto`: uvloop when it is installed, asyncio otherwise.",
        json_schema_extra={"allowed": "auto, uvloop or asyncio"},
    )
    pipeline_concurrency: int = Field(
        default=64,
        ge=1,
        description="Pipeline runs one worker process runs at once, on its own lane, so a "
        "pipeline awaiting its children never holds a slot they need.",
    )
    timezone: str = Field(
        default="UTC",
        description="Timezone of cron schedules.",
        json_schema_extra={"allowed": "an IANA timezone name such as Europe/Paris"},
    )

    # -- limits (docs/operations.md) -----------------------------------------------------------
    max_log_line_bytes: int = Field(
        default=32_768,
        ge=256,
        description="Longest worker log message (UTF-8 bytes, traceback included) sent to the pool's "
        "main process and the logs stream; a longer one is cut there and ends with "
        "`… [truncated: N bytes in all]`.",
    )
    max_activity_message_bytes: int = Field(
        default=65_536,
        ge=256,
        description="Longest activity log message (UTF-8 bytes); a longer one is stored cut, ending "
        "with `… [truncated: N bytes in all]`.",
    )
    max_event_bytes: int = Field(
        default=65_536,
        ge=256,
        description="Largest `ax.events.publish` message (its JSON, in bytes); a larger one raises "
        "`agentexec.limits.TooLargeError` and is not published.",
    )
    max_result_bytes: int = Field(
        default=16_777_216,
        ge=256,
        description="Largest task result (its JSON, in bytes); a handler returning more fails its "
        "task (ERROR: `result too large ...`) instead of storing it.",
    )
    events_retention: int = Field(
        default=10_000,
        ge=1,
        description="Events (`ax.events`) kept for `last_id` replay, and as many pool control "
        "messages (`control:*`, a stream of their own). Worker logs are kept apart "
        "(`logs_retention`), so logs never push events out.",
    )
    lifecycle_events: bool = Field(
        default=True,
        description="Publish `task.queued`, `task.started`, `task.completed`, `task.failed`, "
        "`task.cancelled` and `schedule.fired` on `ax.events` (docs/schedules-and-events.md); "
        "false: none is published.",
    )
    logs_retention: int = Field(
        default=10_000,
        ge=1,
        description="Worker log messages kept (for `agentexec tail --since` and the pool's relay); "
        "a message holds the records one worker logged within ~10 ms (up to 500).",
    )

    # -- worker recycling (docs/operations.md) ---------------------------------------------
    max_tasks_per_worker: int | None = Field(
        default=None,
        ge=1,
        description="A worker process that has run this many tasks finishes its running tasks, "
        "exits and is replaced (unset: never). For handlers that leak memory.",
    )
    max_worker_rss_mb: int | None = Field(
        default=None,
        ge=1,
        description="A worker process whose resident memory exceeds this many MiB (checked after "
        "each task) finishes its running tasks, exits and is replaced (unset: never).",
    )

    # -- observability (docs/observability.md) ---------------------------------------------
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="A pool's main process serves Prometheus metrics on this port at `/metrics`, "
        "for all its workers (unset: no metrics). Needs `agentexec[prometheus]`.",
    )
    metrics_dir: str | None = Field(
        default=None,
        description="Directory where the processes of a pool (and producers that set it too) "
        "keep their metric values for the `/metrics` endpoint (prometheus-client's multiprocess "
        "mode; unset: a fresh temporary directory per pool).",
    )

    prices_file: str | None = Field(
        default=None,
        description="A JSON file of model prices (US dollars per million tokens: "
        '`{"model": {"input": 2.0, "output": 8.0, "cached_input": 0.5}}`) that turn token usage '
        "into cost; it overrides and extends the shipped table (`ax.pricing`).",
    )

    # -- command line ---------------------------------------------------------------------
    debug: bool = Field(
        default=False,
        description="The `agentexec` command prints the traceback of an error, not just its line.",
    )

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        from agentexec.task import MAX_QUEUE_NAME, check_name

        if not value:
            raise ValueError("a queue name cannot be empty")
        return check_name("the queue name", value, MAX_QUEUE_NAME)

    @field_validator(
        "activity_message_create", "activity_message_started", "activity_message_complete"
    )
    @classmethod
    def _storable_message(cls, value: str) -> str:
        _check_storable(value)
        return value

    @field_validator("activity_message_error")
    @classmethod
    def _error_template(cls, value: str) -> str:
        """Filled in with ``{error}`` for every failed task: a template that cannot be filled
        in must stop the program at start-up, not fail each task on a worker."""
        _check_storable(value)
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        for field in fields:
            if field != "error":
                shown = "{" + field + "}"
                raise ValueError(f"unknown field {shown}: the only field allowed is {{error}}")
        try:
            value.format(error="x")
        except (LookupError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        return value

    def __repr_args__(self) -> Any:
        # URLs are shown with their password masked (``print(ax.CONF)`` in a log or a bug report)
        from agentexec._redact import mask_url

        for name, value in super().__repr_args__():
            yield name, mask_url(value) if isinstance(value, str) and "://" in value else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA timezone name") from None
        return value


class ConfigError(SystemExit, ValueError):
    """An ``AGENTEXEC_*`` value that does not validate.

    Uncaught, it ends the program with its one-line message (it is a ``SystemExit``); code that
    wants to handle it catches it as the ``ValueError`` it also is.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class ConfigWarning(UserWarning):
    """An ``AGENTEXEC_*`` variable that names no setting (a misspelling, usually)."""


def _check_storable(value: str) -> None:
    """An activity message every store can hold: no NUL byte, valid Unicode (an undecodable
    byte in the environment becomes a lone surrogate, which no encoder takes)."""
    if "\x00" in value:
        raise ValueError("it contains a NUL character, which PostgreSQL cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("it is not valid UTF-8 text") from None


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def allowed(info: FieldInfo) -> str:
    """What a setting accepts, in words: ``"a whole number >= 1"``, ``"true or false"``."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("allowed"), str):
        return str(extra["allowed"])
    annotation = info.annotation
    optional = False
    args = getattr(annotation, "__args__", None)
    if args and type(None) in args:
        optional = True
        annotation = next(a for a in args if a is not type(None))
    names: dict[Any, str] = {
        int: "a whole number", float: "a number", bool: "true or false (1/0, yes/no, on/off)",
        str: "text",
    }
    words = names.get(annotation) or str(getattr(annotation, "__name__", annotation))
    bounds = []
    for item in info.metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                bounds.append(f"{op} {value}")
    text = " ".join([words, *bounds])
    return f"{text} (or unset)" if optional else text


def describe_errors(exc: ValidationError, environ: dict[str, str] | None = None) -> str:
    """One line for every invalid setting in ``exc``: variable, value and what is allowed."""
    environ = environment() if environ is None else environ
    fields = Config.model_fields
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error.get("loc") else "?"
        name = source_variable(field, environ)
        value = environ.get(name, error.get("input"))
        if isinstance(value, str) and "://" in value:
            from agentexec._redact import mask_url

            value = mask_url(value)
        info = fields.get(field)
        expected = allowed(info) if info is not None else "a valid value"
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{name}={value!r} is invalid ({reason}): expected {expected}")
    return "; ".join(dict.fromkeys(parts))


def unknown_variables(environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """``AGENTEXEC_*`` variables that name no setting, each with its closest setting's name
    (the process environment and the ``.env`` file by default)."""
    environ = environment() if environ is None else environ
    known = {env_name(field) for field in Config.model_fields} | set(ALIASES) | set(ORIGINAL_ONLY)
    out: dict[str, str | None] = {}
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith(RESERVED_PREFIXES):
            continue
        # compared without the shared prefix, which would make every name look close
        stems = sorted(k.removeprefix(ENV_PREFIX) for k in known)
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), stems, n=1, cutoff=0.6)
        out[name] = env_name(close[0]) if close else None
    return out


def warn_unknown_variables(environ: dict[str, str] | None = None) -> None:
    environ = environment() if environ is None else environ
    for name in environ:
        reason = ORIGINAL_ONLY.get(name.upper())
        if reason is not None:
            warnings.warn_explicit(
                f"{name} is a setting of the original agentexec that this one does not use "
                f"({reason}); see docs/migrating-from-agentexec.md",
                ConfigWarning, "agentexec.config", 0,
            )
    for name, close in unknown_variables(environ).items():
        hint = f"; did you mean {close}?" if close else "; see docs/configuration.md for the settings"
        # reported as coming from "agentexec.config": one line, with no source line under it
        warnings.warn_explicit(
            f"{name} is not an agentexec setting{hint}", ConfigWarning, "agentexec.config", 0
        )


def load() -> Config:
    """``Config()`` from the environment, or a :class:`ConfigError` with one line."""
    warn_unknown_variables()
    try:
        return Config()
    except ValidationError as exc:
        raise ConfigError(f"agentexec: {describe_errors(exc)}") from None


def reference() -> str:
    """docs/configuration.md: every setting with its variable, type, default and meaning."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated from agentexec.config.Config by scripts/gen-config-reference; "
        "tests/test_config_reference.py keeps it in sync -->",
        "",
        "Every setting is read from the environment variable `AGENTEXEC_<NAME>` (or a `.env` file "
        "in the working directory) the first time agentexec needs its configuration (`ax.CONF`, "
        "`ax.Pool()`, `ax.enqueue`, any `agentexec` command), and is `ax.CONF.<name>` in Python "
        "(assignable: `ax.CONF.num_workers = 2`, validated the same way).",
        "",
        "- A value that does not validate stops the program with one line naming the variable, "
        "the value and what is allowed, e.g. `agentexec: AGENTEXEC_NUM_WORKERS='abc' is invalid "
        "(Input should be a valid integer, unable to parse string as an integer): expected a "
        "whole number >= 1` (it is `agentexec.config.ConfigError`, a `SystemExit` that code "
        "can catch as `ValueError`).",
        "- An `AGENTEXEC_*` variable that names no setting is reported once, with the closest "
        "setting: `AGENTEXEC_NUM_WORKER is not an agentexec setting; did you mean "
        "AGENTEXEC_NUM_WORKERS?` (a `ConfigWarning`). `AGENTEXEC_TEST_*` variables belong to "
        "agentexec's own test suite and are not reported.",
        "",
        "| Variable | Type | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for field, info in Config.model_fields.items():
        default = "unset" if info.default is None else f"`{info.default!r}`"
        meaning = (info.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{env_name(field)}` | {allowed(info)} | {default} | {meaning} |")
    lines += [
        "",
        "The original agentexec's names are read too, when ours is not set (see "
        "docs/migrating-from-agentexec.md): "
        + ", ".join(f"`{alias}` for `{env_name(field)}`" for alias, field in ALIASES.items())
        + ". In Python, `ax.CONF.scheduler_timezone` and `ax.CONF.queue_prefix` are "
        "`timezone` and `queue_name`. Its settings without a counterpart here ("
        + ", ".join(f"`{name}`" for name in ORIGINAL_ONLY)
        + ") are reported once, saying why.",
    ]
    return "\n".join(lines) + "\n"


CONF = load()
