"""Where the web tool's database is, how to connect to it, and its schema migrations.

The URL comes from ``--db``, else the environment variable ``SPECTRALDL_DB``,
else a SQLite file ``spectraldl.db`` in the working directory. PostgreSQL
(``postgresql+psycopg://user:pass@host/db``) is for teams. Every entry point
opens the database through `open_database`, which runs the Alembic migrations
shipped in this package up to the latest revision, so a new release upgrades
an old database on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

ENV_VAR = "SPECTRALDL_DB"
DEFAULT_FILE = "spectraldl.db"


class DatabaseError(RuntimeError):
    """A database URL that cannot be used, with the reason."""


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: ``url``, else ``$SPECTRALDL_DB``, else ``sqlite:///spectraldl.db``.

    A plain path (no ``://``) is taken as a SQLite file; ``postgresql://`` URLs
    get the installed psycopg 3 driver.
    """
    text = (url or os.environ.get(ENV_VAR) or "").strip()
    if not text:
        text = f"sqlite:///{Path.cwd() / DEFAULT_FILE}"
    elif "://" not in text:
        text = f"sqlite:///{Path(text).expanduser().resolve()}"
    if text.startswith("postgresql://") or text.startswith("postgres://"):
        text = "postgresql+psycopg://" + text.split("://", 1)[1]
    try:
        make_url(text)
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {text!r} ({exc})") from None
    return text


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets readers go on while one writer writes; busy_timeout makes
    # concurrent writers wait for each other instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


POOLS = {"sqlite": (8, 56), "postgresql": (10, 20)}
"""Connections kept open and opened beyond them, per dialect: a SQLite connection is a few
file handles; a PostgreSQL server allows about 100 in all by default."""


def pool_capacity(db: Database) -> int:
    """Connections ``db``'s requests may hold at once: its pool's size and overflow."""
    size, overflow = POOLS.get(db.dialect, POOLS["sqlite"])
    return size + overflow


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite gets WAL, a busy timeout and foreign keys)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            parent = Path(database).expanduser().parent
            if not parent.is_dir():
                raise DatabaseError(f"{database}: the folder {parent} does not exist")
        pool = {} if database in ("", ":memory:") else _pool_args("sqlite")
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **_pool_args("postgresql"))


def _pool_args(dialect: str) -> dict[str, int]:
    size, overflow = POOLS[dialect]
    return {"pool_size": size, "max_overflow": overflow}


def begin_write(session: Session) -> None:
    """Start ``session``'s transaction as a writer, so that what it reads next cannot change
    before it commits (a check and the write it guards become one step).

    On SQLite this is ``BEGIN IMMEDIATE`` (the database's write lock, waited for
    up to the busy timeout); the driver otherwise starts a transaction only at
    the first write, after the reads. On PostgreSQL it does nothing: lock the
    rows the check depends on with ``SELECT ... FOR UPDATE``.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.dbapi_connection
    if driver is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrations_dir() -> Path:
    """The Alembic scripts shipped with the package."""
    return Path(str(files("spectraldl.web") / "migrations"))


def alembic_config(engine: Engine) -> Any:
    """An Alembic `Config` for ``engine`` pointing at the shipped migrations (no .ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (the latest by default); a no-op when it is there."""
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass
class Database:
    """An open, migrated database: its URL, engine and session factory."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def in_memory(self) -> bool:
        """True for an in-memory SQLite database (only this process can see it)."""
        url = self.engine.url
        return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")

    def session(self) -> Session:
        """A new ORM session (use as a context manager)."""
        return self.sessions()

    def tables(self) -> list[str]:
        """Names of the tables in the database."""
        return sorted(inspect(self.engine).get_table_names())

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_database(url: str | None = None, *, upgrade: bool = True) -> Database:
    """Connect to the database named by `resolve_url` and migrate it to the latest schema.

    Raises `DatabaseError` naming the URL (without its password) when it cannot
    be reached or migrated.
    """
    resolved = resolve_url(url)
    engine = make_engine(resolved)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        if upgrade:
            migrate(engine)
        else:
            with engine.connect():
                pass
    except Exception as exc:
        engine.dispose()
        if isinstance(exc, DatabaseError):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"{shown}: cannot open the database ({reason})") from exc
    return Database(
        url=resolved, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False)
    )


def open_existing(url: str | None = None, *, upgrade: bool = False) -> Database:
    """Open a web database that must already exist (migrated only with ``upgrade``).

    For readers of the database (reports, the learning loop): a SQLite file that
    is not there, or a database without the tool's tables, is a `DatabaseError`
    instead of a new empty database.
    """
    resolved = make_url(resolve_url(url))
    if resolved.get_backend_name() == "sqlite" and not Path(resolved.database or "").is_file():
        raise DatabaseError(f"{resolved.database}: no such database file")
    db = open_database(url, upgrade=False)
    if "spectra" not in db.tables():
        shown = db.engine.url.render_as_string(hide_password=True)
        db.dispose()
        raise DatabaseError(f"{shown}: not a spectraldl web database (no spectra table)")
    if not upgrade:
        return db
    db.dispose()
    return open_database(url)
