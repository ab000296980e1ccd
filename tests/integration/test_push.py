"""Push notifications end to end: the real app (in this process, or ``p2p-chat serve`` processes),
a real HTTP push gateway on loopback (tests/integration/push_gateway.py) that the tests stop and
restart, and the real store. Timings are short (tenths of seconds) and every wait is a bounded
wait for a condition."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from adapters.sqlalchemy.engine import create_engine
from tests.integration.chat import Account, Chat, Client, running_chat
from tests.integration.push_gateway import SECRET, Gateway
from tests.integration.support import TEST_SECRET, Server, clean_env

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_S = 20  # how long the gateway stays down in the outage test (issue 17's acceptance)
FAST = {
    "CHAT_PUSH_SECRET": SECRET,
    "CHAT_PUSH_POLL_S": "0.05",
    "CHAT_PUSH_COALESCE_S": "1",  # a burst of sends commits well within it, even on a loaded machine
    "CHAT_PUSH_AFTER_S": "2",
    "CHAT_PUSH_TIMEOUT_S": "2",
    "CHAT_PUSH_LEASE_S": "3",
    "CHAT_PUSH_RETRY_BASE_S": "0.05",
    "CHAT_PUSH_RETRY_MAX_S": "0.2",
    "CHAT_PUSH_MAX_ATTEMPTS": "1000",
    "CHAT_OFFLINE_GRACE_S": "0.1",
    "CHAT_RATE_MSG_PER_S": "1000",
    "CHAT_RATE_MSG_BURST": "1000",
}


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    gw.start()
    yield gw
    gw.hold.set()
    gw.stop()


@asynccontextmanager
async def chat_with_push(url: str, gateway: Gateway, **env: str) -> AsyncIterator[Chat]:
    settings = {**FAST, "CHAT_PUSH_GATEWAY_URL": gateway.url, **env}
    async with running_chat(url, lambda: None, env=settings) as chat:  # type: ignore[arg-type, return-value]
        try:
            yield chat
        finally:
            await chat.close_sockets()


async def register_device(chat: Chat, account: Account, token: str, **extra: Any) -> dict[str, Any]:
    body = {"kind": "fcm", "token": token, "appId": "com.example.chat", **extra}
    response = await chat.http.post("/devices", json=body, headers=account.bearer)
    assert response.status_code == 201, response.text
    device: dict[str, Any] = response.json()
    return device


async def outbox(url: str) -> list[tuple[str, str | None, int]]:
    """The outbox's jobs: (message id, push id, failed attempts)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT message_id, push_id, attempts FROM push_jobs ORDER BY id"))
            return [(r[0], r[1], r[2]) for r in rows]
    finally:
        await engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


async def outbox_empty(url: str) -> None:
    async def empty() -> bool:
        return await outbox(url) == []

    await eventually(empty, what="the outbox empties")


async def send_burst(client: Client, to: int, texts: list[str]) -> list[str]:
    """Send every message before reading any answer (one pipeline); the stored ids, in order."""
    refs = [f"burst-{uuid.uuid4().hex}" for _ in texts]
    for ref, body in zip(refs, texts, strict=True):
        await client.send(type="sendMessage", to=to, message=body, clientMsgId=ref, ref=ref)
    acks = [await client.reply_to(ref) for ref in refs]
    assert all(a["type"] == "messageAck" for a in acks), acks
    return [a["id"] for a in acks]


# -- the devices API --------------------------------------------------------------------------------


