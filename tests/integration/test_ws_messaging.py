"""Messaging over real WebSockets against the served app (issue: delivery semantics, contract §3–§4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Chat, Client, running_chat

FAST = {"CHAT_REDELIVERY_S": "0.4", "CHAT_RATE_MSG_PER_S": "10000", "CHAT_RATE_MSG_BURST": "10000"}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    async with running_chat(migrated_url, uow_factory, FAST) as value:
        yield value


def received(frames: list[dict[str, object]]) -> list[dict[str, object]]:
    return [f for f in frames if f["type"] == "messageReceived"]


async def test_a_message_reaches_every_device_and_the_ack_follows_the_commit(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a1, a2 = await chat.connect(ann), await chat.connect(ann)
    b1, b2 = await chat.connect(bob), await chat.connect(bob)
    assert a1.ready["userId"] == ann.id
    assert a1.offline == {"type": "offlineMessages", "messages": [], "more": False}

    ack = await a1.send_message(bob.id, "hello", "cid-1", **{"from": bob.id})  # a forged sender is ignored
    assert ack["type"] == "messageAck"
    assert ack["clientMsgId"] == "cid-1"
    assert ack["seq"] == 1
    assert ack["to"] == bob.id
    # committed before the ack: the history already holds it
    history = await chat.get(f"/conversations/{bob.id}/messages", ann)
    assert [m["id"] for m in history["items"]] == [ack["id"]]

    for device in (b1, b2, a2):
        frame = await device.expect("messageReceived")
        assert frame == {
            "type": "messageReceived",
            "id": ack["id"],
            "seq": 1,
            "from": ann.id,
            "to": bob.id,
            "message": "hello",
            "clientMsgId": "cid-1",
            "timestamp": ack["timestamp"],
        }
    assert received(await a1.barrier()) == []  # the sending device gets only the ack


async def test_offline_messages_drain_in_batches_after_acks(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    acks = [await a.send_message(bob.id, f"m{i}") for i in range(250)]
    assert [ack["seq"] for ack in acks] == list(range(1, 251))

    b = await chat.connect(bob)
    seen: list[dict[str, object]] = []
    batch = b.offline
    sizes = []
    while True:
        sizes.append(len(batch["messages"]))
        seen.extend(batch["messages"])
        if not batch["more"]:
            break
        await b.send(type="ackMessages", ids=[m["id"] for m in batch["messages"]])
        batch = await b.expect("offlineMessages")
    assert sizes == [100, 100, 50]
    assert [m["seq"] for m in seen] == list(range(1, 251))
    assert len({m["id"] for m in seen}) == 250
    await b.send(type="ackMessages", ids=[m["id"] for m in batch["messages"]])
    await b.barrier()
    await b.close()

    again = await chat.connect(bob)
    assert again.offline == {"type": "offlineMessages", "messages": [], "more": False}


async def test_unacknowledged_messages_come_again_on_reconnect(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    ids = [(await a.send_message(bob.id, f"m{i}"))["id"] for i in range(3)]
    b = await chat.connect(bob)
    assert [m["id"] for m in b.offline["messages"]] == ids
    await b.close()
    b = await chat.connect(bob)
    assert [m["id"] for m in b.offline["messages"]] == ids


async def test_a_pushed_message_that_is_not_acknowledged_is_pushed_again(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    ack = await a.send_message(bob.id, "are you there?")
    first = await b.expect("messageReceived")
    again = await b.expect("messageReceived", within=5)  # after CHAT_REDELIVERY_S without an ack
    assert first == again
    assert again["id"] == ack["id"]
    await b.send(type="ackMessages", ids=[ack["id"]])
    delivered = await a.expect("messageDelivered")
    assert delivered["ids"] == [ack["id"]]
    assert delivered["to"] == bob.id


async def test_the_same_client_msg_id_is_stored_and_delivered_once(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    first = await a.send_message(bob.id, "once", "dup-1")
    second = await a.send_message(bob.id, "once", "dup-1")
    await a.close()
    a = await chat.connect(ann)
    third = await a.send_message(bob.id, "once", "dup-1")
    for ack in (second, third):
        assert (ack["id"], ack["seq"], ack["timestamp"]) == (first["id"], first["seq"], first["timestamp"])
    assert len({first["ref"], second["ref"], third["ref"]}) == 3
    assert len(received([await b.expect("messageReceived"), *await b.barrier()])) == 1
    history = await chat.get(f"/conversations/{bob.id}/messages", ann)
    assert len(history["items"]) == 1


async def test_seq_is_gap_free_under_twenty_concurrent_senders(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    devices = [await chat.connect(ann) for _ in range(10)] + [await chat.connect(bob) for _ in range(10)]

    async def burst(device: Client, index: int) -> list[int]:
        peer = bob.id if device.account.id == ann.id else ann.id
        return [int((await device.send_message(peer, f"d{index}-{k}"))["seq"]) for k in range(5)]

    seqs = [s for batch in await asyncio.gather(*(burst(d, i) for i, d in enumerate(devices))) for s in batch]
    assert sorted(seqs) == list(range(1, 101))


async def test_receipts_follow_acks_and_reads(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    b1, b2 = await chat.connect(bob), await chat.connect(bob)
    acks = [await a.send_message(bob.id, f"m{i}") for i in range(4)]
    ids = [ack["id"] for ack in acks]

    await b1.send(type="ackMessages", ids=ids[:2])
    delivered = await a.expect("messageDelivered")
    assert delivered["ids"] == ids[:2]
    await b2.send(type="ackMessages", ids=ids[:2])  # already delivered: no second receipt
    await b2.barrier()
    assert [f for f in await a.barrier() if f["type"] == "messageDelivered"] == []

    await b1.send(type="markRead", peerId=ann.id, upToSeq=3)
    delivered = await a.expect("messageDelivered")
    assert delivered["ids"] == [ids[2]]
    read = await a.expect("messagesRead")
    assert (read["by"], read["peerId"], read["upToSeq"]) == (bob.id, bob.id, 3)
    other = [f for f in await b2.barrier() if f["type"] == "messagesRead"]
    assert [(f["by"], f["peerId"], f["upToSeq"]) for f in other] == [(bob.id, ann.id, 3)]

    await b1.send(type="markRead", peerId=ann.id, upToSeq=1)  # never moves back
    await b1.barrier()
    assert [f for f in await a.barrier() if f["type"] == "messagesRead"] == []

    bobs = await chat.get("/conversations", bob)
    assert [(c["peer"]["id"], c["unreadCount"], c["lastReadSeq"], c["peerLastReadSeq"]) for c in bobs["items"]] == [
        (ann.id, 1, 3, 0)
    ]
    anns = await chat.get("/conversations", ann)
    assert (anns["items"][0]["lastReadSeq"], anns["items"][0]["peerLastReadSeq"]) == (0, 3)
    assert anns["items"][0]["lastMessage"]["id"] == ids[3]
    history = await chat.get(f"/conversations/{bob.id}/messages", ann)
    states = [(m["deliveredAt"] is not None, m["readAt"] is not None) for m in history["items"]]
    assert states == [(True, True), (True, True), (True, True), (False, False)]


async def test_history_and_conversations_paginate_over_what_the_socket_delivered(chat: Chat) -> None:
    ann, bob, cid = await chat.account("Ann"), await chat.account("Bob"), await chat.account("Cid")
    a, b = await chat.connect(ann), await chat.connect(bob)
    acks = [await a.send_message(bob.id, f"m{i}") for i in range(7)]
    pushed = [await b.expect("messageReceived") for _ in acks]
    await a.send_message(cid.id, "to cid")

    newest = await chat.get(f"/conversations/{bob.id}/messages", ann, limit=3)
    assert [m["seq"] for m in newest["items"]] == [5, 6, 7]
    assert newest["hasMore"] is True
    older = await chat.get(f"/conversations/{bob.id}/messages", ann, limit=3, before=5)
    assert [m["seq"] for m in older["items"]] == [2, 3, 4]
    oldest = await chat.get(f"/conversations/{bob.id}/messages", ann, limit=3, before=2)
    assert ([m["seq"] for m in oldest["items"]], oldest["hasMore"]) == ([1], False)
    forward = await chat.get(f"/conversations/{ann.id}/messages", bob, limit=4, after=2)
    assert ([m["seq"] for m in forward["items"]], forward["hasMore"]) == ([3, 4, 5, 6], True)
    everything = await chat.get(f"/conversations/{ann.id}/messages", bob, limit=100)
    assert [(m["id"], m["message"], m["timestamp"]) for m in everything["items"]] == [
        (p["id"], p["message"], p["timestamp"]) for p in pushed
    ]

    page1 = await chat.get("/conversations", ann, limit=1)
    assert [c["peer"]["id"] for c in page1["items"]] == [cid.id]  # most recent first
    page2 = await chat.get("/conversations", ann, limit=1, cursor=page1["nextCursor"])
    assert [c["peer"]["id"] for c in page2["items"]] == [bob.id]
    assert page2["nextCursor"] is None
    assert "email" not in str(page2)

    both = await chat.http.get(
        f"/conversations/{bob.id}/messages", params={"before": 3, "after": 1}, headers=ann.bearer
    )
    assert both.status_code == 400
    unknown = await chat.http.get("/conversations/999999/messages", headers=ann.bearer)
    assert unknown.status_code == 404


async def test_pipelined_frames_are_answered_in_the_order_sent(chat: Chat) -> None:
    """Sends and acknowledgements in flight together (sharing transactions), failures among them,
    and a frame of another kind after them: every reply comes in the order of the frames."""
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a = await chat.connect(ann)
    frames: list[dict[str, object]] = [
        {"type": "sendMessage", "to": bob.id, "message": "one", "clientMsgId": "p-1", "ref": "r0"},
        {"type": "sendMessage", "to": bob.id, "message": "two", "clientMsgId": "p-2", "ref": "r1"},
        {"type": "ackMessages", "ids": ["not-a-message-of-ann"], "ref": "quiet"},  # no reply
        {"type": "ackMessages", "ids": [], "ref": "rA"},  # an error, in its turn
        {"type": "sendMessage", "to": 999_999, "message": "nobody", "clientMsgId": "p-3", "ref": "r2"},
        {"type": "sendMessage", "to": bob.id, "message": "three", "clientMsgId": "", "ref": "r3"},
        {"type": "sendMessage", "to": bob.id, "message": "four", "clientMsgId": "p-4", "ref": "r4"},
        {"type": "sendMessage", "to": bob.id, "message": "two again", "clientMsgId": "p-2", "ref": "r5"},
        {"type": "ping", "ref": "r6"},
    ]
    for frame in frames:
        await a.send(**frame)

    replies = [await a.recv() for _ in range(len(frames) - 1)]  # all but the quiet acknowledgement

    assert [(r["type"], r.get("ref")) for r in replies] == [
        ("messageAck", "r0"),
        ("messageAck", "r1"),
        ("error", "rA"),
        ("error", "r2"),
        ("error", "r3"),
        ("messageAck", "r4"),
        ("messageAck", "r5"),
        ("pong", "r6"),
    ]
    assert [r["code"] for r in replies[2:5]] == ["bad_request", "not_found", "bad_request"]
    assert [r["seq"] for r in replies if r["type"] == "messageAck"] == [1, 2, 3, 2]  # r5: the stored p-2
    assert replies[6]["id"] == replies[1]["id"]
