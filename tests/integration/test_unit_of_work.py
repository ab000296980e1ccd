"""The SQLAlchemy unit of work tells a failing database apart from bad data."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy import engine as engine_module
from adapters.sqlalchemy.engine import SqliteDriver, create_engine, make_sessionmaker
from adapters.sqlalchemy.fastpath.inline_sqlite import InlineSqliteConnection, WalCheckpointer, inline_creator
from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from application.ports import StoreUnavailableError
from domain.errors import BusyError
from tests.integration.test_message_store import add_users, draft

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from tests.integration.conftest import MigratedTemplates


@pytest.mark.parametrize("driver", ["inline", "thread"])
async def test_a_database_locked_by_another_process_is_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: SqliteDriver, migrated_templates: MigratedTemplates
) -> None:
    """SQLite only: its lock is on the whole file (PostgreSQL locks rows). The transaction's
    ``BEGIN IMMEDIATE`` is what waits and fails, on either driver."""
    await migrated_templates.sqlite_copy(tmp_path / "locked.db")
    url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}"
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    holder, server = create_engine(url), create_engine(url, sqlite_driver=driver)
    try:
        async with holder.connect() as other:  # another process holding the write lock
            await other.execute(text("SELECT 1"))  # BEGIN IMMEDIATE (the engine's begin hook)
            uow = SqlAlchemyUnitOfWork(make_sessionmaker(server))

            async def read() -> None:
                async with uow:
                    await uow.users.existing_ids([1])

            with pytest.raises(StoreUnavailableError) as caught:
                await read()
            assert isinstance(caught.value, BusyError)  # 503 over HTTP, "internal" on a socket
            assert "locked" in caught.value.detail
    finally:
        await holder.dispose()
        await server.dispose()


async def test_bad_data_is_not_store_unavailable(session_factory: async_sessionmaker[AsyncSession]) -> None:
    def uow() -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(session_factory)

    ann, _ = await add_users(uow, "Ann", "Bob")

    async def send_to_nobody() -> None:
        async with uow() as tx:
            await tx.conversations.append([draft(ann, 999_999)])  # no such recipient: a foreign key
            await tx.commit()

    with pytest.raises(IntegrityError):
        await send_to_nobody()


async def test_a_sqlite_connection_that_died_is_store_unavailable_then_replaced(
    tmp_path: Path, migrated_templates: MigratedTemplates
) -> None:
    """Inline SQLite: the engine's ``BEGIN IMMEDIATE`` runs on the sqlite3 connection itself; a
    connection found dead there is reported as the store being unavailable and replaced."""
    await migrated_templates.sqlite_copy(tmp_path / "dies.db")
    url = f"sqlite+aiosqlite:///{tmp_path / 'dies.db'}"
    server = create_engine(url)
    killed: list[object] = []

    def kill_once(_dbapi: Any, _record: Any, proxy: Any) -> None:
        if not killed:
            killed.append(proxy.driver_connection)
            proxy.driver_connection.raw.close()  # dies between checkout and BEGIN

    event.listen(server.sync_engine.pool, "checkout", kill_once)
    try:
        sessions = make_sessionmaker(server)

        async def read() -> set[int]:
            async with SqlAlchemyUnitOfWork(sessions) as uow:
                return await uow.users.existing_ids([1])

        with pytest.raises(StoreUnavailableError):
            await read()
        assert killed
        assert await read() == set()  # a fresh connection
    finally:
        await server.dispose()


@pytest.mark.parametrize("driver", ["inline", "thread"])
async def test_sqlite_connections_are_set_up_for_a_server(tmp_path: Path, driver: SqliteDriver) -> None:
    """WAL with a checkpoint every 10,000 pages rather than SQLite's 1,000 (fewer rewrites of hot
    pages under load), the busy timeout, the configured durability and foreign keys."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}"
    engine = create_engine(url, sqlite_synchronous="FULL", sqlite_driver=driver)
    try:
        async with engine.connect() as conn:
            found = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "wal_autocheckpoint", "busy_timeout", "synchronous", "foreign_keys")
            }
    finally:
        await engine.dispose()
    assert found == {
        "journal_mode": "wal",
        "wal_autocheckpoint": engine_module.SQLITE_WAL_AUTOCHECKPOINT_PAGES,
        "busy_timeout": engine_module.SQLITE_BUSY_TIMEOUT_MS,
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
    }
    assert engine_module.SQLITE_WAL_AUTOCHECKPOINT_PAGES == 10_000


async def _checkpointer(engine: AsyncEngine) -> WalCheckpointer | None:
    async with engine.connect() as conn:
        driver_connection = (await conn.get_raw_connection()).driver_connection
    assert isinstance(driver_connection, InlineSqliteConnection)
    return driver_connection.checkpointer


async def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for another thread to make ``condition`` true (polled; fails after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the checkpoint thread did not get there in time"
        await asyncio.sleep(0.005)


async def test_inline_sqlite_checkpoints_the_log_in_a_thread_after_commits_and_stops_with_the_engine(
    tmp_path: Path, migrated_templates: MigratedTemplates
) -> None:
    """The write-ahead log is copied into the database file by a thread of the connection's own,
    after commits, not inside the event loop's commits; the thread ends when the pool closes."""
    path = tmp_path / "wal.db"
    await migrated_templates.sqlite_copy(path)
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)

    def in_database_file(message_id: str) -> bool:
        """Whether the row is in the database file itself (``immutable``: the log is not read)."""
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as file_only:
                found = file_only.execute("SELECT count(*) FROM messages WHERE id = ?", (message_id,)).fetchone()
        except sqlite3.DatabaseError:  # read while the checkpoint writes the file: not there yet
            return False
        return bool(found == (1,))

    try:
        checkpointer = await _checkpointer(engine)
        assert checkpointer is not None
        assert checkpointer.running
        sessions = make_sessionmaker(engine)
        ann, bob = await add_users(lambda: SqlAlchemyUnitOfWork(sessions), "Ann", "Bob")
        message = draft(ann, bob)
        async with SqlAlchemyUnitOfWork(sessions) as tx:
            await tx.conversations.append([message])
            await tx.commit()
        # Far below the writer's own checkpoint (10,000 pages): only the thread copies it there.
        await _eventually(lambda: in_database_file(message.id))
    finally:
        await engine.dispose()
    assert not checkpointer.running


async def test_an_in_memory_sqlite_database_has_no_checkpoint_thread() -> None:
    connection = await inline_creator(":memory:")()
    try:
        assert isinstance(connection, InlineSqliteConnection)
        assert connection.checkpointer is None
    finally:
        await connection.close()