async def test_devices_are_listed_per_user_and_a_logout_removes_its_login_s(migrated_url: str) -> None:
    async with running_chat(migrated_url, lambda: None) as chat:  # type: ignore[arg-type, return-value]
        ann = await chat.account("Ann")
        other_login = await chat.login(ann)
        phone = await register_device(chat, ann, "token-phone", label="Phone")
        tablet = await register_device(chat, other_login, "token-tablet", kind="apns")
        listed = await chat.get("/devices", ann)
        assert [(d["id"], d["current"], d["label"]) for d in listed["items"]] == [
            (phone["id"], True, "Phone"),
            (tablet["id"], False, None),
        ]
        assert "token" not in json.dumps(listed)  # the token is not echoed

        bob = await chat.account("Bob")
        gone = await chat.http.delete(f"/devices/{phone['id']}", headers=bob.bearer)
        assert gone.status_code == 404  # not Bob's

        logout = await chat.http.post("/auth/logout", headers=other_login.bearer)
        assert logout.status_code == 204
        assert [d["id"] for d in (await chat.get("/devices", ann))["items"]] == [phone["id"]]

        deleted = await chat.http.delete(f"/devices/{phone['id']}", headers=ann.bearer)
        assert deleted.status_code == 204
        assert (await chat.get("/devices", ann))["items"] == []

        bad = await chat.http.post("/devices", json={"kind": "sms", "token": "x", "appId": "a"}, headers=ann.bearer)
        assert bad.status_code == 400

        # A password change revokes every other login, and with them their targets.
        third = await chat.login(ann)
        await register_device(chat, third, "token-third")
        changed = await chat.http.post(
            "/auth/password",
            json={"currentPassword": "password123", "newPassword": "password456"},
            headers=ann.bearer,
        )
        assert changed.status_code == 204, changed.text
        assert (await chat.get("/devices", ann))["items"] == []


async def test_a_login_evicted_by_a_newer_one_loses_its_devices(migrated_url: str) -> None:
    env = {"CHAT_MAX_LOGINS_PER_USER": "1"}
    async with running_chat(migrated_url, lambda: None, env=env) as chat:  # type: ignore[arg-type, return-value]
        ann = await chat.account("Ann")
        await register_device(chat, ann, "token-old")
        newer = await chat.login(ann)  # revokes the registration's login, the oldest
        assert (await chat.get("/devices", newer))["items"] == []


# -- pushes -----------------------------------------------------------------------------------------


async def test_an_offline_recipient_gets_one_push_per_coalescing_window(migrated_url: str, gateway: Gateway) -> None:
    async with chat_with_push(migrated_url, gateway) as chat:
        ann, bob = await chat.account("Ann"), await chat.account("Bob")
        device = await register_device(chat, bob, "bob-token")
        sender = await chat.connect(ann)

        first = await send_burst(sender, bob.id, ["one", "two", "three"])
        [push] = await gateway.wait_for(1)
        await outbox_empty(migrated_url)
        assert push.signed
        assert push.message_ids == first
        note = push.notification
        assert note["counts"] == {"unread": 3, "messages": 3}
        assert note["recipientId"] == bob.id
        assert [(d["id"], d["pushkey"]) for d in note["devices"]] == [(device["id"], "bob-token")]
        assert note["messages"][0]["sender"] == {"id": ann.id, "name": "Ann"}
        assert note["messages"][0]["conversation"] == {"peerId": ann.id}
        assert "body" not in note["messages"][0]  # CHAT_PUSH_INCLUDE_BODY is off

        second = await send_burst(sender, bob.id, ["four", "five"])
        pushes = await gateway.wait_for(2)
        await outbox_empty(migrated_url)
        assert len(gateway.all()) == 2  # exactly one more
        assert pushes[1].message_ids == second
        assert pushes[1].notification["counts"] == {"unread": 5, "messages": 2}
        assert pushes[0].key != pushes[1].key


async def test_an_online_recipient_is_pushed_only_what_no_device_acknowledged_in_time(
    migrated_url: str, gateway: Gateway
) -> None:
    async with chat_with_push(migrated_url, gateway, CHAT_PUSH_INCLUDE_BODY="true") as chat:
        ann, bob = await chat.account("Ann"), await chat.account("Bob")
        await register_device(chat, bob, "bob-token")
        sender, phone = await chat.connect(ann), await chat.connect(bob)

        [acked, ignored] = await send_burst(sender, bob.id, ["read at once", "left unread"])
        received = [await phone.expect("messageReceived"), await phone.expect("messageReceived")]
        assert [f["id"] for f in received] == [acked, ignored]
        await phone.send(type="ackMessages", ids=[acked])  # in time (CHAT_PUSH_AFTER_S is 2 s)

        [push] = await gateway.wait_for(1)
        await outbox_empty(migrated_url)
        assert len(gateway.all()) == 1
        assert push.message_ids == [ignored]
        assert push.notification["messages"][0]["body"] == "left unread"


