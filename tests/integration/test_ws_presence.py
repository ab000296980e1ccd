"""Presence, contacts, blocking and typing over real sockets (contract §2 contacts, §4 blocking, §6)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Account, Chat, Client, running_chat

GRACE = {"CHAT_OFFLINE_GRACE_S": "0.4", "CHAT_RATE_MSG_PER_S": "10000", "CHAT_RATE_MSG_BURST": "10000"}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    async with running_chat(migrated_url, uow_factory, GRACE) as value:
        yield value


async def befriend(a: Client, b: Client) -> None:
    """Make the two accounts contacts (a message each way) and drain what that produced."""
    await a.send_message(b.account.id, "hi")
    await b.send_message(a.account.id, "hello")
    await a.barrier()
    await b.barrier()


def of_type(frames: list[dict[str, object]], *types: str) -> list[dict[str, object]]:
    return [f for f in frames if f["type"] in types]


async def test_new_contacts_who_are_online_see_each_other_come_online(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    await a.send_message(bob.id, "hi")  # one direction is not yet contacts
    assert of_type(await b.barrier(), "userOnline") == []
    await b.send_message(ann.id, "hello")
    assert of_type(await a.barrier(), "userOnline") == [{"type": "userOnline", "userId": bob.id}]
    # bob's own introduction was published before his ack, so it came while he awaited the ack
    assert of_type(b.stash + await b.barrier(), "userOnline") == [{"type": "userOnline", "userId": ann.id}]


async def test_presence_events_go_to_contacts_once_per_transition_with_grace(chat: Chat) -> None:
    ann, bob, eve = await chat.account("Ann"), await chat.account("Bob"), await chat.account("Eve")
    a, b, e = await chat.connect(ann), await chat.connect(bob), await chat.connect(eve)
    await befriend(a, b)
    await b.close()

    # a reconnect inside the grace produces nothing
    b = await chat.connect(bob)
    b2 = await chat.connect(bob)
    await b2.close()
    await b.close()
    offline = await a.expect("userOffline", within=5)
    assert offline["userId"] == bob.id
    assert str(offline["lastSeenAt"]).endswith("Z")
    assert of_type(await a.barrier(), "userOnline", "userOffline") == []  # exactly one event

    b = await chat.connect(bob)
    assert await a.expect("userOnline") == {"type": "userOnline", "userId": bob.id}
    assert of_type(await e.barrier(), "userOnline", "userOffline") == []  # never a non-contact

    card = await chat.get(f"/users/{bob.id}", ann)
    assert card["online"] is True
    assert (await chat.get(f"/users/{bob.id}", eve))["online"] is None


async def test_clients_cannot_set_presence(chat: Chat) -> None:
    ann = await chat.account("Ann")
    a = await chat.connect(ann)
    await a.send(type="userOnline", userId=ann.id)
    assert (await a.expect("error"))["code"] == "unknown_type"
    await a.send(type="userOffline", userId=ann.id)
    assert (await a.expect("error"))["code"] == "unknown_type"


async def test_get_online_users_shows_only_visible_contacts(chat: Chat) -> None:
    ann, bob, cid = await chat.account("Ann"), await chat.account("Bob"), await chat.account("Cid")
    a, b, _c = await chat.connect(ann), await chat.connect(bob), await chat.connect(cid)
    await befriend(a, b)
    await a.send(type="getOnlineUsers", ref="o1")
    assert await a.expect("onlineUsers") == {"type": "onlineUsers", "ref": "o1", "userIds": [bob.id]}
    await a.send(type="getOnlineUsers", userIds=[bob.id, cid.id], ref="o2")
    assert (await a.expect("onlineUsers"))["userIds"] == [bob.id]  # cid is online but no contact


async def block(chat: Chat, who: Account, whom: Account) -> None:
    response = await chat.http.put(f"/users/{whom.id}/block", headers=who.bearer)
    assert response.status_code == 204, response.text


async def test_a_blocked_senders_messages_are_acked_but_never_reach_the_blocker(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    await befriend(a, b)
    await block(chat, bob, ann)
    await block(chat, bob, ann)  # idempotent
    assert [u["id"] for u in (await chat.get("/users/me/blocked", bob))["items"]] == [ann.id]

    ack = await a.send_message(bob.id, "can you hear me?")
    assert ack["type"] == "messageAck"
    assert of_type(await b.barrier(), "messageReceived") == []
    await b.close()
    b = await chat.connect(bob)
    assert ack["id"] not in [m["id"] for m in b.offline["messages"]]

    assert (await chat.http.delete(f"/users/{ann.id}/block", headers=bob.bearer)).status_code == 204
    await b.close()
    b = await chat.connect(bob)
    assert ack["id"] not in [m["id"] for m in b.offline["messages"]]  # not after unblocking either
    bobs_view = await chat.get(f"/conversations/{ann.id}/messages", bob)
    anns_view = await chat.get(f"/conversations/{bob.id}/messages", ann)
    assert ack["id"] not in [m["id"] for m in bobs_view["items"]]
    assert ack["id"] in [m["id"] for m in anns_view["items"]]


async def test_a_block_hides_presence_and_typing_both_ways(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    await befriend(a, b)
    await a.send(type="typing", to=bob.id, isTyping=True)
    assert await b.expect("typing") == {"type": "typing", "from": ann.id, "isTyping": True}

    await block(chat, bob, ann)
    for typer, watcher, target in ((a, b, bob), (b, a, ann)):
        await typer.send(type="typing", to=target.id, isTyping=True)
        assert await typer.barrier() == []  # silently dropped: no error reveals the block
        assert of_type(await watcher.barrier(), "typing") == []
    hidden = await chat.http.get(f"/users/{bob.id}", headers=ann.bearer)  # the blocker: as if unknown
    unknown = await chat.http.get("/users/999999", headers=ann.bearer)
    assert (
        (hidden.status_code, hidden.json()["type"])
        == (unknown.status_code, unknown.json()["type"])
        == (
            404,
            "not_found",
        )
    )
    assert [(u["id"], u["online"]) for u in (await chat.get("/users", ann))["items"]] == [(bob.id, False)]
    assert (await chat.get(f"/users/{ann.id}", bob))["online"] is None
    await b.close()
    assert of_type(await a.barrier(), "userOffline") == []
    await a.send(type="getOnlineUsers", ref="o")
    assert (await a.expect("onlineUsers"))["userIds"] == []
