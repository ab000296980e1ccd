"""WebSocket sessions: authentication, re-auth, expiry, revocation, and bad frames (contract §3)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Chat, Client, close_code, running_chat
from tests.integration.support import TEST_SECRET
from tests.unit.fakes import FixedClock


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    env = {"CHAT_AUTH_TIMEOUT_S": "0.5", "CHAT_CORS_ORIGINS": "https://app.example"}
    async with running_chat(migrated_url, uow_factory, env) as value:
        yield value


async def close_code_of(chat: Chat, *frames: str | bytes, **connect: Any) -> int:
    ws = await chat.open(**connect)
    for frame in frames:
        await ws.send(frame)
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as exc:
        return close_code(exc)


def unsigned(claims: dict[str, Any]) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


async def test_no_auth_frame_in_time_closes_4408(chat: Chat) -> None:
    assert await close_code_of(chat) == 4408


async def test_bad_first_frames_close_4401(chat: Chat) -> None:
    ann = await chat.account("Ann")
    claims = jwt.decode(ann.access_token, TEST_SECRET, algorithms=["HS256"])
    for first in (
        json.dumps({"type": "ping"}),
        "not json",
        json.dumps({"type": "auth", "token": "garbage"}),
        json.dumps({"type": "auth", "token": unsigned(claims)}),
        json.dumps({"type": "auth", "token": jwt.encode(claims, "x" * 40, algorithm="HS256")}),
    ):
        assert await close_code_of(chat, first) == 4401, first


async def test_the_ready_answering_a_first_auth_frame_echoes_its_ref(chat: Chat) -> None:
    ann = await chat.account("Ann")
    ws = await chat.open()
    await ws.send(json.dumps({"type": "auth", "token": ann.access_token, "ref": "hello"}))
    client = Client(ws, ann)
    ready = await client.expect("ready")
    assert (ready["ref"], ready["userId"]) == ("hello", ann.id)
    await client.expect("offlineMessages")


async def test_bearer_subprotocol_authenticates_without_an_auth_frame(chat: Chat) -> None:
    ann = await chat.account("Ann")
    ws = await chat.open(subprotocols=["bearer", ann.access_token])
    assert ws.subprotocol == "bearer"
    client = Client(ws, ann)
    ready = await client.expect("ready")
    assert ready["userId"] == ann.id
    assert "ref" not in ready  # no frame, no ref
    await client.expect("offlineMessages")
    bad = await chat.open(subprotocols=["bearer", "garbage"])
    with pytest.raises(ConnectionClosed) as closed:
        await bad.recv()
    assert close_code(closed.value) == 4401


async def test_permessage_deflate_is_negotiated_when_the_client_offers_it(chat: Chat) -> None:
    ann = await chat.account("Ann")
    offered = await chat.open()  # the websockets client offers permessage-deflate by default
    assert offered.response is not None
    assert offered.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    client = Client(offered, ann)
    await client.send(type="auth", token=ann.access_token)
    assert (await client.expect("ready"))["userId"] == ann.id  # frames flow compressed
    plain = await chat.open(compression=None)
    assert plain.response is not None
    assert "Sec-WebSocket-Extensions" not in plain.response.headers


async def test_a_query_string_on_ws_is_ignored(chat: Chat) -> None:
    ann = await chat.account("Ann")
    query = f"?token={ann.access_token}&access_token={ann.access_token}&v=2"
    silent = await connect(chat.ws_url + query, open_timeout=10)
    with pytest.raises(ConnectionClosed) as closed:
        await silent.recv()  # a token in the query does not authenticate: no auth frame in time
    assert close_code(closed.value) == 4408
    ws = await connect(chat.ws_url + "?anything=at-all", open_timeout=10)
    client = Client(ws, ann)
    await client.send(type="auth", token=ann.access_token)
    assert (await client.expect("ready"))["userId"] == ann.id


async def test_a_foreign_origin_is_refused(chat: Chat) -> None:
    with pytest.raises(InvalidStatus):
        await chat.open(origin="https://evil.example")
    ws = await chat.open(origin="https://app.example")
    await ws.close()


async def test_reauth_with_the_same_user_keeps_the_socket_and_another_user_closes_it(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    fresh = await chat.login(ann)
    await a.send(type="auth", token=fresh.access_token, ref="re")
    ready = await a.expect("ready")
    assert (ready["ref"], ready["userId"]) == ("re", ann.id)
    assert await a.barrier() == []  # no replay of offline messages
    await a.send(type="auth", token=bob.access_token)
    assert await a.closed_with() == 4401


async def test_an_expiring_token_closes_the_socket_4401(migrated_url: str, uow_factory: Any) -> None:
    # The wall clock stands still, so however long registering takes on a busy machine the token
    # is still valid when the socket authenticates; the connection's own timer (one second of
    # the real monotonic clock after it started) then closes it.
    frozen = FixedClock(datetime.now(UTC))
    async with running_chat(migrated_url, uow_factory, {"CHAT_ACCESS_TOKEN_TTL_S": "1"}, clock=frozen) as chat:
        ann = await chat.account("Ann")
        a = await chat.connect(ann)
        assert await a.closed_with(within=5) == 4401


async def test_logout_closes_that_logins_sockets_4403_and_keeps_others(chat: Chat) -> None:
    ann = await chat.account("Ann")
    other = await chat.login(ann)
    a, b = await chat.connect(ann), await chat.connect(other)
    response = await chat.http.post("/auth/logout", headers=ann.bearer)
    assert response.status_code == 204
    assert await a.closed_with() == 4403
    assert await b.barrier() == []
    await chat.http.post("/auth/logout-all", headers=other.bearer)
    assert await b.closed_with() == 4403


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('{"type": "bogus", "ref": "r1"}', "unknown_type"),
        ('{"type": "userOnline", "userId": 1}', "unknown_type"),
        ('{"type": "sendMessage", "ref": "r1"}', "bad_request"),
        ('{"type": "sendMessage", "to": "2", "message": "x", "clientMsgId": "c", "ref": "r1"}', "bad_request"),
        ('{"type": "ping", "extra": true}', "bad_request"),
        ('{"type": "ackMessages", "ids": []}', "bad_request"),
        ('{"type": "markRead", "peerId": 999999, "upToSeq": 1}', "not_found"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(chat: Chat, frame: str, code: str) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    await a.send_raw(frame)
    error = await a.expect("error")
    assert error["code"] == code
    if '"ref": "r1"' in frame:
        assert error["ref"] == "r1"
    ack = await a.send_message(bob.id, "still works")
    assert ack["type"] == "messageAck"


@pytest.mark.parametrize(
    ("text", "code"),
    [("   ", "bad_request"), ("x" * 4001, "bad_request"), ("", "bad_request")],
)
async def test_bad_bodies_are_rejected_and_nothing_is_stored(chat: Chat, text: str, code: str) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    reply = await a.send_message(bob.id, text, "bad-body")
    assert (reply["type"], reply["code"], reply["clientMsgId"]) == ("error", code, "bad-body")
    assert (await chat.get(f"/conversations/{bob.id}/messages", ann))["items"] == []
    assert (await a.send_message(bob.id, "x" * 4000))["type"] == "messageAck"


async def test_unknown_recipient_and_yourself_are_errors(chat: Chat) -> None:
    ann = await chat.account("Ann")
    a = await chat.connect(ann)
    assert (await a.send_message(999999, "hello?"))["code"] == "not_found"
    assert (await a.send_message(ann.id, "me"))["code"] == "bad_request"


async def test_oversize_frames_get_too_large_and_huge_frames_close_1009(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    await a.send(type="sendMessage", to=bob.id, message="x" * 70_000, clientMsgId="big", ref="b")
    error = await a.expect("error")
    assert (error["code"], error["ref"], error["clientMsgId"]) == ("too_large", "b", "big")
    assert (await a.send_message(bob.id, "fine"))["type"] == "messageAck"
    await a.send_raw("x" * 2_000_000)
    assert await a.closed_with() == 1009


async def test_binary_frames_are_refused_politely(chat: Chat) -> None:
    ann = await chat.account("Ann")
    a = await chat.connect(ann)
    await a.send_raw(b"\x00\x01")
    assert (await a.expect("error"))["code"] == "bad_request"
    assert await a.barrier() == []
