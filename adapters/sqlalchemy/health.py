"""What operations ask of the database: is it answering, how many messages wait, what it is called."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer ``SELECT 1``."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def count_pending(engine: AsyncEngine) -> int:
    """How many messages no device has acknowledged yet (withheld ones are never pending)."""
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT count(*) FROM messages WHERE delivered_at IS NULL AND NOT withheld"))
        return int(result.scalar_one())


def describe(engine: AsyncEngine) -> str:
    """The database's URL for logs, without its password."""
    return engine.url.render_as_string(hide_password=True)
