"""SQLite on the event loop's own thread, for SQLAlchemy's ``sqlite+aiosqlite`` dialect.

aiosqlite runs each call in a worker thread and hands the result back through the event loop, and
SQLAlchemy makes about four such calls per statement (cursor, execute, fetch, close): each hop (a
hand-off to the thread and a wake-up of the loop) costs far more than the short statements
themselves on an indexed WAL database (docs/performance.md, item 4). This module gives the dialect
(through ``create_async_engine(async_creator=...)``) a connection with aiosqlite's interface whose
coroutines call :mod:`sqlite3` directly, so a statement costs what SQLite costs. It is one part of
the SQL fast path (:mod:`adapters.sqlalchemy.fastpath`, whose upgrade checklist lists the private
names of aiosqlite that this connection mimics for SQLAlchemy's adapter).

The price: while SQLite works, the event loop waits. That is why this is only for SQLite with
short, indexed statements, a single pooled connection (no lock waits inside the process) and
``synchronous=NORMAL`` in WAL mode (no fsync on commit; the log is copied back into the database
file by a thread of the connection's own, :class:`WalCheckpointer`). If another
process holds the write lock (``p2p-chat migrate``, a second server on the same file), a
transaction's first write waits for it inside SQLite for up to the busy timeout. Operators who
would rather pay the hops choose ``CHAT_SQLITE_DRIVER=thread`` (aiosqlite as it comes).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy.exc import DBAPIError, StatementError

log = logging.getLogger("p2p_chat.sqlite")

CHECKPOINT_INTERVAL_S = 0.1
CHECKPOINT_STOP_TIMEOUT_S = 1.0
CHECKPOINT_STOP_POLL_S = 0.005

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType

    from sqlalchemy.engine import Connection


class _InlineCursor:
    """aiosqlite's ``Cursor`` surface, synchronous inside."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Self:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Self:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorContext:
    """What ``aiosqlite.Connection.cursor()`` returns: awaitable, and an async context manager."""

    def __init__(self, cursor: _InlineCursor) -> None:
        self._inline = cursor

    def __await__(self) -> Any:
        return self._done().__await__()

    async def _done(self) -> _InlineCursor:
        return self._inline

    async def __aenter__(self) -> _InlineCursor:
        return self._inline

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._inline.close()


class _RunNow:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's adapter uses directly to set
    ``isolation_level``: the request runs at once and its future is answered."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class WalCheckpointer:
    """Copies the write-ahead log back into the database file from a thread of its own.

    SQLite checkpoints inside the commit that takes the log past ``wal_autocheckpoint`` pages: on
    the event loop's thread that commit copies the log into the database file while every
    connection waits, and under load those stalls were what the slowest messages waited for
    (docs/performance.md, item 20). This thread runs a ``PASSIVE`` checkpoint (it never waits for
    the writer nor blocks it) on its own connection after commits, at most once per
    ``interval_s``, with Python's lock released while SQLite works; an idle database costs it
    nothing. The writer's own checkpoint stays, as the way the log restarts from its beginning
    under continuous writes; it then only copies the pages written since this thread's last pass.
    """

    def __init__(self, database: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self._database = database
        self._interval_s = interval_s
        self._written = threading.Event()
        self._stopping = threading.Event()
        self._connection: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """A transaction committed: checkpoint soon."""
        self._written.set()

    def _run(self) -> None:
        try:
            connection = self._connection = sqlite3.connect(self._database, isolation_level=None)
        except sqlite3.Error:
            log.exception("the WAL checkpoint thread could not open %s; commits will checkpoint", self._database)
            return
        try:
            while True:
                self._written.wait()
                if self._stopping.is_set():
                    return
                self._written.clear()
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # e.g. the file went away; the writer still checkpoints
                    if not self._stopping.is_set():  # not just interrupted by stop()
                        log.warning("WAL checkpoint failed: %s", exc)
                if self._stopping.wait(self._interval_s):
                    return
        finally:
            connection.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop, interrupting a checkpoint under way (called on the event loop: it must not wait
        for a pass over a large log)."""
        self._stopping.set()
        self._written.set()
        if threading.current_thread() is self._thread:
            return
        deadline = time.monotonic() + CHECKPOINT_STOP_TIMEOUT_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            # Again and again: an interrupt that comes just before a pass starts is forgotten by
            # SQLite. Safe from another thread; a pass cut short loses nothing.
            connection = self._connection
            if connection is not None:
                with contextlib.suppress(sqlite3.Error):  # already closed by the thread
                    connection.interrupt()
            self._thread.join(CHECKPOINT_STOP_POLL_S)


class InlineSqliteConnection:
    """aiosqlite's ``Connection`` surface over a :class:`sqlite3.Connection` used in this thread;
    with a :class:`WalCheckpointer` for a file database, stopped when the connection closes."""

    def __init__(self, connection: sqlite3.Connection, checkpointer: WalCheckpointer | None = None) -> None:
        # ``_conn``, ``_tx`` and ``_connection``: aiosqlite's private names, which SQLAlchemy's
        # adapter reads (the upgrade checklist in adapters/sqlalchemy/fastpath/__init__.py).
        self._conn: sqlite3.Connection | None = connection
        self._tx = _RunNow()
        self.checkpointer = checkpointer

    @property
    def _connection(self) -> sqlite3.Connection | None:  # read by SQLAlchemy's adapter
        return self._conn

    @property
    def raw(self) -> sqlite3.Connection:
        """The connection itself, for the statements of :mod:`adapters.sqlalchemy.fastpath.driver`."""
        return self._live()

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._live().isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._live().isolation_level = value  # type: ignore[assignment]

    def cursor(self) -> _CursorContext:
        return _CursorContext(_InlineCursor(self._live().cursor()))

    async def commit(self) -> None:
        self._live().commit()
        if self.checkpointer is not None:
            self.checkpointer.committed()

    async def rollback(self) -> None:
        self._live().rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        connection, self._conn = self._conn, None
        checkpointer, self.checkpointer = self.checkpointer, None
        try:
            if connection is not None:
                connection.close()
        finally:
            if checkpointer is not None:
                checkpointer.stop()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._live().create_function(*args, **kwargs)


def inline_creator(database: str) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: opens ``database`` (a file path) the way
    aiosqlite would, without a thread."""

    async def connect() -> InlineSqliteConnection:
        connection = sqlite3.connect(database, isolation_level=None, check_same_thread=True)
        in_memory = database == ":memory:" or database.startswith("file::memory:")
        return InlineSqliteConnection(connection, None if in_memory else WalCheckpointer(database))

    return connect


def sqlalchemy_error(connection: Connection | None, statement: str, params: Any, exc: Exception) -> StatementError:
    """An error of a statement run on the :class:`sqlite3.Connection` itself, as SQLAlchemy would
    have raised it from ``Connection.execute``: wrapped in its ``DBAPIError`` class, and, when the
    connection is gone (closed underneath, "no active connection"), the connection invalidated so
    the pool replaces it and the unit of work reports the store unavailable. Its text never holds
    the statement's parameters (message bodies, emails, tokens): errors are logged."""
    orig = exc if isinstance(exc, sqlite3.Error) else sqlite3.OperationalError(str(exc))
    if connection is None:
        return DBAPIError.instance(statement, params, orig, sqlite3.Error, hide_parameters=True)
    dialect = connection.dialect
    gone = dialect.is_disconnect(orig, connection.connection, None)  # type: ignore[arg-type]
    if gone:
        connection.invalidate(orig)
    return DBAPIError.instance(
        statement, params, orig, sqlite3.Error, hide_parameters=True, connection_invalidated=gone, dialect=dialect
    )
