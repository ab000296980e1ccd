"""Issue 15: a revocation whose broadcast was lost still closes the socket (finding 2), and a
socket that cannot be served closes with a documented code, never the framework's 4500 (finding 1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from application.ports import StoreUnavailableError
from tests.integration.chat import read_until_closed, running_chat
from tests.integration.support import TEST_SECRET


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_a_login_revoked_without_any_broadcast_closes_its_socket_within_the_check_interval(
    migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    async with running_chat(migrated_url, uow_factory, {"CHAT_SESSION_CHECK_S": "0.5"}) as chat:
        ann = await chat.account("Ann")
        socket = await chat.connect(ann)
        sid = jwt.decode(ann.access_token, TEST_SECRET, algorithms=["HS256"])["sid"]
        async with uow_factory() as uow:  # revoked in the store only: no event reaches the socket
            login = await uow.logins.get(sid)
            assert login is not None
            login.revoke(datetime.now(UTC))
            await uow.commit()
        started = time.monotonic()
        assert await socket.closed_with(within=5) == 4403
        assert time.monotonic() - started < 0.5 + 1.5  # the interval and the read


class FlakyClock:
    """The wall clock, or (while ``failure`` is set) an exception in its place."""

    def __init__(self) -> None:
        self.failure: Exception | None = None

    def now(self) -> datetime:
        if self.failure is not None:
            raise self.failure
        return datetime.now(UTC)


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (StoreUnavailableError("connection refused"), 1013),  # try again later
        (RuntimeError("a bug"), 1011),  # was Litestar's undocumented 4500
    ],
)
async def test_a_token_that_cannot_be_checked_closes_with_a_documented_code(
    migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork], failure: Exception, code: int
) -> None:
    clock = FlakyClock()
    async with running_chat(migrated_url, uow_factory, clock=clock) as chat:
        ann = await chat.account("Ann")
        clock.failure = failure
        ws: Any = await chat.open()
        await ws.send(f'{{"type": "auth", "token": "{ann.access_token}"}}')
        assert await read_until_closed(ws, within=5) == code
