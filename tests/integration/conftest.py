"""Fixtures shared by every integration test: one fresh database per test, on SQLite and PostgreSQL.

* ``backend`` — ``"sqlite"`` or ``"postgres"`` (test ids the same); postgres tests carry the
  ``postgres`` marker, so ``-m "not postgres"`` deselects them.
* ``database_url`` — an empty database: a file ``chat.db`` under ``tmp_path``, or a uniquely
  named database created on the server named by ``CHAT_TEST_POSTGRES_URL`` and dropped afterwards.
  When PostgreSQL is unreachable its tests are skipped, or fail when ``CI=true``.
* ``migrated_url`` — a database at the head revision, in the same place ``database_url`` would
  be: a copy of a template migrated once per test session (``migrated_templates``), a file copy on
  SQLite and ``CREATE DATABASE … TEMPLATE`` on PostgreSQL. A test asks for one or the other.
* ``session_factory`` — an ``async_sessionmaker`` over ``create_engine(migrated_url)`` with the
  mappers started; the engine is disposed afterwards.
* ``uow_factory`` — makes a fresh :class:`SqlAlchemyUnitOfWork` over ``session_factory``
  (:func:`sql_unit_of_work_factory`).
* ``redis_url`` — the Redis server named by ``CHAT_TEST_REDIS_URL`` (probed once per session with
  PING; unreachable → skipped, or failed when ``CI=true``). Tests using it carry the ``redis`` marker.
* ``redis_client`` — a ``redis.asyncio.Redis`` on ``redis_url``, closed afterwards. Tests share the
  server: each uses its own key prefix and deletes its keys.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from adapters.sqlalchemy.engine import create_engine, make_sessionmaker
from adapters.sqlalchemy.fastpath.memo import StoreMemo
from adapters.sqlalchemy.migrate import upgrade
from adapters.sqlalchemy.orm import start_mappers
from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.support import unavailable

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")]

# The outcome of the one reachability probe per session, by server URL: "" when reachable,
# otherwise why not.
_postgres_problems: dict[str, str] = {}


def postgres_server_url() -> str:
    return os.environ.get("CHAT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


async def _admin_execute(server_url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE need that)."""
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _require_postgres(server_url: str) -> None:
    """Skip (or, with ``CI=true``, fail) unless the PostgreSQL server answers; probed once."""
    if server_url not in _postgres_problems:
        try:
            await _admin_execute(server_url, "SELECT 1")
        except Exception as exc:  # whatever the failure, the server is not usable
            _postgres_problems[server_url] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            _postgres_problems[server_url] = ""
    if problem := _postgres_problems[server_url]:
        reason = (
            f"PostgreSQL not reachable at {make_url(server_url).render_as_string(hide_password=True)} "
            f"({problem}); set CHAT_TEST_POSTGRES_URL or run with CI=true to require it"
        )
        unavailable(reason)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


