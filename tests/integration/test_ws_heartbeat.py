"""The WebSocket heartbeat (contract §5): the server pings every ``heartbeatS`` and closes with 1011 a
connection that has not answered for another ``heartbeatS``; a client that answers stays."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Chat, running_chat

HEARTBEAT_S = 1  # the shortest: a whole number of seconds


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    async with running_chat(migrated_url, uow_factory, {"CHAT_HEARTBEAT_S": str(HEARTBEAT_S)}) as value:
        yield value


async def live_connections(chat: Chat) -> float:
    """The server's count of live connections (the ``chat_connections`` gauge of /metrics)."""
    text = (await chat.http.get("/metrics")).text
    match = re.search(r"^chat_connections ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


async def test_a_client_that_answers_pings_stays_connected(chat: Chat) -> None:
    ann = await chat.account("Ann")
    a = await chat.connect(ann)
    assert a.ready["heartbeatS"] == HEARTBEAT_S
    assert type(a.ready["heartbeatS"]) is int
    pings = count_pings(a.ws)  # the websockets client answers every ping by itself
    for _ in range(200):  # 10 s at most; three pings take ~3 s
        if pings[0] >= 3:
            break
        await asyncio.sleep(0.05)
    assert pings[0] >= 3  # pinged again and again: each answer re-armed the next ping
    assert await a.barrier() == []  # and still open: three heartbeats without a 1011
    assert await live_connections(chat) == 1


async def test_a_client_that_stops_answering_is_closed_1011(chat: Chat) -> None:
    ann = await chat.account("Ann")
    started = time.monotonic()
    a = await chat.connect(ann)
    a.ws.transport.pause_reading()  # it neither reads the pings nor answers them
    for _ in range(200):  # the server drops it after two heartbeats (plus a slot); 10 s at most
        if await live_connections(chat) == 0:
            break
        await asyncio.sleep(0.05)
    assert await live_connections(chat) == 0
    # Never early: the first ping comes a heartbeat after the socket opened, the close another after.
    assert time.monotonic() - started >= 2 * HEARTBEAT_S
    a.ws.transport.resume_reading()
    assert await a.closed_with() == 1011


def count_pings(ws: ClientConnection) -> list[int]:
    """A counter of the pings this client receives (it still answers them as usual)."""
    counter = [0]
    protocol = ws.protocol
    receive = protocol.recv_frame

    def recv_frame(frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            counter[0] += 1
        receive(frame)

    protocol.recv_frame = recv_frame  # type: ignore[method-assign]
    return counter
