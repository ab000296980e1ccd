"""One socket cannot hurt the others: rate limits, error floods, caps, slow consumers, metrics."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.exceptions import ConnectionClosed

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Chat, Client, close_code, read_until_closed, running_chat

LIMITS = {
    "CHAT_RATE_MSG_PER_S": "2",
    "CHAT_RATE_MSG_BURST": "4",
    "CHAT_RATE_CLOSE_AFTER_S": "2",
    "CHAT_MAX_CONNECTIONS_PER_USER": "3",
}


@pytest.fixture
def backend() -> str:
    return "sqlite"


class Ticks:
    """The rate limits' clock, moved by the test: limits depend on it, not on how fast CI is."""

    def __init__(self) -> None:
        self.now = 1000.25

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork], ticks: Ticks) -> AsyncIterator[Chat]:
    async with running_chat(migrated_url, uow_factory, LIMITS, monotonic=ticks) as value:
        yield value


async def test_a_message_flood_is_refused_without_storing_then_closed_4429(chat: Chat, ticks: Ticks) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    # second 1000: the burst of 4 is acked, the rest refused; one second of refusals is no streak
    replies = [await a.send_message(bob.id, f"m{i}", f"flood-{i}") for i in range(8)]
    assert [r["type"] for r in replies] == ["messageAck"] * 4 + ["error"] * 4
    assert {r["code"] for r in replies[4:]} == {"rate_limited"}
    assert [r["clientMsgId"] for r in replies] == [f"flood-{i}" for i in range(8)]  # which send failed
    stored = await chat.get(f"/conversations/{bob.id}/messages", ann)
    assert sorted(m["clientMsgId"] for m in stored["items"]) == [f"flood-{i}" for i in range(4)]

    # a refused send is resent with its clientMsgId once the bucket refills: stored once
    ticks.now = 1000.75  # +0.5 s at 2/s: one token
    assert (await a.send_message(bob.id, "m4", "flood-4"))["type"] == "messageAck"
    assert (await a.send_message(bob.id, "m5", "flood-5"))["type"] == "error"

    # refused on, never pausing a second: once refusals have lasted 2 s (CHAT_RATE_CLOSE_AFTER_S)
    # since the first one (1000.25), not merely come in two calendar seconds, the socket closes 4429
    acked, n = [f"flood-{i}" for i in range(5)], 6
    for now in (1001.0, 1001.5, 1002.0):
        ticks.now = now
        while (await a.send_message(bob.id, f"m{n}", f"flood-{n}"))["type"] == "messageAck":  # until refused
            acked.append(f"flood-{n}")
            n += 1
        n += 1
    assert (await a.barrier()) == []  # 1.75 s of refusals: still open
    ticks.now = 1002.25
    while True:
        await a.send(type="sendMessage", to=bob.id, message=f"m{n}", clientMsgId=f"flood-{n}", ref=f"r{n}")
        reply = await a.recv()
        if reply["type"] == "error":
            break
        acked.append(f"flood-{n}")
        n += 1
    assert await a.closed_with() == 4429
    stored = await chat.get(f"/conversations/{bob.id}/messages", ann)
    assert sorted(m["clientMsgId"] for m in stored["items"]) == sorted(acked)


async def test_a_second_without_refusals_ends_the_streak(chat: Chat, ticks: Ticks) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    for second in (1000.25, 1002.5, 1004.75):  # refused in seconds 1000, 1002, 1004; never two in a row
        ticks.now = second
        replies = [await a.send_message(bob.id, f"m{i}") for i in range(6)]
        assert [r["type"] for r in replies] == ["messageAck"] * 4 + ["error"] * 2
    assert (await a.barrier()) == []  # still open


