"""Engine set-up per backend: SQLite gets one pooled connection (transactions queue for it in the
pool), WAL with a longer checkpoint interval, a busy timeout (for other processes, e.g.
``p2p-chat migrate``), the configured ``synchronous`` level and ``BEGIN IMMEDIATE``
transactions; PostgreSQL is used as it comes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from adapters.sqlalchemy.fastpath.inline_sqlite import InlineSqliteConnection, inline_creator, sqlalchemy_error
from adapters.sqlalchemy.push import ChatSession, drop_targets_of_revoked

SqliteSynchronous = Literal["NORMAL", "FULL"]
SqliteDriver = Literal["inline", "thread"]
SQLITE_BUSY_TIMEOUT_MS = 10_000
# WAL pages (4 KiB each) after which a commit copies the log back into the database file. SQLite's
# default, 1,000, checkpoints every few commits under load, each time rewriting the same hot index
# pages; at 10,000 (a log of up to ~40 MiB) those pages are copied ten times less often
# (docs/performance.md, item 17; the checkpoint thread of adapters/sqlalchemy/fastpath/inline_sqlite.py
# copies the rest between commits).
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
MIN_SQLITE = (3, 35, 0)  # RETURNING (adapters/sqlalchemy/fastpath/hot_sql.py)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; ``None`` for PostgreSQL and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database)
    return None


def ensure_sqlite_directory(url: str) -> None:
    """Create the directory of a SQLite file database, so a fresh checkout just works. Only a
    migration calls it: a server refuses a database that does not exist and creates nothing."""
    if (path := sqlite_file(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def create_engine(
    url: str,
    *,
    sqlite_synchronous: SqliteSynchronous = "NORMAL",
    sqlite_driver: SqliteDriver = "inline",
    echo: bool = False,
    timeout_s: float | None = None,
) -> AsyncEngine:
    """``sqlite_driver``: ``inline`` runs SQLite on the event loop's thread
    (:mod:`adapters.sqlalchemy.fastpath.inline_sqlite`), ``thread`` in aiosqlite's worker thread.

    ``timeout_s`` (PostgreSQL; ``CHAT_DB_TIMEOUT_S`` for the server, none for migrations): the
    longest a connect, each statement and the wait for a pooled connection may take, so a hung
    server costs a caller a bounded wait instead of hanging it (docs/operations.md)."""
    if not is_sqlite(url):
        if timeout_s is None:
            return create_async_engine(url, echo=echo, pool_pre_ping=True, hide_parameters=True)
        return create_async_engine(
            url,
            echo=echo,
            pool_pre_ping=True,
            hide_parameters=True,
            pool_timeout=timeout_s,
            connect_args={"timeout": timeout_s, "command_timeout": timeout_s},
        )
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} is too old: p2p-chat needs SQLite "
            f"{'.'.join(map(str, MIN_SQLITE))} or later (RETURNING); use a newer Python build or PostgreSQL"
        )
    options: dict[str, Any] = {}
    if sqlite_driver == "inline":
        options["async_creator"] = inline_creator(make_url(url).database or ":memory:")
    # One connection: SQLite runs one writer at a time anyway. Queueing for it in the pool (an
    # asyncio wait) is far cheaper than several connections spinning in SQLite's busy handler.
    engine = create_async_engine(
        url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60, hide_parameters=True, **options
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own transaction handling defers it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Straight to SQLite (part of the fast path, adapters/sqlalchemy/fastpath/): through
        # ``exec_driver_sql`` SQLAlchemy's statement machinery costs many times the statement
        # (docs/performance.md, item 16). Errors come out as SQLAlchemy's (a busy database is an
        # OperationalError to the unit of work; a dead connection is invalidated).
        driver_connection = connection.connection.driver_connection
        if isinstance(driver_connection, InlineSqliteConnection):
            try:
                driver_connection.raw.execute("BEGIN IMMEDIATE")
            except (sqlite3.Error, ValueError) as exc:
                raise sqlalchemy_error(connection, "BEGIN IMMEDIATE", (), exc) from exc
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=ChatSession)


# A revoked login's push targets go in the revoking transaction (adapters/sqlalchemy/push.py).
event.listen(ChatSession, "before_flush", drop_targets_of_revoked)
