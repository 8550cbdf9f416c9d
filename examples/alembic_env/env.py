"""An application's Alembic ``env.py`` that also runs agentexec's migrations.

The application's revisions stay in its own history (``alembic_version``); agentexec's run right
after them, in the same transaction, with their own version table. ``include_object`` keeps the
application's autogenerate away from agentexec's tables.
"""

from agentexec_sqlalchemy import migrations
from alembic import context
from myapp.models import Base  # the application's own models
from sqlalchemy import engine_from_config, pool

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = engine_from_config(
        context.config.get_section(context.config.config_ini_section, {}),
        prefix="sqlalchemy.", poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=migrations.include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
            migrations.upgrade(connection)


run_migrations_online()
