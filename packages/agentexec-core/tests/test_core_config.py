"""CONF reads every key from ``AGENTEXEC_*`` environment variables, with the spec's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agentexec.config import Config

SPEC_DEFAULTS = {
    "redis_url": None,
    "queue_name": "agentexec_tasks",
    "table_prefix": "agentexec_",
    "num_workers": 4,
    "graceful_shutdown_timeout": 300,
    "redis_pool_size": 10,
    "redis_pool_timeout": 5,
    "result_ttl": 3600,
    "activity_message_create": "Waiting to start.",
    "activity_message_started": "Task started.",
    "activity_message_complete": "Task completed successfully.",
    "activity_message_error": "Task failed with error: {error}",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AGENTEXEC_* variables and no .env file in the working directory."""
    import os

    from agentexec.config import ALIASES

    for key in list(os.environ):
        if key.startswith("AGENTEXEC_") or key.upper() in ALIASES:  # REDIS_URL too
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_defaults_match_the_spec(clean_env: pytest.MonkeyPatch) -> None:
    conf = Config()
    assert {key: getattr(conf, key) for key in SPEC_DEFAULTS} == SPEC_DEFAULTS
    assert (conf.max_attempts, conf.lease_timeout, conf.worker_concurrency) == (3, 30.0, 10)
    assert conf.plugins is None and conf.disabled_plugins is None and conf.strict_plugins is False


def test_every_key_is_read_from_its_env_var(clean_env: pytest.MonkeyPatch) -> None:
    values = {
        "redis_url": "redis://example:6380/2",
        "queue_name": "jobs",
        "table_prefix": "ax_",
        "num_workers": "7",
        "graceful_shutdown_timeout": "12",
        "redis_pool_size": "3",
        "redis_pool_timeout": "9",
        "result_ttl": "60",
        "activity_message_create": "queued!",
        "activity_message_started": "go!",
        "activity_message_complete": "done!",
        "activity_message_error": "oops: {error}",
        "database_url": "postgresql+psycopg://db/x",
        "queue_backend": "memory",
        "plugins": "memory,redis",
        "disabled_plugins": "openai",
        "strict_plugins": "1",
        "max_attempts": "5",
        "lease_timeout": "2.5",
        "worker_concurrency": "8",
    }
    for key, value in values.items():
        clean_env.setenv(f"AGENTEXEC_{key.upper()}", value)
    conf = Config()
    for key, value in values.items():
        assert str(getattr(conf, key)) in (value, "True"), key
    assert conf.num_workers == 7 and conf.lease_timeout == 2.5 and conf.strict_plugins is True


def test_env_file_in_the_working_directory_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENTEXEC_QUEUE_NAME=from_dotenv\n")
    assert Config().queue_name == "from_dotenv"


@pytest.mark.parametrize(("key", "value"), [("NUM_WORKERS", "0"), ("LEASE_TIMEOUT", "0"), ("RESULT_TTL", "soon")])
def test_invalid_values_are_rejected_naming_the_key(clean_env: pytest.MonkeyPatch, key: str, value: str) -> None:
    clean_env.setenv(f"AGENTEXEC_{key}", value)
    with pytest.raises(ValidationError, match=key.lower()):
        Config()
