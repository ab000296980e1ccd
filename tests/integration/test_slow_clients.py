"""Slow and greedy HTTP clients (issue 15, finding 7; entrypoints/guard.py): a request not received
within ``CHAT_REQUEST_TIMEOUT_S`` is answered 408 and closed, whatever part of it is missing; a
client address with ``CHAT_MAX_CONNECTIONS_PER_ADDRESS`` open connections is refused the next one
at once with 429 (behind a trusted proxy, counted by the forwarded address). Another client's
``/health`` is served meanwhile. Real sockets; the other client connects from 127.0.0.2."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Chat, running_chat

TIMEOUT_S = 0.5
OTHER_CLIENT = "127.0.0.2"


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    env = {"CHAT_REQUEST_TIMEOUT_S": str(TIMEOUT_S), "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "40"}
    async with running_chat(migrated_url, uow_factory, env) as value:
        yield value


@pytest.fixture
async def capped(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    env = {"CHAT_MAX_CONNECTIONS_PER_ADDRESS": "5", "CHAT_TRUSTED_PROXIES": "127.0.0.3"}
    async with running_chat(migrated_url, uow_factory, env) as value:
        yield value


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_from(chat: Chat, source: str = "127.0.0.1") -> Stream:
    host, port = chat.base_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def answer(stream: Stream, deadline_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """The whole answer until the server closes: status, headers, body (fails if it stays open)."""
    raw = await asyncio.wait_for(stream[0].read(), deadline_s)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def one_answer(stream: Stream) -> bytes:
    """One answer of a kept-alive connection: its status line, headers and body."""
    head = await asyncio.wait_for(stream[0].readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await asyncio.wait_for(stream[0].readexactly(length), 5)


async def health(chat: Chat, source: str = OTHER_CLIENT) -> int:
    stream = await open_from(chat, source)
    stream[1].write(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    status, _, _ = await answer(stream)
    return status


HALF_OPEN = [
    b"",  # connected, nothing sent
    b"GET /heal",  # half a request line
    b"GET /health HTTP/1.1\r\nHost: t\r\n",  # headers never end
    b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
]


async def test_half_open_requests_are_cut_after_the_timeout_and_others_are_served(chat: Chat) -> None:
    streams = []
    for i in range(32):
        stream = await open_from(chat)
        stream[1].write(HALF_OPEN[i % len(HALF_OPEN)])
        streams.append(stream)
    started = time.monotonic()
    assert await health(chat) == 200  # another client meanwhile
    answers = await asyncio.gather(*(answer(stream) for stream in streams))
    elapsed = time.monotonic() - started
    for status, headers, body in answers:
        assert status == 408
        assert headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close"
        assert json.loads(body)["type"] == "request_timeout"
    assert elapsed < TIMEOUT_S + 2
    for _, writer in streams:
        writer.close()


async def test_a_complete_slow_request_in_time_is_served(chat: Chat) -> None:
    stream = await open_from(chat)
    for part in (b"GET /health HTTP/1.1\r\n", b"Host: t\r\n", b"Connection: close\r\n", b"\r\n"):
        stream[1].write(part)
        await asyncio.sleep(TIMEOUT_S / 8)
    status, _, _ = await answer(stream)
    assert status == 200


async def test_an_idle_keep_alive_connection_is_timed_out_again_for_its_next_request(chat: Chat) -> None:
    stream = await open_from(chat)
    stream[1].write(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    first = await one_answer(stream)
    assert first.startswith(b"HTTP/1.1 200")
    stream[1].write(b"GET /health HTTP/1.1\r\n")  # the next request never ends
    rest = await asyncio.wait_for(stream[0].read(), 5)
    assert rest.startswith(b"HTTP/1.1 408")


async def test_the_connections_over_the_cap_of_an_address_are_refused_at_once(capped: Chat) -> None:
    held = [await open_from(capped) for _ in range(5)]
    status, headers, body = await answer(await open_from(capped), deadline_s=2)
    assert status == 429
    assert headers["retry-after"] == "1"
    assert json.loads(body)["type"] == "rate_limited"
    assert await health(capped) == 200  # another address is not concerned
    held.pop()[1].close()
    deadline = time.monotonic() + 5  # the server sees the close soon; then one place is free
    while True:
        extra = await open_from(capped)
        extra[1].write(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, _, _ = await answer(extra)
        if status == 200 or time.monotonic() > deadline:
            break
    assert status == 200
    for _, writer in held:
        writer.close()


async def test_websockets_count_toward_the_cap_of_their_address(capped: Chat) -> None:
    sockets = [await capped.open() for _ in range(5)]  # upgraded: held by the WebSocket protocol
    status, _, _ = await answer(await open_from(capped), deadline_s=2)
    assert status == 429
    await sockets.pop().close()
    deadline = time.monotonic() + 5
    while True:  # its place is free once the server has seen the close
        extra = await open_from(capped)
        extra[1].write(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, _, _ = await answer(extra)
        if status == 200 or time.monotonic() > deadline:
            break
    assert status == 200
    for ws in sockets:
        await ws.close()


async def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(capped: Chat) -> None:
    def request(forwarded: str) -> bytes:
        return f"GET /health HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {forwarded}\r\n\r\n".encode()

    held = []
    for _ in range(6):  # more than the cap from the proxy itself: its connections carry others
        stream = await open_from(capped, "127.0.0.3")
        stream[1].write(request("203.0.113.9"))
        head = await one_answer(stream)
        held.append((stream, head))
    assert [head.split()[1] for _, head in held] == [b"200"] * 5 + [b"429"]
    other = await open_from(capped, "127.0.0.3")
    other[1].write(request("203.0.113.10"))  # another client behind the same proxy
    assert (await one_answer(other)).startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(held[-1][0][0].read(), 5) == b""  # the refused one was closed
    for (_, writer), _ in held:
        writer.close()
    other[1].close()