async def test_typing_has_its_own_smaller_bucket(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    for _ in range(3):
        await a.send(type="typing", to=bob.id, isTyping=True)
    errors = [f for f in await a.barrier() if f["type"] == "error"]
    # burst ceil(4/4) = 1, and the clock stands still: two of three typing frames are refused
    # (the message bucket, burst 4, would refuse none)
    assert len(errors) == 2
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert (await a.send_message(bob.id, "messages are unaffected"))["type"] == "messageAck"


async def test_more_than_twenty_bad_frames_in_ten_seconds_close_1008_after_every_error(chat: Chat) -> None:
    """The 21 ``error`` frames queued before the close all arrive, then the 1008 (issue 15, 11)."""
    ann = await chat.account("Ann")
    a = await chat.connect(ann)
    for _ in range(21):
        await a.send_raw("not json")
    assert await types_until_closed(a) == (["error"] * 21, 1008)


async def types_until_closed(client: Client) -> tuple[list[str], int]:
    """The types of the frames the server sends until it closes, and its close code."""
    types: list[str] = []
    while True:
        try:
            types.append((await client.recv())["type"])
        except ConnectionClosed as exc:
            return types, close_code(exc)


async def test_one_connection_over_the_per_user_cap_is_closed_4430(chat: Chat) -> None:
    ann = await chat.account("Ann")
    kept = [await chat.connect(ann) for _ in range(3)]
    ws = await chat.open()
    await ws.send(json.dumps({"type": "auth", "token": ann.access_token}))
    assert await read_until_closed(ws) == 4430
    assert await kept[0].barrier() == []


async def test_a_reader_that_stops_reading_is_closed_4008_and_catches_up_later(
    migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    env = {"CHAT_MAX_QUEUED_FRAMES": "20", "CHAT_RATE_MSG_PER_S": "10000", "CHAT_RATE_MSG_BURST": "10000"}
    async with running_chat(migrated_url, uow_factory, env) as chat:
        ann, bob, cid = await chat.account("Ann"), await chat.account("Bob"), await chat.account("Cid")
        # bob's socket never reads, and its kernel receive buffer is tiny
        sock = socket.create_connection(("127.0.0.1", int(chat.base_url.rsplit(":", 1)[1])))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Uncompressed, so what the server writes is what fills the buffers (and how fast it sends
        # cannot change how many messages that takes); no client pings, whose pongs would queue
        # behind megabytes and make the client give up on the connection itself.
        slow_ws = await chat.open(sock=sock, max_queue=1, compression=None, ping_interval=None)
        await slow_ws.send(json.dumps({"type": "auth", "token": bob.access_token}))
        a, c = await chat.connect(ann), await chat.connect(cid)
        sent_ids: list[str] = []

        async def slow_consumer_closes() -> float:
            text = (await chat.http.get("/metrics")).text
            return float(re.findall(r"^chat_slow_consumer_closes_total (\S+)$", text, re.M)[0])

        for _ in range(40):  # bounded: at most 4,000 messages of 4,000 characters
            for _ in range(100):
                sent_ids.append(str((await a.send_message(bob.id, "y" * 4000))["id"]))  # noqa: PERF401
            assert (await c.send_message(ann.id, "life goes on"))["type"] == "messageAck"
            if await slow_consumer_closes() >= 1:
                break
        assert await slow_consumer_closes() == 1
        # the close frame queues behind the megabytes the kernels buffer; read them with a normal
        # receive window (a 4 KiB one and delayed ACKs would take minutes)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        assert await read_until_closed(slow_ws, within=30) == 4008

        bob_again = await chat.connect(bob)
        batch, got = bob_again.offline, list[object]()
        while True:
            got.extend(m["id"] for m in batch["messages"])
            if not batch["more"]:
                break
            await bob_again.send(type="ackMessages", ids=[m["id"] for m in batch["messages"]])
            batch = await bob_again.expect("offlineMessages")
        assert got == sent_ids  # every one of them, in order, once


async def test_metrics_move_with_traffic(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")

    async def scrape() -> dict[str, float]:
        text = (await chat.http.get("/metrics")).text
        values = {}
        for line in text.splitlines():
            match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
            if match:
                values[match.group(1)] = float(match.group(2))
        return values

    before = await scrape()
    for name in (
        "chat_connections",
        "chat_messages_in_total",
        "chat_messages_out_total",
        "chat_delivery_latency_seconds_count",
        "chat_pending_messages",
        "chat_slow_consumer_closes_total",
    ):
        assert name in before, name
    a, b = await chat.connect(ann), await chat.connect(bob)
    ack = await a.send_message(bob.id, "counted")
    await b.expect("messageReceived")
    await a.send_raw("not json")
    await a.expect("error")
    for _ in range(6):
        await a.send_message(bob.id, "flood")
    after = await scrape()
    assert after["chat_connections"] == before["chat_connections"] + 2
    assert after["chat_messages_in_total"] >= before["chat_messages_in_total"] + 1
    assert after["chat_messages_out_total"] >= before["chat_messages_out_total"] + 1
    assert after["chat_delivery_latency_seconds_count"] >= 1
    assert after["chat_pending_messages"] >= 1
    assert after['chat_rejected_frames_total{code="bad_request"}'] >= 1
    assert after['chat_rate_limited_total{bucket="message"}'] >= 1
    await b.send(type="ackMessages", ids=[ack["id"]])
    await b.barrier()


async def test_metrics_can_require_a_token(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> None:
    async with running_chat(migrated_url, uow_factory, {"CHAT_METRICS_TOKEN": "s3cret"}) as chat:
        assert (await chat.http.get("/metrics")).status_code == 401
        ok = await chat.http.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert "chat_connections" in ok.text
