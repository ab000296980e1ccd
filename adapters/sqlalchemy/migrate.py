"""Schema migrations (Alembic, packaged with the code): the only API the rest of the code uses.

Every function opens its own engine with :func:`adapters.sqlalchemy.engine.create_engine`, runs
the Alembic command on one connection inside one transaction (``engine.begin()``; on SQLite that
is the engine's ``BEGIN IMMEDIATE``, so a migration is atomic and excludes concurrent writers)
and disposes the engine. They are coroutines, so they can be called from a running event loop
(the app's startup, async tests); ``p2p-chat migrate`` runs :func:`upgrade` under ``asyncio.run``.

Only :func:`upgrade` creates anything: the others find a SQLite file that does not exist
"never migrated" without creating it (nor its directory), so a server refused for an
un-migrated database leaves nothing on disk. A database that cannot be reached raises
:class:`DatabaseUnavailableError` (one line, for the command line), not the driver's error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from adapters.sqlalchemy.engine import create_engine, ensure_sqlite_directory, sqlite_file

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


class SchemaNotCurrentError(Exception):
    """The database is not at the revision this code needs (never migrated, behind or ahead)."""

    def __init__(self, current: str | None, head: str) -> None:
        at = f"at revision {current}" if current is not None else "not migrated (no revision)"
        super().__init__(f"database schema is {at}, the code needs {head}: run `p2p-chat migrate`")
        self.current = current
        self.head = head


class DatabaseUnavailableError(Exception):
    """The database cannot be reached or opened (server down, wrong host, user, password or
    database name, a file that cannot be created); the message is one line, the password hidden."""

    def __init__(self, url: str, cause: BaseException) -> None:
        reason = str(getattr(cause, "orig", None) or cause) or type(cause).__name__
        shown = make_url(url).render_as_string(hide_password=True)
        super().__init__(f"cannot open the database {shown}: {' '.join(reason.split())}")


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for the packaged migrations (no ``alembic.ini`` needed).

    ``connection`` is handed to ``env.py``, which then migrates over it inside the caller's
    transaction; otherwise ``env.py`` connects to ``url`` itself.
    """
    config = Config(attributes={"connection": connection} if connection is not None else None)
    # ConfigParser interpolates "%": escape it in paths and URLs.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The revision the code needs (the single head of the migration history)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def _run(url: str, work: Callable[[Connection], T], timeout_s: float | None = None) -> T:
    engine = create_engine(url, timeout_s=timeout_s)
    try:
        connection = await _connect(url, engine)
        try:
            async with connection.begin():
                return await connection.run_sync(work)
        finally:
            await connection.close()
    finally:
        await engine.dispose()


async def _connect(url: str, engine: AsyncEngine) -> AsyncConnection:
    """A connection, or :class:`DatabaseUnavailableError` (errors of the work itself pass)."""
    try:
        return await engine.connect()
    except (OSError, DBAPIError) as exc:
        raise DatabaseUnavailableError(url, exc) from exc


def _missing(url: str) -> bool:
    """A SQLite database whose file does not exist (opening it would create it)."""
    path = sqlite_file(url)
    return path is not None and not path.exists()


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (idempotent at head); a SQLite file and
    its directory are created."""

    def work(connection: Connection) -> None:
        command.upgrade(alembic_config(connection=connection), revision)

    try:
        ensure_sqlite_directory(url)
    except OSError as exc:
        raise DatabaseUnavailableError(url, exc) from exc
    await _run(url, work)


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops every table)."""

    def work(connection: Connection) -> None:
        command.downgrade(alembic_config(connection=connection), revision)

    await _run(url, work)


async def current_revision(url: str, timeout_s: float | None = None) -> str | None:
    """The revision the database at ``url`` is at; ``None`` when it was never migrated (a SQLite
    file that does not exist is not created). ``timeout_s`` bounds the connect and the read
    (PostgreSQL)."""
    if _missing(url):
        return None

    def work(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return await _run(url, work, timeout_s)


async def ensure_current(url: str, timeout_s: float | None = None) -> None:
    """Raise :class:`SchemaNotCurrentError` unless the database is exactly at the head revision."""
    current, head = await current_revision(url, timeout_s), head_revision()
    if current != head:
        raise SchemaNotCurrentError(current, head)
