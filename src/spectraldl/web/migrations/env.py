"""Alembic environment for the web tool's schema.

Run by `spectraldl.web.db.migrate` with an open connection in
``config.attributes["connection"]``; developers can also run ``alembic -c
src/spectraldl/web/alembic.ini revision --autogenerate -m "..."`` with
``SPECTRALDL_DB`` pointing at a database at the latest revision.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from spectraldl.web.db import make_engine, resolve_url
from spectraldl.web.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the caller's connection, or over a new one to the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(resolve_url(config.get_main_option("sqlalchemy.url") or None))
    with engine.begin() as new_connection:
        _run(new_connection)
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=resolve_url(config.get_main_option("sqlalchemy.url") or None),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
