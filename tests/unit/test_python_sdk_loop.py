"""The Python SDK's reconnect loop driven by fakes: a scripted socket per attempt (no network), the
HTTP API answered by ``httpx.MockTransport``, a recording ``sleep`` and a fixed ``random``. What is
checked: the waits between attempts, what each close code leads to, offline batches shown once and
acknowledged, the outbox re-sent with the same ``clientMsgId`` after a reconnect."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from p2p_chat_client import (
    ChatClient,
    Event,
    MessageReceived,
    Ready,
    SendRefusedError,
    Sent,
    SignedOutError,
    Socket,
    StateChanged,
    Timings,
)

Frame = dict[str, Any]
TIMINGS = Timings(backoff_base_s=1.0, backoff_cap_s=8.0, backoff_floor_s=5.0, open_timeout_s=10.0, retry_send_s=0.5)
FOREVER = 9.0  # the fake sleep never ends for waits this long (token refresh, the ready watchdog)
READY: Frame = {
    "type": "ready",
    "userId": 1,
    "connectionId": "c",
    "serverTime": "2026-11-25T14:02:03.120Z",
    "heartbeatS": 20,
}


def offline(*ids: str, more: bool = False) -> Frame:
    return {"type": "offlineMessages", "more": more, "messages": [message(i) for i in ids]}


def message(message_id: str) -> Frame:
    return {
        "id": message_id,
        "seq": int(message_id[1:]),
        "from": 2,
        "to": 1,
        "message": f"text {message_id}",
        "clientMsgId": f"peer-{message_id}",
        "timestamp": "2026-11-25T14:00:00.001Z",
        "deliveredAt": None,
        "readAt": None,
    }


class FakeSocket:
    """Hands out ``frames`` (a close code closes it), records what the client sends, and answers a
    sent frame with what ``reply`` returns."""

    def __init__(self, frames: list[Frame | int], reply: Callable[[Frame], list[Frame | int]] | None = None) -> None:
        self.incoming: asyncio.Queue[Frame | int] = asyncio.Queue()
        for frame in frames:
            self.incoming.put_nowait(frame)
        self.reply = reply or (lambda _: [])
        self.sent: list[Frame] = []

    async def recv(self) -> str:
        item = await self.incoming.get()
        if isinstance(item, int):
            raise ConnectionClosed(Close(item, ""), None)
        return json.dumps(item)

    async def send(self, message: str) -> None:
        frame = json.loads(message)
        self.sent.append(frame)
        for item in self.reply(frame):
            self.incoming.put_nowait(item)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.incoming.put_nowait(1006)


class FakeServer:
    """One scripted outcome per connection attempt: a socket, or an exception to raise."""

    def __init__(self, *attempts: FakeSocket | Exception) -> None:
        self.attempts = list(attempts)
        self.tokens: list[str] = []  # the access token each attempt offered

    async def open(self, url: str, token: str, timings: Timings) -> Socket:
        self.tokens.append(token)
        outcome = self.attempts.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def http_api() -> httpx.AsyncClient:
    counter = itertools.count(1)

    def answer(request: httpx.Request) -> httpx.Response:
        n = next(counter)
        tokens = {"access_token": f"access-{n}", "refresh_token": f"refresh-{n}", "token_type": "bearer"}
        profile = {"id": 1, "name": "Ann", "email": "ann@example.com", "phoneNumber": "+14155550100"}
        if request.url.path in {"/auth/login", "/auth/refresh"}:
            return httpx.Response(200, json=tokens | profile | {"expires_in": 900})
        return httpx.Response(404, json={"type": "not_found", "title": "Not found", "status": 404})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://chat.test")


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        if delay >= FOREVER:
            await asyncio.Event().wait()
        self.delays.append(delay)
        await asyncio.sleep(0)


async def signed_in(server: FakeServer, sleeps: Sleeps, http: httpx.AsyncClient) -> ChatClient:
    client = ChatClient(
        "http://chat.test", timings=TIMINGS, sleep=sleeps, random=lambda: 0.0, http=http, open_socket=server.open
    )
    await client.login(email="ann@example.com", password="password123")
    return client


def drain(client: ChatClient) -> list[Event]:
    events: list[Event] = []
    while not client._events.empty():
        event = client._events.get_nowait()
        if event is not None:
            events.append(event)
    return events


async def test_close_codes_drive_the_waits_refresh_and_sign_out() -> None:
    first, second, third = (
        FakeSocket([READY, offline("m1", "m2"), 1001]),
        FakeSocket([READY, offline("m2", "m3"), 4429]),  # m2 again: shown once, acknowledged again
        FakeSocket([READY, offline(), 4403]),
    )
    server = FakeServer(OSError("refused"), OSError("refused"), first, second, FakeSocket([4401]), third)
    sleeps = Sleeps()
    async with http_api() as http, await signed_in(server, sleeps, http) as client:
        await client.connect()
        await client.wait_stopped()

        # refused: at once, then 1 s (random 0 → half of 2 s); 1001 after a ready: at once; 4429
        # after a ready: the 5 s floor; 4401 (no ready since): refresh, then the next step, 1 s.
        assert sleeps.delays == [1.0, 5.0, 1.0]
        assert server.tokens == ["access-1"] * 5 + ["access-2"]
        assert client.state == "signed_out"
        assert client.tokens is None
        events = drain(client)
        shown = [e.message.id for e in events if isinstance(e, MessageReceived)]
        assert shown == ["m1", "m2", "m3"]
        assert client.duplicates_dropped == 1
        assert first.sent == [{"type": "ackMessages", "ids": ["m1", "m2"]}]
        assert second.sent == [{"type": "ackMessages", "ids": ["m2", "m3"]}]
        states = [(e.state, e.close_code) for e in events if isinstance(e, StateChanged)]
        assert states == [
            ("offline", None),  # signed in
            ("connecting", None),
            ("offline", 1006),
            ("connecting", None),
            ("offline", 1006),
            ("connecting", None),
            ("online", None),
            ("offline", 1001),
            ("connecting", None),
            ("online", None),
            ("offline", 4429),
            ("connecting", None),
            ("offline", 4401),
            ("connecting", None),
            ("online", None),
            ("signed_out", 4403),
        ]


def acknowledge(frame: Frame) -> list[Frame | int]:
    if frame["type"] != "sendMessage":
        return []
    return [
        {
            "type": "messageAck",
            "clientMsgId": frame["clientMsgId"],
            "id": "m7",
            "seq": 7,
            "to": frame["to"],
            "timestamp": "2026-11-25T14:02:03.125Z",
        }
    ]


async def test_an_unacknowledged_send_is_resent_with_the_same_id_after_a_reconnect() -> None:
    dropped = FakeSocket([READY], reply=lambda frame: [1012] if frame["type"] == "sendMessage" else [])
    answered = FakeSocket([READY], reply=acknowledge)
    server = FakeServer(dropped, answered)
    async with http_api() as http, await signed_in(server, Sleeps(), http) as client:
        queued = await client.enqueue(2, "hello")  # before connecting: it waits in the outbox
        await client.connect()
        while not isinstance(event := await client.next_event(within=5), Sent):
            pass
        assert event.ack.client_msg_id == queued.client_msg_id
        assert await client.outbox.items() == []
        assert [e for e in drain(client) if isinstance(e, Sent)] == []  # acknowledged once
        assert (
            dropped.sent
            == answered.sent
            == [{"type": "sendMessage", "to": 2, "message": "hello", "clientMsgId": queued.client_msg_id}]
        )


async def test_a_rate_limited_send_is_retried_and_a_refused_one_leaves_the_outbox() -> None:
    refusals = iter(["rate_limited", "bad_request"])

    def refuse_then_ack(frame: Frame) -> list[Frame | int]:
        if frame["type"] != "sendMessage":
            return []
        if frame["message"] == "fine" and (code := next(refusals)) == "rate_limited":
            return [{"type": "error", "code": code, "message": "slow down", "clientMsgId": frame["clientMsgId"]}]
        if frame["message"] == "to myself":
            error = {"type": "error", "code": "bad_request", "message": "yourself", "clientMsgId": frame["clientMsgId"]}
            return [error]
        return acknowledge(frame)

    sleeps = Sleeps()
    server = FakeServer(FakeSocket([READY], reply=refuse_then_ack))
    async with http_api() as http, await signed_in(server, sleeps, http) as client:
        await client.connect()
        ack = await client.send(2, "fine")
        assert ack.seq == 7
        assert sleeps.delays == [TIMINGS.retry_send_s]
        with pytest.raises(SendRefusedError) as refused:
            await client.send(1, "to myself")
        assert refused.value.code == "bad_request"
        assert await client.outbox.items() == []


def reauthenticate(frame: Frame) -> list[Frame | int]:
    return [READY | {"ref": frame["ref"]}] if frame["type"] == "auth" else []


async def test_a_refresh_reauthenticates_the_open_socket() -> None:
    socket = FakeSocket([READY], reply=reauthenticate)
    async with http_api() as http, await signed_in(FakeServer(socket), Sleeps(), http) as client:
        await client.connect()
        await client.refresh()
        assert [(f["type"], f["token"]) for f in socket.sent] == [("auth", "access-2")]
        readies = [e for e in drain(client) if isinstance(e, Ready)]
        assert [r.reauthenticated for r in readies] == [False, True]
        assert client.state == "online"


async def test_a_refused_refresh_signs_out_and_ends_the_loop() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/login":
            profile = {"id": 1, "name": "Ann", "email": "ann@example.com", "phoneNumber": "+14155550100"}
            tokens = {"access_token": "a", "refresh_token": "r", "token_type": "bearer", "expires_in": 900}
            return httpx.Response(200, json=tokens | profile)
        return httpx.Response(401, json={"type": "unauthorized", "title": "Unauthorized", "status": 401})

    socket = FakeSocket([READY])
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url="http://chat.test") as http,
        await signed_in(FakeServer(socket), Sleeps(), http) as client,
    ):
        await client.connect()
        pending = await client.enqueue(2, "waits in the outbox")
        with pytest.raises(SignedOutError):
            await client.refresh()
        await client.wait_stopped()
        assert client.state == "signed_out"
        assert [item.client_msg_id for item in await client.outbox.items()] == [pending.client_msg_id]
        with pytest.raises(SignedOutError):
            await client.conversations()
