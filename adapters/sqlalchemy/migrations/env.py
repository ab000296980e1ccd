"""Alembic environment: migrates ``orm.metadata`` over a shared connection or a URL.

:mod:`adapters.sqlalchemy.migrate` passes an open (sync) ``Connection`` already inside a
transaction as ``config.attributes["connection"]``; then everything runs in that transaction
and the caller commits. Without one (plain ``alembic`` usage), an async engine is built from
``sqlalchemy.url`` with :func:`adapters.sqlalchemy.engine.create_engine` (so SQLite gets its
pragmas and ``BEGIN IMMEDIATE``) and the migrations run in one transaction under ``asyncio.run``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from adapters.sqlalchemy import orm
from adapters.sqlalchemy.engine import create_engine

config = context.config
target_metadata = orm.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection in config.attributes and no sqlalchemy.url configured")
    return url


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations(_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
