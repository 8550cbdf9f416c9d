"""``agentexec db``: agentexec's Alembic migrations from the command line.

    agentexec db upgrade [REVISION]     # to the newest by default
    agentexec db downgrade REVISION     # "-1": one step back; "base": drop agentexec's tables
    agentexec db current                # the revision the database is at, and the newest
    agentexec db check                  # exit 1, saying what to run, when the schema is behind

The database is ``--url``, else the activity store's (``AGENTEXEC_DATABASE_URL``, or the
embedded SQLite file when nothing is configured).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentexec._redact import mask_url


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "db",
        help="upgrade agentexec's database tables (Alembic migrations)",
        description="Run agentexec's migrations on the activity store's database (their own "
        "version table: they never touch your application's Alembic history).",
    )
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    url_help = "SQLAlchemy URL of the database (default: the configured activity store's)"

    upgrade = actions.add_parser("upgrade", help="upgrade to REVISION (default: the newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = actions.add_parser(
        "downgrade", help='downgrade to REVISION ("-1": one step back; "base": drop the tables)'
    )
    downgrade.add_argument("revision")
    actions.add_parser("current", help="the revision the database is at, and the newest")
    actions.add_parser(
        "check", help="exit 1, saying what to run, when the schema is not this release's"
    )
    for action in actions.choices.values():
        action.add_argument("--url", help=url_help)
    parser.set_defaults(func=run)


def database_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    from agentexec.runtime import configured_urls

    return configured_urls()["activity"]


def run(args: argparse.Namespace) -> int:
    from agentexec.cli._checks import CommandError, check_reachable, require_existing_databases

    url = database_url(args)
    if "://" not in url:
        print(f"agentexec db: the activity store {url!r} is not a database URL: pass --url",
              file=sys.stderr)
        return 2
    try:
        check_reachable({"database": url})
        if args.db_command in ("current", "check", "downgrade"):
            require_existing_databases({"database": url})
        return _run(args, url)
    except CommandError as exc:
        print(f"agentexec db: {exc}", file=sys.stderr)
        return exc.status


def _run(args: argparse.Namespace, url: str) -> int:
    from agentexec_sqlalchemy import migrations
    from agentexec_sqlalchemy.engine import get_engine

    engine = get_engine(url)
    where = mask_url(url)
    if args.db_command == "upgrade":
        before = migrations.recorded(engine)
        migrations.upgrade(engine, args.revision)
        print(f"{where}: {before or 'no version'} -> {migrations.recorded(engine)}")
        return 0
    if args.db_command == "downgrade":
        before = migrations.recorded(engine)
        migrations.downgrade(engine, args.revision)
        print(f"{where}: {before or 'no version'} -> {migrations.recorded(engine) or 'base'}")
        return 0
    at = migrations.recorded(engine)
    if args.db_command == "current":
        print(f"{where}: {at or 'no version'} (newest: {migrations.HEAD})")
        return 0
    problem = migrations.problem(engine)
    if problem is not None:
        print(f"agentexec db check: {where}: {problem}", file=sys.stderr)
        return 1
    print(f"{where}: up to date ({at})")
    return 0
