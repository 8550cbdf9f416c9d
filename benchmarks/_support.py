"""What every benchmark script shares (imported as ``_support``: scripts run from this folder)."""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from agentexec.task import Envelope

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def stack_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's arguments, starting with the stack it runs on: ``--stack``,
    ``--redis-url``, ``--pg-url``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["redis", "sqlite", "postgres"], default="redis")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--pg-url", default=PG_URL)
    return parser


@contextmanager
def fresh_postgres(base_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``base_url`` for one run; dropped afterwards."""
    name = f"agentexec_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def envelopes(queue_name: str, count: int) -> list[Envelope]:
    """``count`` task envelopes of ~150 bytes for ``queue_name``."""
    return [
        Envelope(agent_id=uuid.uuid4(), task_name="bench", context={"n": n, "text": "x" * 64},
                 queue_name=queue_name, enqueued_at=time.time())
        for n in range(count)
    ]


async def rate(label: str, count: int, work: Awaitable[object]) -> None:
    """Await ``work`` and print how many of ``count`` tasks per second it did."""
    started = time.perf_counter()
    await work
    elapsed = time.perf_counter() - started
    print(f"  {label:<16} {count / elapsed:>9,.0f} tasks/s   ({count} in {elapsed:.2f}s)")
