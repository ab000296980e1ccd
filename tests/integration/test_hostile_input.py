"""Input an attacker crafts is refused as typed errors, never a 500, a stack trace or a dropped
socket: JSON nested a thousand deep, ids beyond signed 64 bits, frames over 1 MiB, tokens with
absurd claims (issue 15, findings 4, 5, 8 and 12)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Account, Chat, close_code, read_until_closed, running_chat
from tests.integration.support import TEST_SECRET, make_container, make_settings, serve

BEYOND_INT64 = [2**63, 2**64 + 1, 10**30]
DEEP = "[" * 1000 + "]" * 1000  # 2 KB, 1,000 levels: the payload that answered 500 (finding 4)


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    async with running_chat(migrated_url, uow_factory) as value:
        yield value


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What the server logged at ERROR or above (and any stack trace) since the test began."""
    caplog.set_level(logging.INFO)

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

    return logged


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# ---- finding 4: deeply nested JSON -------------------------------------------------------------------


def _deep_bodies() -> list[str]:
    """Nesting at the top, and under a field of the right name and of an unknown name."""
    return [DEEP, '{"email": ' + DEEP + "}", '{"zzz": ' + DEEP + ', "password": "x"}', "{" * 1000]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_deeply_nested_json_bodies_are_400_problems_on_every_json_endpoint(
    chat: Chat, errors_logged: Callable[[], list[str]]
) -> None:
    ann = await chat.account("Ann")
    endpoints = [
        ("POST", "/auth/register", {}),
        ("POST", "/auth/login", {}),
        ("POST", "/auth/refresh", {}),
        ("POST", "/auth/password", ann.bearer),
        ("PATCH", "/users/me", ann.bearer),
    ]
    for method, path, headers in endpoints:
        for body in _deep_bodies():
            response = await chat.http.request(
                method, path, content=body, headers={**headers, "content-type": "application/json"}
            )
            problem = _problem(response, 400)
            assert problem["type"] == "validation_error", (path, problem)
            assert "Traceback" not in response.text
    assert errors_logged() == []
    assert (await chat.http.get("/users/me", headers=ann.bearer)).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_deeply_nested_frames_get_bad_request_and_the_socket_stays_usable(
    chat: Chat, errors_logged: Callable[[], list[str]]
) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    frames = [
        DEEP,
        '{"type": "ping", "ref": "r1", "x": ' + DEEP + "}",
        '{"type": "sendMessage", "ref": ' + DEEP + "}",
        '{"type": "sendMessage", "to": 2, "message": "hi", "clientMsgId": "c", "from": ' + DEEP + "}",
        '{"ref": "r2", "type": ' + DEEP + "}",
        "{" * 1000,
    ]
    for frame in frames:
        await a.send_raw(frame)
        error = await a.expect("error")
        assert error["code"] == "bad_request", (frame[:40], error)
    assert (await a.send_message(bob.id, "still fine"))["type"] == "messageAck"
    assert errors_logged() == []


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("first", [DEEP, '{"type": "auth", "token": ' + DEEP + "}", '{"type": "auth", "ref": ' + DEEP])
async def test_a_deeply_nested_first_frame_closes_4401(
    chat: Chat, errors_logged: Callable[[], list[str]], first: str
) -> None:
    ws = await chat.open()
    await ws.send(first)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), timeout=10)
    assert close_code(closed.value) == 4401
    assert errors_logged() == []


# ---- finding 5: ids beyond signed 64 bits, on both stores ---------------------------------------------


async def test_ids_beyond_64_bits_are_refused_at_the_edge_over_http(
    chat: Chat, errors_logged: Callable[[], list[str]]
) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    for big in BEYOND_INT64:
        for method, path in [
            ("GET", f"/users/{big}"),
            ("PUT", f"/users/{big}/block"),
            ("DELETE", f"/users/{big}/block"),
            ("GET", f"/conversations/{big}/messages"),
            ("GET", f"/conversations/-{big}/messages"),
            ("GET", f"/users/-{big}"),
        ]:
            response = await chat.http.request(method, path, headers=ann.bearer)
            assert response.status_code in (400, 404), (method, path, response.text)
            _problem(response, response.status_code)
        queries: list[dict[str, int | str]] = [
            {"before": big},
            {"after": big},
            {"limit": big},
            {"after": -big},
            {"before": f"{big}.0"},
        ]
        for params in queries:
            response = await chat.http.get(f"/conversations/{bob.id}/messages", params=params, headers=ann.bearer)
            assert _problem(response, 400)["type"] == "validation_error", (params, response.text)
        lookups: list[dict[str, int | str]] = [{"cursor": str(big)}, {"limit": big}, {"q": "Bob", "limit": big}]
        for lookup in lookups:
            response = await chat.http.get("/users", params=lookup, headers=ann.bearer)
            assert _problem(response, 400)["type"] == "validation_error", (lookup, response.text)
    assert errors_logged() == []


