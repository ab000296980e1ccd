"""Statements at the driver level, for the hot paths (sending, acknowledging, draining).

SQLAlchemy's execution of a statement — the compiled cache lookup, per-row parameter processing,
the execution context, result processing and, for the async engines, a greenlet switch or two —
costs many times what SQLite itself takes for the short indexed statements of a batch
(docs/performance.md, item 9). The handful of statements that run for every message
are therefore written here as plain SQL for each dialect and run on the session's own connection,
inside its transaction:

* SQLite on the event loop's thread (``CHAT_SQLITE_DRIVER=inline``): straight on the
  :class:`sqlite3.Connection`;
* aiosqlite and asyncpg: through ``exec_driver_sql``, which skips compilation and parameter
  processing but keeps the adapter's transaction handling.

Many rows travel as one parameter — a JSON array read with ``json_each`` on SQLite, one array per
column read with ``unnest`` on PostgreSQL — so every statement is a constant string, whatever the
batch size; rows only written (``Driver.many``) are bound row by row on SQLite instead, which
spares SQLite parsing each value out of JSON. Values are bound, never formatted into the SQL.
Timestamps are stored as SQLAlchemy stores them (:class:`adapters.sqlalchemy.orm.UtcDateTime`):
naive UTC text with microseconds on SQLite, ``timestamptz`` on PostgreSQL. Errors come out as
SQLAlchemy's exception classes, as they would from ``Connection.execute``, so the unit of work
translates them the same way.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from adapters.sqlalchemy.fastpath.inline_sqlite import InlineSqliteConnection, sqlalchemy_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


_json = msgspec.json.Encoder().encode
_SESSION_KEY = "p2p_chat.driver"


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement for each dialect: ``?`` placeholders on SQLite, ``$1…$n`` on PostgreSQL."""

    sqlite: str
    postgresql: str


class Driver:
    """The session's connection, inside its transaction, at the driver level."""

    __slots__ = ("_conn", "_raw", "pg")

    def __init__(self, conn: AsyncConnection, raw: sqlite3.Connection | None) -> None:
        self._conn = conn
        self._raw = raw  # SQLite on this thread: the connection itself
        self.pg = conn.dialect.name == "postgresql"

    @classmethod
    async def of(cls, session: AsyncSession) -> Driver:
        """The driver of ``session``'s connection (which begins its transaction); made once per
        session, whose repositories all share it."""
        known = session.info.get(_SESSION_KEY)
        if isinstance(known, Driver):
            return known
        conn = await session.connection()
        raw: sqlite3.Connection | None = None
        if conn.dialect.name == "sqlite":
            pooled = await conn.get_raw_connection()
            driver_connection = pooled.driver_connection
            if isinstance(driver_connection, InlineSqliteConnection):
                raw = driver_connection.raw
        driver = session.info[_SESSION_KEY] = cls(conn, raw)
        return driver

    @staticmethod
    def forget(session: AsyncSession) -> None:
        """Drop ``session``'s driver when its transaction ends (the next one may get another
        connection)."""
        session.info.pop(_SESSION_KEY, None)

    async def rows(self, sql: Sql, params: Sequence[Any]) -> list[Any]:
        """Run ``sql`` with positional ``params``; its rows as tuples (none for plain DML)."""
        if self._raw is None:
            result = await self._conn.exec_driver_sql(sql.postgresql if self.pg else sql.sqlite, tuple(params))
            return list(result.all()) if result.returns_rows else []
        try:
            return self._raw.execute(sql.sqlite, params).fetchall()
        except sqlite3.Error as exc:
            raise sqlalchemy_error(self._conn.sync_connection, sql.sqlite, params, exc) from exc

    async def many(self, sql: Sql, rows: Sequence[Sequence[Any]], columns: int) -> None:
        """Run ``sql`` once per row: on SQLite its ``VALUES (?, …)`` form bound row by row
        (``executemany``: no JSON to parse per value), on PostgreSQL its ``unnest`` form once over
        :meth:`table`. Returns nothing."""
        if self.pg:
            await self.rows(sql, self.table(rows, columns))
        elif self._raw is None:
            await self._conn.exec_driver_sql(sql.sqlite, [tuple(row) for row in rows])
        else:
            try:
                self._raw.executemany(sql.sqlite, rows)
            except sqlite3.Error as exc:
                raise sqlalchemy_error(self._conn.sync_connection, sql.sqlite, rows, exc) from exc

    # -- values ---------------------------------------------------------------------------

    def table(self, rows: Sequence[Sequence[Any]], columns: int) -> list[Any]:
        """``rows`` as the parameters of a row set: one JSON array on SQLite (``json_each``),
        ``columns`` arrays on PostgreSQL (``unnest``)."""
        if self.pg:
            return [[row[i] for row in rows] for i in range(columns)]
        return [_json(rows).decode()]

    def stamp(self, value: datetime) -> Any:
        """An aware datetime as the column stores it (as :class:`UtcDateTime` would)."""
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        if self.pg:
            return value
        if value.utcoffset():
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def when(self, value: Any) -> datetime | None:
        """A stored timestamp as an aware UTC datetime."""
        if value is None:
            return None
        # Naive UTC text (see :meth:`stamp`), parsed with its offset appended: cheaper than parsing,
        # then replacing the time zone, on the drain's hot path (docs/performance.md, item 15).
        if isinstance(value, str):
            return datetime.fromisoformat(value + "+00:00")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]
