"""``CONF``: agentexec's configuration, read from ``AGENTEXEC_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Config(BaseSettings):
    """Every setting can be given as ``AGENTEXEC_<NAME>`` in the environment (or a ``.env`` file).

    The first block is the documented contract of ``spec/core-api.md``; the rest are
    agentexec's additions for backend selection, reliability and concurrency.
    """

    model_config = SettingsConfigDict(
        env_prefix="AGENTEXEC_", env_file=".env", extra="ignore", validate_assignment=True
    )

    # -- spec/core-api.md ---------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="Redis connection URL. When unset, agentexec runs on the embedded SQL backend.",
    )
    queue_name: str = "agentexec_tasks"
    table_prefix: str = "agentexec_"
    num_workers: int = Field(default=4, ge=1)
    graceful_shutdown_timeout: int = Field(default=300, ge=0)
    redis_pool_size: int = Field(default=10, ge=1)
    redis_pool_timeout: int = Field(default=5, ge=0)
    result_ttl: int = Field(default=3600, ge=1)
    activity_message_create: str = "Waiting to start."
    activity_message_started: str = "Task started."
    activity_message_complete: str = "Task completed successfully."
    activity_message_error: str = "Task failed with error: {error}"

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

    # -- workers --------------------------------------------------------------------------
    worker_concurrency: int = Field(
        default=1, ge=1, description="Tasks one worker process runs at once on its event loop."
    )
    pipeline_concurrency: int = Field(
        default=64,
        ge=1,
        description="Pipeline runs one worker process runs at once, on its own lane, so a "
        "pipeline awaiting its children never holds a slot they need.",
    )
    timezone: str = Field(default="UTC", description="Timezone of cron schedules.")


CONF = Config()