async def test_pushes_survive_a_gateway_that_is_down_then_failing(migrated_url: str, gateway: Gateway) -> None:
    async with chat_with_push(migrated_url, gateway) as chat:
        ann, bob, cat = await chat.account("Ann"), await chat.account("Bob"), await chat.account("Cat")
        await register_device(chat, bob, "bob-token")
        await register_device(chat, cat, "cat-token")
        sender = await chat.connect(ann)

        gateway.stop()  # down: connections refused, for OUTAGE_S (the scenario)
        down_since = time.monotonic()
        sent = await send_burst(sender, bob.id, ["a", "b"])

        async def retried() -> bool:
            return any(attempts >= 3 for _, _, attempts in await outbox(migrated_url))

        await eventually(retried, what="the push is retried while the gateway is down")
        sent += await send_burst(sender, cat.id, ["c"])
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        gateway.statuses = [503, 503, 500]  # back, but failing after taking the requests
        gateway.start()
        await eventually(retried, what="retried")
        accepted = await gateway.wait_for(2)
        await outbox_empty(migrated_url)

        # Every message was pushed, each in one notification, which the gateway took once.
        keys = {r.key: r.message_ids for r in gateway.all()}
        assert sorted(m for ids in keys.values() for m in ids) == sorted(sent)
        assert Counter(r.key for r in accepted) == dict.fromkeys(keys, 1)
        repeats = [r for r in gateway.all() if r.status != 200]
        assert len(repeats) == 3
        assert {r.key for r in repeats} <= set(keys)  # retried with their key
        assert all(r.signed for r in gateway.all())


async def test_a_rejected_token_is_deleted(migrated_url: str, gateway: Gateway) -> None:
    async with chat_with_push(migrated_url, gateway) as chat:
        ann, bob = await chat.account("Ann"), await chat.account("Bob")
        await register_device(chat, bob, "stale-token")
        kept = await register_device(chat, bob, "good-token")
        gateway.rejected = ["stale-token"]
        await send_burst(await chat.connect(ann), bob.id, ["hi"])
        await gateway.wait_for(1)
        await outbox_empty(migrated_url)
        assert [d["id"] for d in (await chat.get("/devices", bob))["items"]] == [kept["id"]]


async def test_a_blocked_sender_s_message_makes_no_push(migrated_url: str, gateway: Gateway) -> None:
    async with chat_with_push(migrated_url, gateway) as chat:
        ann, bob = await chat.account("Ann"), await chat.account("Bob")
        await register_device(chat, bob, "bob-token")
        blocked = await chat.http.put(f"/users/{ann.id}/block", headers=bob.bearer)
        assert blocked.status_code == 204
        sender = await chat.connect(ann)
        await send_burst(sender, bob.id, ["withheld"])
        assert await outbox(migrated_url) == []  # no job was written


# -- processes --------------------------------------------------------------------------------------


def server_env(url: str, gateway: Gateway, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            **FAST,
            "CHAT_DATABASE_URL": url,
            "CHAT_JWT_SECRET": TEST_SECRET,
            "CHAT_REGISTER_PER_HOUR": "1000",
            "CHAT_LOG_LEVEL": "warning",
            "CHAT_PUSH_GATEWAY_URL": gateway.url,
            **extra,
        }
    )
    return env


@asynccontextmanager
async def chat_at(server: Server) -> AsyncIterator[Chat]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        chat = Chat(server.base_url, http)
        try:
            yield chat
        finally:
            await chat.close_sockets()


