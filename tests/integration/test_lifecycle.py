"""The app's lifetime as the container runs it (entrypoints/lifecycle.py): what starts, what the
edge is given, and a write batcher per lifespan, on real databases (and Redis in scaled-out mode)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from adapters.sqlalchemy.migrate import SchemaNotCurrentError
from application.common import Principal
from application.group_commit import GroupCommit
from application.messaging import Send, SendMessage
from domain.errors import UserNotFoundError
from entrypoints.container import start, stop
from tests.integration.support import entries, make_container, make_settings

SENDER = Principal(user_id=1, sid="sid-1")  # no user exists: each send fails once its batch ran


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_an_unmigrated_database_refuses_the_start(database_url: str) -> None:
    container = make_container(make_settings(database_url))

    with pytest.raises(SchemaNotCurrentError, match="not migrated"):
        await start(container)
    await stop(container)  # nothing was started; nothing to end


async def test_an_unmigrated_sqlite_database_is_refused_without_creating_it(tmp_path: Path) -> None:
    """The app's own start (as the ASGI factory runs it) creates neither the file nor its directory."""
    container = make_container(make_settings(f"sqlite+aiosqlite:///{tmp_path}/data/chat.db"))

    with pytest.raises(SchemaNotCurrentError, match="not migrated"):
        await start(container)
    await stop(container)
    assert entries(tmp_path) == []


async def test_each_lifespan_on_its_own_loop_has_its_own_write_batcher(migrated_url: str) -> None:
    """No batcher (its worker, its waiting callers) outlives the lifespan it served: the next
    lifespan, on another event loop, writes through a new one, and the old one refuses writes."""
    container = make_container(make_settings(migrated_url))

    async def lifespan() -> tuple[GroupCommit, SendMessage]:
        await start(container)
        writes: GroupCommit = container.group_commit()
        send: SendMessage = container.send_message()
        with pytest.raises(UserNotFoundError):  # a write answered by this loop's batcher
            await send(SENDER, Send(to=2, body="hi", client_msg_id="c-1"))
        await stop(container)
        return writes, send

    first, old_send = await asyncio.to_thread(asyncio.run, lifespan())
    second, _ = await asyncio.to_thread(asyncio.run, lifespan())

    assert first is not second
    with pytest.raises(RuntimeError, match="closed"):  # on yet another loop: refused, not queued
        await old_send(SENDER, Send(to=2, body="hi", client_msg_id="c-2"))


async def test_one_process_checks_only_the_database(migrated_url: str) -> None:
    container = make_container(make_settings(migrated_url))
    await start(container)
    try:
        checks = container.readiness_checks()
        assert list(checks) == ["database"]
        await checks["database"]()
        assert await container.pending_count()() == 0
        assert container.repush_from_store() is False
    finally:
        await stop(container)


@pytest.mark.redis
async def test_scaled_out_it_beats_checks_redis_too_and_leaves_nothing_running(
    migrated_url: str, redis_url: str
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    settings = make_settings(migrated_url, {"CHAT_REDIS_URL": redis_url, "CHAT_REDIS_PREFIX": prefix})
    container = make_container(settings)
    before = set(asyncio.all_tasks())

    await start(container)
    try:
        checks = container.readiness_checks()
        assert list(checks) == ["database", "redis"]
        for check in checks.values():
            await check()
        assert container.repush_from_store() is True
        alive = f"{prefix}:presence:process:{container.process_id()}:alive"
        assert await container.redis().exists(alive) == 1  # the first heartbeat ran before serving
        assert {task.get_name() for task in asyncio.all_tasks() - before} >= {
            "presence-heartbeat",
            "fanout-listener",
            "fanout-publisher",
        }
    finally:
        await stop(container)

    assert asyncio.all_tasks() - before == set()