async def test_ids_beyond_64_bits_in_frames_get_bad_request(chat: Chat, errors_logged: Callable[[], list[str]]) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    for big in [*BEYOND_INT64, -(2**63) - 1]:
        a = await chat.connect(ann)  # a socket for every few errors: 21 in 10 s close 1008
        frames: list[dict[str, Any]] = [
            {"type": "sendMessage", "to": big, "message": "hi", "clientMsgId": f"c{big}"},
            {"type": "typing", "to": big, "isTyping": True},
            {"type": "markRead", "peerId": big, "upToSeq": 1},
            {"type": "markRead", "peerId": bob.id, "upToSeq": big},
            {"type": "getOnlineUsers", "userIds": [bob.id, big]},
            {"type": "searchUsers", "query": "Bob", "limit": big},
        ]
        for frame in frames:
            await a.send(**frame, ref="big")
            error = await a.expect("error")
            assert (error["code"], error["ref"]) == ("bad_request", "big"), (frame, error)
        assert (await a.send_message(bob.id, "still fine"))["type"] == "messageAck"
        await a.close()
    assert errors_logged() == []


# ---- finding 8: frames over 1 MiB close 1009, with a close frame, every time ----------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_frames_over_1_mib_close_1009_every_time(chat: Chat) -> None:
    ann = await chat.account("Ann")
    sizes = [1_048_577, 4 * 1_048_576]
    for attempt in range(50):
        ws = await chat.open()
        await ws.send(json.dumps({"type": "auth", "token": ann.access_token}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send("x" * sizes[attempt % 2])
        assert await read_until_closed(ws) == 1009, f"attempt {attempt}"
    unauthenticated = await chat.open()
    await unauthenticated.send("x" * sizes[1])
    assert await read_until_closed(unauthenticated) == 1009


# ---- finding 12: absurd token claims -------------------------------------------------------------------


def _token(account: Account, **claims: Any) -> str:
    valid = jwt.decode(account.access_token, TEST_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    return jwt.encode({**valid, **claims}, TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_tokens_with_absurd_claims_are_401_and_4401(chat: Chat, errors_logged: Callable[[], list[str]]) -> None:
    ann = await chat.account("Ann")  # user 1: "١" (an Arabic-Indic one) must not name them
    assert ann.id == 1
    now = int(datetime.now(UTC).timestamp())
    tokens = [
        _token(ann, exp=10**20),
        _token(ann, exp=1e20),
        _token(ann, exp=-(10**20)),
        _token(ann, exp=2**70),
        _token(ann, sub="١"),
        _token(ann, sub="¹"),
        _token(ann, sub=str(2**63)),
        _token(ann, sub="0"),
        _token(ann, sub="01"),
        _token(ann, sub=" 1"),
        _token(ann, iat=10**20, exp=now + 600, sub="١"),
    ]
    for token in tokens:
        response = await chat.http.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        claims = jwt.decode(token, options={"verify_signature": False})
        assert _problem(response, 401)["type"] == "unauthorized", claims
        ws = await chat.open()
        await ws.send(json.dumps({"type": "auth", "token": token}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=10)
        assert close_code(closed.value) == 4401
    assert errors_logged() == []


def _handshake(host: str, port: int) -> socket.socket:
    """A raw WebSocket client socket past the opening handshake (no extensions)."""
    sock = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def _read_close_frame(sock: socket.socket) -> int:
    """Read frames until a close frame; its code."""
    buffer = b""
    while True:
        while len(buffer) < 2 or len(buffer) < 2 + (buffer[1] & 0x7F):
            chunk = sock.recv(65536)
            assert chunk, "the server closed without a close frame"
            buffer += chunk
        opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
        assert length < 126, buffer[:16]  # the server's frames before a close are small here
        if opcode == 0x8:
            code: int = struct.unpack("!H", buffer[2:4])[0]
            return code
        buffer = buffer[2 + length :]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_after_1009_the_server_reads_the_rest_of_the_frame_so_its_close_frame_is_not_reset(
    migrated_url: str,
) -> None:
    """The close frame of a 1009 is lost if the server closes the socket with the rest of the frame
    still arriving: its kernel answers that data with a reset, and the client's write fails before it
    reads the close frame (1006, finding 8). The server reads on until the client's EOF instead."""
    container = make_container(make_settings(migrated_url))
    with serve(container) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        sock = _handshake(host, int(port))
        try:
            size = 8 * 1_048_576
            mask = b"\x00\x00\x00\x00"
            sock.sendall(bytes([0x81, 0xFF]) + struct.pack("!Q", size) + mask + b"x" * 65536)
            assert _read_close_frame(sock) == 1009
            sock.sendall(b"x" * (size - 65536))  # no reset: the server still reads
            sock.sendall(bytes([0x88, 0x82]) + mask + struct.pack("!H", 1009))
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 10
            while sock.recv(65536):  # then the server's EOF
                assert time.monotonic() < deadline
        finally:
            sock.close()
