"""Alembic environment of agentexec's migrations: runs on the connection it is handed
(``config.attributes["connection"]``), with agentexec's own version table."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from agentexec_sqlalchemy.activity.models import Base
from agentexec_sqlalchemy.migrations import VERSION_TABLE


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # a table's reflected CHECK constraints and SQLite's lack of ALTER are handled by the
        # scripts themselves
        render_as_batch=False,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # the alembic command line, with sqlalchemy.url in its ini file
    engine = engine_from_config(
        context.config.get_section(context.config.config_ini_section, {}),
        prefix="sqlalchemy.", poolclass=pool.NullPool,
    )
    with engine.begin() as conn:
        _run(conn)
