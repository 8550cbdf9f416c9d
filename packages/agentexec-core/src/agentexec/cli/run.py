"""``agentexec run module:pool``: run a worker pool until SIGTERM or Ctrl+C."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from agentexec._redact import redact
from agentexec.config import CONF
from agentexec.worker import early_stop


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a worker pool",
        description="Import MODULE and run its pool until SIGTERM or Ctrl+C (both graceful).",
    )
    parser.add_argument(
        "target", metavar="MODULE:POOL",
        help="where the pool is: `myapp.worker:pool` (a file works too: `worker.py:pool`)",
    )
    parser.add_argument("--workers", type=_positive, metavar="N", help="worker processes (AGENTEXEC_NUM_WORKERS)")
    parser.add_argument(
        "--concurrency", type=_positive, metavar="N",
        help="tasks each worker runs at once (AGENTEXEC_WORKER_CONCURRENCY)",
    )
    parser.add_argument(
        "--create-tables", action="store_true",
        help="create agentexec's database tables first, if they do not exist",
    )
    parser.add_argument(
        "--schedules", action="append", metavar="FILE",
        help="add the schedules of this YAML file to the pool (repeatable)",
    )
    parser.add_argument(
        "--log-level", type=str.upper, metavar="LEVEL",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="agentexec's log level (default INFO; WARNING drops the per-task lines, which then "
        "never leave the workers)",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text",
        help="json: one JSON object per line with worker, task, agent_id and attempt",
    )
    parser.add_argument(
        "--metrics-port", type=_port, metavar="PORT",
        help="serve Prometheus metrics of the whole pool on this port at /metrics "
        "(AGENTEXEC_METRICS_PORT; needs agentexec[prometheus])",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.log_level or args.log_format != "text":
        from agentexec.worker.logs import configure_logging

        configure_logging(args.log_level, args.log_format)
    # set before the import: a module may call pool.run() itself while being imported
    if args.workers:
        CONF.num_workers = args.workers
    if args.concurrency:
        CONF.worker_concurrency = args.concurrency
    if args.metrics_port:
        CONF.metrics_port = args.metrics_port
        from agentexec import telemetry

        telemetry.load()
        if not any(instrument.serves_metrics for instrument in telemetry.instruments()):
            print(
                "agentexec run: --metrics-port needs the Prometheus instrument: "
                "pip install 'agentexec[prometheus]'", file=sys.stderr,
            )
            return 2
    try:
        pool = load_pool(args.target)
    except (ImportError, LookupError, TypeError, ValueError) as exc:
        print(f"agentexec run: {redact(exc)}", file=sys.stderr)
        return 2
    for path in args.schedules or []:
        from agentexec.schedule import ScheduleError

        try:
            pool.load_schedules(path)
        except ScheduleError as exc:
            print(f"agentexec run: {redact(exc)}", file=sys.stderr)
            return 2
    problem = unreachable(pool)
    if problem is None and args.create_tables:
        create_tables(pool)
    elif problem is None:
        problem = missing_tables(pool, args.target)
    if problem is not None:
        print(f"agentexec run: {redact(problem)}", file=sys.stderr)
        return 2
    if early_stop.REQUESTED.is_set():
        print("agentexec run: stopped while starting (SIGTERM or SIGINT); the pool did not start", file=sys.stderr)
        early_stop.REQUESTED.clear()
        return 0
    pool.run()
    return 0


def unreachable(pool: Any) -> str | None:
    """Why the pool's backends cannot be reached (a server that does not answer), or None."""
    from agentexec.cli._checks import CommandError, check_reachable

    try:
        check_reachable(pool.backends.urls or {})
    except CommandError as exc:
        return str(exc)
    return None


def missing_tables(pool: Any, target: str) -> str | None:
    """Why the pool must not start for want of its activity tables (with the command that
    creates them), or None. A pool without them would start, then fail every task."""
    from agentexec.cli._checks import mask_url

    check = getattr(pool.backends.activity, "missing_tables", None)
    if not callable(check):
        return None
    where = mask_url(str(getattr(pool.backends.activity, "url", "the database")))
    try:
        missing = check()
    except Exception as exc:
        return f"cannot reach the activity store at {where}: {type(exc).__name__}: {redact(exc)}"
    if not missing:
        outdated = getattr(pool.backends.activity, "schema_problem", None)
        try:
            return outdated() if callable(outdated) else None
        except Exception as exc:
            return f"cannot read the schema version at {where}: {type(exc).__name__}: {redact(exc)}"
    return (
        f"the activity tables {', '.join(missing)} do not exist in {where}. Create them: "
        f"`agentexec run {target} --create-tables` (or once, from Python: "
        f"ax.Base.metadata.create_all(engine))"
    )


def load_pool(target: str) -> Any:
    """The ``Pool`` named by ``module:attribute`` (a zero-argument factory works too)."""
    from agentexec.worker.pool import Pool

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:POOL (for example myapp.worker:pool), got {target!r}")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            pools = [n for n, v in vars(module).items() if isinstance(v, Pool)]
            hint = f"; pools defined there: {', '.join(pools)}" if pools else ""
            raise LookupError(f"{module_name} has no attribute {attr!r}{hint}") from None
    if not isinstance(obj, Pool) and callable(obj) and not inspect.isclass(obj):
        obj = obj()
    if not isinstance(obj, Pool):
        raise TypeError(f"{target} is a {type(obj).__name__}, not an ax.Pool")
    return obj


def _import(module_name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`: modules of the current directory import
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise ImportError(f"no such file: {module_name}")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {module_name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_name)


def create_tables(pool: Any) -> None:
    """agentexec's tables on the pool's database (``ax.Base.metadata.create_all``), plus any
    tables its backends keep (the SQL queue's, for instance)."""
    engine = pool.engine if pool.engine is not None else getattr(pool.backends.activity, "engine", None)
    if engine is not None:
        import agentexec

        agentexec.Base.metadata.create_all(engine)
    for backend in (pool.backends.queue, pool.backends.results, pool.backends.events, pool.backends.activity):
        create = getattr(backend, "create_tables", None)
        if callable(create) and not inspect.iscoroutinefunction(create):
            create()


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _port(value: str) -> int:
    number = _positive(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {number}")
    return number
