"""An account's life over the real app, on SQLite and PostgreSQL: its sessions (list, end one:
tokens and sockets), its deletion (what others can still see, what they can no longer) and its
export (one JSON document, streamed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Account, Chat, close_code, running_chat

# The deleted account's identifiers are distinctive, so that finding them anywhere is a leak.
NAME, PHONE = "Zephyrine Quaxley", "+442099887766"
FAST = {"CHAT_OFFLINE_GRACE_S": "0.2", "CHAT_RATE_MSG_PER_S": "10000", "CHAT_RATE_MSG_BURST": "10000"}


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    async with running_chat(migrated_url, uow_factory, FAST) as value:
        yield value
        await value.close_sockets()


async def register(chat: Chat, name: str, email: str, phone: str, agent: str = "test-agent") -> Account:
    response = await chat.http.post(
        "/auth/register",
        json={"name": name, "email": email, "phoneNumber": phone, "password": "password123"},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["id"], name, email, body["access_token"], body["refresh_token"])


async def login(chat: Chat, account: Account, agent: str) -> Account:
    response = await chat.http.post(
        "/auth/login", json={"email": account.email, "password": "password123"}, headers={"User-Agent": agent}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Account(account.id, account.name, account.email, body["access_token"], body["refresh_token"])


# ---------------------------------------------------------------------------------------------
# Sessions


async def test_sessions_are_listed_with_their_client_and_one_ends_with_its_tokens_and_sockets(chat: Chat) -> None:
    phone = await register(chat, "Ann", "ann@example.com", "+14155550100", agent="Phone\tApp/1.0  (iOS)")
    laptop = await login(chat, phone, agent="Mozilla/5.0 " + "x" * 300)
    sessions = (await chat.http.get("/auth/sessions", headers=laptop.bearer)).json()["items"]
    assert [(s["client"], s["current"]) for s in sessions] == [
        ("Phone App/1.0 (iOS)", False),
        ("Mozilla/5.0 " + "x" * 88, True),
    ]
    assert all(s["lastUsedAt"] == s["createdAt"] for s in sessions)  # used within the minute it started
    phone_session = sessions[0]["id"]

    on_phone = await chat.connect(phone)
    on_laptop = await chat.connect(laptop)
    eve = await chat.account("Eve")
    other = await chat.http.delete(f"/auth/sessions/{phone_session}", headers=eve.bearer)
    assert other.status_code == 404  # not hers: as if it did not exist
    assert other.json()["type"] == "not_found"

    ended = await chat.http.delete(f"/auth/sessions/{phone_session}", headers=laptop.bearer)
    assert ended.status_code == 204
    assert await on_phone.closed_with() == 4403
    assert (await chat.http.get("/users/me", headers=phone.bearer)).status_code == 401
    refreshed = await chat.http.post("/auth/refresh", json={"refresh_token": phone.refresh_token})
    assert refreshed.status_code == 401
    again = await chat.http.delete(f"/auth/sessions/{phone_session}", headers=laptop.bearer)
    assert again.status_code == 404  # ended already
    remaining = (await chat.http.get("/auth/sessions", headers=laptop.bearer)).json()["items"]
    assert [s["current"] for s in remaining] == [True]
    assert (await on_laptop.barrier()) == []  # the laptop's socket lives on


# ---------------------------------------------------------------------------------------------
# Deletion


def leaks(text: str, ann: Account) -> list[str]:
    """Which of the deleted account's identifiers ``text`` carries."""
    return [value for value in (NAME, ann.email, PHONE, PHONE[1:]) if value.lower() in text.lower()]


PASSWORD = "password123"


async def delete_account(chat: Chat, account: Account, password: str = PASSWORD, **body: Any) -> int:
    response = await chat.http.request(
        "DELETE", "/users/me", json={"password": password, **body}, headers=account.bearer
    )
    return response.status_code