async def test_a_killed_server_s_claimed_pushes_are_sent_after_restart(
    migrated_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    server = Server(server_env(migrated_url, gateway, CHAT_PUSH_LEASE_S="2.5", CHAT_PUSH_TIMEOUT_S="2"), tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with chat_at(server) as chat:
            ann, bob = await chat.account("Ann"), await chat.account("Bob")
            await register_device(chat, bob, "bob-token")
            gateway.hold.clear()  # the gateway takes the request and does not answer yet
            sent = await send_burst(await chat.connect(ann), bob.id, ["hi", "there"])
            [taken] = await gateway.wait_for(1, accepted=False)
        server.signal(signal.SIGKILL)  # mid-send: the claim is leased, never settled
        assert await asyncio.to_thread(server.wait) == -signal.SIGKILL
        assert [push_id for _, push_id, _ in await outbox(migrated_url)] == [taken.key, taken.key]
        gateway.hold.set()

        await asyncio.to_thread(server.start)  # a new process, once the lease ran out
        await gateway.wait_for(2, accepted=False)
        await outbox_empty(migrated_url)
        again = gateway.all()[1]
        assert (again.key, again.message_ids, again.attempt) == (taken.key, sent, 1)
        assert len(gateway.all()) == 2
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_processes_never_send_one_push_twice(
    migrated_url: str, redis_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    prefix = f"push{uuid.uuid4().hex[:8]}"
    env = server_env(
        migrated_url,
        gateway,
        CHAT_REDIS_URL=redis_url,
        CHAT_REDIS_PREFIX=prefix,
        CHAT_PUSH_POLL_S="0.01",
        CHAT_PUSH_AFTER_S="60",  # an online recipient is not pushed within the test
    )
    servers = [Server(env, tmp_path / "a"), Server(env, tmp_path / "b")]
    for server in servers:
        server.cwd.mkdir()
    await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
    try:
        async with chat_at(servers[0]) as chat, chat_at(servers[1]) as elsewhere:
            senders = [await chat.account(f"Sender{i}") for i in range(2)]
            recipients = [await chat.account(f"Recipient{i}") for i in range(6)]
            for r in recipients:
                await register_device(chat, r, f"token-{r.id}")
            # Connected to the other process only (presence through Redis), not acknowledging.
            online = await chat.account("Online")
            await register_device(chat, online, "token-online")
            await elsewhere.connect(online)
            clients = [await chat.connect(s) for s in senders]

            async def to_everyone(client: Client) -> list[str]:
                return [m for r in recipients for m in await send_burst(client, r.id, ["x", "y"])]

            async def to_online(client: Client) -> list[str]:
                return await send_burst(client, online.id, ["seen at once"])

            to_the_online_one = [m for c in clients for m in await to_online(c)]
            window_over = time.monotonic() + float(FAST["CHAT_PUSH_COALESCE_S"]) + 0.5
            sent = [m for ids in await asyncio.gather(*(to_everyone(c) for c in clients)) for m in ids]
            await gateway.wait_for(len(recipients))

            async def only_the_online_one_waits() -> bool:
                jobs = await outbox(migrated_url)
                return time.monotonic() > window_over and sorted(m for m, _, _ in jobs) == sorted(to_the_online_one)

            await eventually(only_the_online_one_waits, what="every push but the online recipient's is sent")
        received = gateway.all()
        assert all(r.status == 200 for r in received)
        assert len({r.key for r in received}) == len(received)  # no notification twice
        pushed = [m for r in received for m in r.message_ids]
        assert sorted(pushed) == sorted(sent)  # every message to an offline recipient once
        assert not set(pushed) & set(to_the_online_one)  # online elsewhere: not pushed (not due yet)
    finally:
        for server in servers:
            server.stop()


async def test_the_documented_example_receiver_accepts_the_server_s_requests(migrated_url: str) -> None:
    """docs/examples/push_receiver.py, run as the gateway: it verifies the signature and takes the push."""
    spec = importlib.util.spec_from_file_location("push_receiver", ROOT / "docs" / "examples" / "push_receiver.py")
    assert spec is not None
    assert spec.loader is not None
    receiver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(receiver)
    receiver.SECRET = SECRET.encode()  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gateway_url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        settings = {**FAST, "CHAT_PUSH_GATEWAY_URL": gateway_url, "CHAT_PUSH_MAX_ATTEMPTS": "1"}
        async with running_chat(migrated_url, lambda: None, env=settings) as chat:  # type: ignore[arg-type, return-value]
            ann, bob = await chat.account("Ann"), await chat.account("Bob")
            await register_device(chat, bob, "bob-token")
            await send_burst(await chat.connect(ann), bob.id, ["hi"])
            await outbox_empty(migrated_url)  # settled: taken, or given up after its one attempt
            assert len(receiver.seen) == 1  # taken (a bad signature would have been a 401, given up)
            await chat.close_sockets()
    finally:
        server.shutdown()
        server.server_close()