class MigratedTemplates:
    """One database per backend migrated to head once per test session, then copied for each test
    that wants a migrated database: migrating is most of a store test's setup, copying is not.

    The templates are made on first use, inside the asking test's event loop (like the per-test
    migrations they replace; every engine is disposed before the test goes on), and dropped by
    :meth:`drop` at the end of the session.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sqlite: Path | None = None
        self._postgres: dict[str, str] = {}  # server URL -> template database name

    async def sqlite_copy(self, target: Path) -> None:
        """Copy the migrated SQLite template to ``target``."""
        if self._sqlite is None:
            template = self._directory / "template.db"
            await upgrade(f"sqlite+aiosqlite:///{template}")
            # The engine is disposed, so every connection is closed; still, copy the write-ahead log
            # into the file and empty it first, so that the file alone is the whole database.
            with closing(sqlite3.connect(template)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._sqlite = template
        shutil.copyfile(self._sqlite, target)

    async def postgres_template(self, server_url: str) -> str:
        """The name of the migrated template database on the server (made on first use)."""
        if server_url not in self._postgres:
            name = f"chat_template_{uuid.uuid4().hex}"
            await _admin_execute(server_url, f'CREATE DATABASE "{name}"')
            try:
                await upgrade(_database_on(server_url, name))
                # ``CREATE DATABASE … TEMPLATE`` fails while anyone is connected to the template:
                # close whatever is left and let nobody connect any more.
                await _admin_execute(
                    server_url, _terminate_connections(name), f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'
                )
            except BaseException:
                await _drop_database(server_url, name)
                raise
            self._postgres[server_url] = name
        return self._postgres[server_url]

    def drop(self) -> None:
        """Drop the PostgreSQL templates (in a loop of their own: the tests' loops are closed)."""
        if not self._postgres:
            return
        loop = asyncio.new_event_loop()
        try:
            for server_url, name in self._postgres.items():
                loop.run_until_complete(_drop_database(server_url, name))
        finally:
            loop.close()
        self._postgres.clear()


def _database_on(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _terminate_connections(name: str) -> str:
    return (
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "  # noqa: S608
        "AND pid <> pg_backend_pid()"
    )


async def _drop_database(server_url: str, name: str) -> None:
    await _admin_execute(server_url, _terminate_connections(name), f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("migrated-template"))
    try:
        yield templates
    finally:
        templates.drop()


def _check_postgres(backend: str) -> None:
    if backend != "postgres":
        raise ValueError(f"backend {backend!r} has no database")


@asynccontextmanager
async def _new_postgres_database(template: str | None = None) -> AsyncIterator[str]:
    """A uniquely named database (a copy of ``template`` when given), dropped afterwards."""
    server_url = postgres_server_url()
    name = f"chat_test_{uuid.uuid4().hex}"
    copy_of = f' TEMPLATE "{template}"' if template is not None else ""
    await _admin_execute(server_url, f'CREATE DATABASE "{name}"{copy_of}')
    try:
        yield _database_on(server_url, name)
    finally:
        await _drop_database(server_url, name)


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path}/chat.db"
        return
    _check_postgres(backend)
    await _require_postgres(postgres_server_url())
    async with _new_postgres_database() as url:
        yield url


@pytest.fixture
async def migrated_url(backend: str, tmp_path: Path, migrated_templates: MigratedTemplates) -> AsyncIterator[str]:
    if backend.startswith("sqlite"):
        path = tmp_path / "chat.db"
        await migrated_templates.sqlite_copy(path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    _check_postgres(backend)
    server_url = postgres_server_url()
    await _require_postgres(server_url)
    async with _new_postgres_database(await migrated_templates.postgres_template(server_url)) as url:
        yield url


@pytest.fixture
async def session_factory(backend: str, migrated_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """``backend`` ``sqlite-thread``: SQLite through aiosqlite's thread instead of inline."""
    start_mappers()
    engine = create_engine(migrated_url, sqlite_driver="thread" if backend == "sqlite-thread" else "inline")
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


def sql_unit_of_work_factory(sessions: async_sessionmaker[AsyncSession]) -> Callable[[], SqlAlchemyUnitOfWork]:
    """Units of work over ``sessions`` sharing one memo, as the container shares one per database."""
    memo = StoreMemo()
    return lambda: SqlAlchemyUnitOfWork(sessions, memo)


@pytest.fixture
def uow_factory(session_factory: async_sessionmaker[AsyncSession]) -> Callable[[], SqlAlchemyUnitOfWork]:
    return sql_unit_of_work_factory(session_factory)


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# The outcome of the one PING per session, by server URL: "" when reachable, otherwise why not.
_redis_problems: dict[str, str] = {}


def redis_server_url() -> str:
    return os.environ.get("CHAT_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _require_redis(url: str) -> None:
    """Skip (or, with ``CI=true``, fail) unless the Redis server answers PING; probed once."""
    if url not in _redis_problems:
        client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            await client.ping()
        except Exception as exc:  # whatever the failure, the server is not usable
            _redis_problems[url] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            _redis_problems[url] = ""
        finally:
            await client.aclose()
    if problem := _redis_problems[url]:
        reason = (
            f"Redis not reachable at {_without_password(url)} ({problem}); "
            "set CHAT_TEST_REDIS_URL or run with CI=true to require it"
        )
        unavailable(reason)


@pytest.fixture
async def redis_url() -> str:
    url = redis_server_url()
    await _require_redis(url)
    return url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