async def test_after_deletion_nothing_carries_the_accounts_name_email_or_phone(chat: Chat) -> None:
    ann = await register(chat, NAME, "zephyrine@example.com", PHONE)
    bob = await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    for n in range(3):
        await a.send_message(bob.id, f"from ann {n}")
        await b.send_message(ann.id, f"from bob {n}")
    await b.barrier()
    await a.close()  # ann leaves bob's last messages pending
    await b.send_message(ann.id, "are you there?")
    a = await chat.connect(ann)
    assert [m["message"] for m in a.offline["messages"]][-1] == "are you there?"
    b_raw: list[str] = []

    wrong = await chat.http.request("DELETE", "/users/me", json={"password": "not it"}, headers=ann.bearer)
    assert wrong.status_code == 400
    assert wrong.json()["errors"] == [{"field": "password", "message": "is not your password"}]
    assert await delete_account(chat, ann) == 204

    assert await a.closed_with() == 4403
    assert (await chat.http.get("/users/me", headers=ann.bearer)).status_code == 401
    with pytest.raises(websockets.ConnectionClosed) as closed:  # the old token opens no socket
        await chat.connect(ann)
    assert close_code(closed.value) == 4401  # as any revoked token on a new socket

    # Bob: every response and frame
    texts: list[str] = []
    for path, params in (
        ("/users", {"q": "zephyrine"}),
        ("/users", {"q": "zephyrine@example.com"}),
        ("/users", {"q": PHONE}),
        ("/users", {}),
        ("/conversations", {}),
        (f"/conversations/{ann.id}/messages", {}),
    ):
        response = await chat.http.get(path, params=params, headers=bob.bearer)
        assert response.status_code == 200, (path, response.text)
        texts.append(response.text)
    assert (await chat.http.get(f"/users/{ann.id}", headers=bob.bearer)).status_code == 404
    await b.send(type="searchUsers", query="Zephyrine", ref="s")
    await b.send(type="getOnlineUsers", userIds=[ann.id], ref="o")
    frames = await b.barrier()
    b_raw.extend(json.dumps(f) for f in (*b.stash, *frames))
    assert {"type": "searchResults", "ref": "s", "query": "Zephyrine", "users": []} in frames
    assert {"type": "onlineUsers", "ref": "o", "userIds": []} in frames
    failed = await b.send_message(ann.id, "hello?")
    assert (failed["type"], failed["code"]) == ("error", "not_found")
    await b.close()
    b = await chat.connect(bob)  # the offline batch: ann's messages to bob, acknowledged or not
    b_raw.append(json.dumps(b.offline))
    b_raw.extend(json.dumps(f) for f in await b.barrier())
    assert leaks("\n".join(texts + b_raw), ann) == []

    conversations = json.loads(texts[4])["items"]
    assert [c["peer"] for c in conversations] == [
        {"id": ann.id, "name": "Deleted account", "online": None, "lastSeenAt": None}
    ]
    assert json.loads(texts[3])["items"] == []  # no longer a contact
    # the history still pages, ann's messages included
    newest = await chat.get(f"/conversations/{ann.id}/messages", bob, limit=2)
    older = await chat.get(f"/conversations/{ann.id}/messages", bob, limit=2, before=newest["items"][0]["seq"])
    assert [m["message"] for m in older["items"] + newest["items"]] == [
        "from bob 1",
        "from ann 2",
        "from bob 2",
        "are you there?",
    ]
    assert older["hasMore"]

    # the email and the phone number register again, as a new account
    again = await register(chat, "Someone New", "ZEPHYRINE@example.com", "+44 20 9988 7766")
    assert again.id != ann.id
    assert (await chat.http.get("/users", params={"q": PHONE}, headers=bob.bearer)).json()["items"][0]["id"] == again.id


async def test_erase_blanks_the_bodies_of_the_messages_the_account_sent(chat: Chat) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    await a.send_message(bob.id, "my secret")
    await b.send_message(ann.id, "bob's own words")
    await a.send_message(bob.id, "another secret")
    assert await delete_account(chat, ann, erase=True) == 204
    assert await a.closed_with() == 4403
    history = await chat.get(f"/conversations/{ann.id}/messages", bob)
    assert [(m["from"], m["message"]) for m in history["items"]] == [
        (ann.id, ""),
        (bob.id, "bob's own words"),
        (ann.id, ""),
    ]
    listed = await chat.get("/conversations", bob)
    assert listed["items"][0]["lastMessage"]["message"] == ""
    await b.close()
    b = await chat.connect(bob)  # pending or not, no body comes back
    assert "secret" not in json.dumps(b.offline)


async def test_a_wrong_password_counts_as_a_failed_login(
    migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    async with running_chat(migrated_url, uow_factory, {"CHAT_LOGIN_MAX_FAILURES": "2"}) as chat:
        ann = await chat.account("Ann")
        assert [await delete_account(chat, ann, "wrong one") for _ in range(3)] == [400, 400, 429]
        assert await delete_account(chat, ann) == 429  # locked for this login, right password or not


# ---------------------------------------------------------------------------------------------
# Export


async def test_the_export_holds_the_profile_logins_contacts_blocks_and_every_message(chat: Chat) -> None:
    ann = await register(chat, "Ann", "ann@example.com", "+14155550100", agent="Agent/1")
    bob, eve = await chat.account("Bob"), await chat.account("Eve")
    a, b, e = await chat.connect(ann), await chat.connect(bob), await chat.connect(eve)
    await a.send_message(bob.id, "hi bob")
    await b.send_message(ann.id, "hi ann")
    await e.send_message(ann.id, "spam")
    assert (await chat.http.put(f"/users/{eve.id}/block", headers=ann.bearer)).status_code == 204
    await e.send_message(ann.id, "withheld spam")  # withheld: not ann's to see
    device = {"kind": "fcm", "token": "fcm-token-of-ann", "appId": "com.example.chat", "label": "Ann's phone"}
    registered = await chat.http.post("/devices", json=device, headers=ann.bearer)
    assert registered.status_code == 201, registered.text

    response = await chat.http.get("/users/me/export", headers=ann.bearer)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    document = response.json()
    assert document["format"] == "p2p-chat-export/1"
    assert document["profile"]["email"] == "ann@example.com"
    assert document["profile"]["phoneNumber"] == "+14155550100"
    assert [login["client"] for login in document["logins"]] == ["Agent/1"]
    assert [(d["id"], d["kind"], d["appId"], d["label"]) for d in document["devices"]] == [
        (registered.json()["id"], "fcm", "com.example.chat", "Ann's phone")
    ]
    assert "fcm-token-of-ann" not in response.text  # a target's token is never echoed back
    assert document["contacts"] == [{"id": bob.id, "name": "Bob"}]
    assert document["blocks"] == [{"id": eve.id, "name": "Eve"}]
    conversations = {c["peer"]["id"]: c for c in document["conversations"]}
    assert [m["message"] for m in conversations[bob.id]["messages"]] == ["hi bob", "hi ann"]
    assert [m["message"] for m in conversations[eve.id]["messages"]] == ["spam"]
    assert conversations[bob.id]["lastSeq"] == 2
    assert (await chat.http.get("/users/me/export")).status_code == 401


async def test_a_deleted_account_cannot_export(chat: Chat) -> None:
    ann = await chat.account("Ann")
    assert await delete_account(chat, ann) == 204
    assert (await chat.http.get("/users/me/export", headers=ann.bearer)).status_code == 401
