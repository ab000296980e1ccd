"""Back-pressure on one connection, with the real container and use cases but a socket whose
writes never complete (a client that stopped reading), so the queue bound is reached exactly:
typing frames are dropped before anything else, and only messages over the bound close 4008."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.sqlalchemy.orm import start_mappers
from application.common import Principal
from application.events import MessageReceived, Typing
from domain.messages import Message
from entrypoints.app import ws_services
from entrypoints.metrics import Metrics
from entrypoints.ws.connection import Connection
from tests.integration.support import make_container, make_settings


@pytest.fixture
def backend() -> str:
    return "sqlite"


class StuckSocket:
    """A client that stopped reading: writes block forever, nothing is ever received."""

    def __init__(self) -> None:
        self.closed_with: int | None = None
        self.writing = asyncio.Event()

    async def send_text(self, data: str) -> None:
        self.writing.set()
        await asyncio.Event().wait()

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code


def message(n: int) -> Message:
    return Message(
        id=f"m{n}", seq=n, sender_id=2, recipient_id=1, body="x", client_msg_id=f"c{n}", created_at=datetime.now(UTC)
    )


async def test_typing_is_dropped_first_and_only_messages_over_the_bound_close_4008(migrated_url: str) -> None:
    start_mappers()
    container = make_container(make_settings(migrated_url, {"CHAT_MAX_QUEUED_FRAMES": "10"}))
    metrics = Metrics()
    socket = StuckSocket()
    connection = Connection(socket, ws_services(container, metrics), Principal(user_id=1, sid="s"), "conn-1")  # type: ignore[arg-type]
    running = asyncio.create_task(connection.run())
    await asyncio.wait_for(socket.writing.wait(), timeout=10)  # ``ready`` is being written, for ever

    def dropped() -> float:
        return metrics.registry.get_sample_value("chat_dropped_ephemeral_frames_total") or 0.0

    for _ in range(30):  # the queue holds offlineMessages + typing up to the bound; the rest is dropped
        connection.deliver(Typing(from_id=2, is_typing=True))
    assert dropped() == 30 - 9
    assert not running.done()

    connection.deliver(MessageReceived(message=message(1)))  # over the bound: typing goes, the message stays
    assert dropped() == 30
    assert not running.done()

    for n in range(2, 12):  # only messages left: the next one over the bound closes the connection
        connection.deliver(MessageReceived(message=message(n)))
    await asyncio.wait_for(running, timeout=10)
    assert socket.closed_with == 4008
    await container.engine().dispose()
