"""agentexec's Alembic migrations, shipped with the adapter.

They keep their own version table (``{prefix}alembic_version``), so they never mix with an
application's own Alembic history. Three ways to run them:

- ``agentexec db upgrade`` / ``agentexec db current`` / ``agentexec db check`` (the CLI);
- from Python: :func:`upgrade` (``migrations.upgrade(engine)``);
- from the application's own Alembic ``env.py``: call :func:`upgrade` with the connection the
  environment runs on, and pass :func:`include_object` to ``context.configure`` so that the
  application's autogenerate leaves agentexec's tables alone.

``ax.Base.metadata.create_all(engine)`` still works for a new database: the tables it creates
are the head revision's, and it stamps that revision (see ``models``), so a later
``agentexec db upgrade`` starts from there.

This module imports nothing heavy; Alembic is imported by the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentexec.config import CONF

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection, Engine

#: the revisions of this release, oldest first (tests check them against the scripts)
REVISIONS = ("ax0001", "ax0002", "ax0003", "ax0004", "ax0005", "ax0006", "ax0007", "ax0008")
HEAD = REVISIONS[-1]
#: the revision whose schema is agentexec 0.4's first (what ``create_all`` made before migrations)
BASELINE = "ax0001"
VERSION_TABLE = f"{CONF.table_prefix}alembic_version"
SCRIPT_LOCATION = str(Path(__file__).parent)
UPGRADE_COMMAND = "agentexec db upgrade"


def config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for agentexec's scripts, running on ``connection`` when given."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _migrate(source: Engine | Connection, destination: str, *, down: bool = False) -> None:
    """Run the scripts from the recorded revision to ``destination`` on one transaction of
    ``source`` (an Engine: a new one, committed at the end).

    Straight through a ``MigrationContext``, not ``alembic.command``: that would set up a second
    ``EnvironmentContext``, which breaks the one of an application's ``env.py`` calling this."""
    import sqlalchemy as sa
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from agentexec_sqlalchemy.activity.models import Base

    script = ScriptDirectory.from_config(config())

    def steps(revision: Any, _context: Any) -> Any:
        if down:
            return script._downgrade_revs(destination, revision)
        return script._upgrade_revs(destination, revision)

    def run(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            # two processes upgrading at once queue up (the key the stores' schema set-up takes)
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(0x61676578)))
        context = MigrationContext.configure(conn, opts={
            "version_table": VERSION_TABLE, "fn": steps, "script": script,
            "target_metadata": Base.metadata, "destination_rev": destination,
        })
        with Operations.context(context), context.begin_transaction():
            context.run_migrations()

    if isinstance(source, Connection):
        run(source)
    else:
        with source.begin() as conn:
            run(conn)


def upgrade(source: Engine | Connection, revision: str = "head") -> None:
    """Upgrade agentexec's tables on ``source`` to ``revision`` (the newest by default).

    A database whose tables ``create_all`` made before migrations existed, or the original
    agentexec's tables (0.1.x to 0.3), is adopted by the first revision, keeping every row."""
    _migrate(source, revision)


def downgrade(source: Engine | Connection, revision: str) -> None:
    """Downgrade agentexec's tables to ``revision`` (``"-1"``: one step back; ``"base"``: drop them)."""
    _migrate(source, revision, down=True)


def current(source: Engine | Connection) -> str | None:
    """The revision the database is at (``None``: never migrated nor created by ``create_all``)."""
    from alembic.migration import MigrationContext

    def read(conn: Connection) -> str | None:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()

    from sqlalchemy.engine import Connection

    if isinstance(source, Connection):
        return read(source)
    with source.connect() as conn:
        return read(conn)


def head() -> str:
    """The newest revision of the shipped scripts."""
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(config()).get_current_head()
    assert found is not None
    return found


def recorded(source: Engine | Connection) -> str | None:
    """The revision recorded in the version table, read with one plain query (no Alembic
    import: ``agentexec run`` and the embedded default check it at every start)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

    def read(conn: Connection) -> str | None:
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        quoted = conn.dialect.identifier_preparer.quote(VERSION_TABLE)
        return conn.execute(sa.text(f"SELECT version_num FROM {quoted}")).scalar()

    if isinstance(source, Connection):
        return read(source)
    with source.connect() as conn:
        return read(conn)


def problem(source: Engine | Connection) -> str | None:
    """Why the database's agentexec schema is not this release's (with the command that fixes
    it), or ``None`` when it is up to date."""
    at = recorded(source)
    if at == HEAD:
        return None
    if at is None:
        return (
            f"agentexec's tables in this database are not under migrations yet (no "
            f"{VERSION_TABLE} table): run `{UPGRADE_COMMAND}` (it creates the missing tables "
            f"and adopts existing ones, the original agentexec's included)"
        )
    if at not in REVISIONS:
        return (
            f"agentexec's tables are at revision {at}, which a newer agentexec made (this "
            f"release knows {', '.join(REVISIONS)}): upgrade agentexec-sqlalchemy"
        )
    return f"agentexec's tables are at revision {at}, this release needs {HEAD}: run `{UPGRADE_COMMAND}`"


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """For an application's Alembic ``env.py`` (``context.configure(include_object=...)``):
    autogenerate skips agentexec's tables and version table, which these migrations own."""
    from agentexec_sqlalchemy.activity.models import Base

    if type_ == "table":
        return name != VERSION_TABLE and name not in Base.metadata.tables
    table = getattr(obj, "table", None)
    return getattr(table, "name", None) not in Base.metadata.tables


__all__ = [
    "BASELINE", "HEAD", "REVISIONS", "VERSION_TABLE", "config", "current", "downgrade", "head",
    "include_object", "problem", "recorded", "upgrade",
]
