"""An idle pool on a healthy Redis logs no warning: the issue's 10-minute run, by hand.

Starts a pool (2 workers, default settings: redis-py's 5 s socket timeout, every blocking read
at its default block time) on a fresh queue with activities on PostgreSQL, plus one
``ax.events`` subscriber in this process, leaves everything idle for ``--minutes``, stops the
pool with SIGTERM and counts the warnings it printed. Before the fix this counted ~40 per 10
minutes (``Redis unavailable during event subscription: Timeout reading from ...``, each idle
subscriber every ~20 s); the one expected line is the persistence warning when the Redis keeps
nothing on disk (true, and said once).

    uv run python benchmarks/idle_pool.py --minutes 10
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import anyio

APP = textwrap.dedent('''
    import logging, os
    from uuid import UUID
    import agentexec as ax
    from pydantic import BaseModel
    from sqlalchemy import create_engine

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    engine = create_engine(os.environ["AGENTEXEC_DATABASE_URL"])
    ax.Base.metadata.create_all(engine)
    pool = ax.Pool(engine=engine, database_url=os.environ["AGENTEXEC_DATABASE_URL"],
                   queue_name=os.environ["IDLE_QUEUE"])

    class Ctx(BaseModel):
        n: int = 0

    @pool.task("noop")
    async def noop(agent_id: UUID, context: Ctx) -> int:
        return context.n

    pool.run()
''')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--redis", default=os.environ.get("AGENTEXEC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--database", default=os.environ.get("AGENTEXEC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()
    queue = f"idle_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    env |= {
        "AGENTEXEC_REDIS_URL": args.redis, "AGENTEXEC_DATABASE_URL": args.database,
        "AGENTEXEC_NUM_WORKERS": "2", "IDLE_QUEUE": queue, "PYTHONUNBUFFERED": "1",
    }
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "idle_app.py"
        app.write_text(APP)
        log_path = Path(tmp) / "pool.log"
        with log_path.open("w") as out:
            proc = subprocess.Popen([sys.executable, str(app)], env=env, stdout=out, stderr=subprocess.STDOUT)
            started = time.monotonic()
            own = _idle_subscriber(args.redis, args.database, args.minutes * 60)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        output = log_path.read_text()
    warnings = [line for line in output.splitlines() if " WARNING " in line or " ERROR " in line]
    persistence = [w for w in warnings if "neither AOF nor RDB" in w]
    other = [w for w in warnings if w not in persistence]
    print(f"idle for {time.monotonic() - started:.0f}s, pool exit {code}")
    print(f"pool warnings: {len(other)} (+ {len(persistence)} persistence warning(s), expected 0 or 1)")
    print(f"this process's subscriber warnings: {len(own)}")
    for line in (other + own)[:20]:
        print("  ", line)


def _idle_subscriber(redis_url: str, database_url: str, seconds: float) -> list[str]:
    """An ``ax.events`` subscriber idle for ``seconds``; the warnings logged meanwhile."""
    import agentexec as ax
    from agentexec.runtime import build_backends, set_backends

    caught: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                caught.append(record.getMessage())

    logging.getLogger("agentexec").addHandler(Keep())
    urls = {"queue": redis_url, "results": redis_url, "events": redis_url, "activity": database_url}
    set_backends(build_backends(urls))  # type: ignore[arg-type]

    async def idle() -> None:
        async with ax.events.subscribe("idle.nobody-publishes-this") as events:
            with anyio.move_on_after(seconds):
                await anext(events)

    anyio.run(idle)
    return caught


if __name__ == "__main__":
    main()
