"""Sessions, account deletion and export, with the fakes: what each use case decides."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from application.account_life import (
    AccountDeletion,
    ConversationEnd,
    ConversationStart,
    DevicePart,
    ExportPart,
    ListEnd,
    ListStart,
    LoginPart,
    MessagesPart,
    PersonPart,
    ProfilePart,
)
from application.accounts import Credentials, EndLogin, PasswordChange, Refresh
from application.common import PageRequest
from application.events import LoginsRevoked
from application.messaging import HistoryQuery, PendingQuery, Send
from application.users import SearchQuery, UserLookup
from domain.auth import LAST_USED_PRECISION_S, client_label
from domain.errors import (
    AuthenticationError,
    InvalidCredentialsError,
    InvalidInputError,
    RateLimitedError,
    SessionNotFoundError,
    UserNotFoundError,
)
from domain.push import PushTarget
from domain.users import DELETED_NAME
from tests.unit.harness import ADDRESS, PASSWORD, World, hashing, principal_of

# ---------------------------------------------------------------------------------------------
# Client labels and last use


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        (None, None),
        ("", None),
        (" \t ", None),
        ("Mozilla/5.0  (X11;\tLinux)", "Mozilla/5.0 (X11; Linux)"),
        ("evil\u202eagent\x1b[31m", "evil agent [31m"),
        ("a" * 500, "a" * 100),
    ],
)
def test_a_client_label_is_the_printable_user_agent_bounded(agent: str | None, label: str | None) -> None:
    assert client_label(agent) == label


async def test_authenticating_records_the_last_use_at_most_once_a_minute(world: World) -> None:
    session = await world.register(world.registration("Ada"))
    commits = world.store.commits
    for _ in range(5):
        await world.authenticate(session.access_token)
    assert world.store.commits == commits  # within the minute the login started: nothing written

    started = world.clock.now()
    world.clock.advance(LAST_USED_PRECISION_S)
    for _ in range(5):
        await world.authenticate(session.access_token)
    assert world.store.commits == commits + 1
    (view,) = await world.list_sessions(principal_of(session))
    assert view.login.last_used_at == started + timedelta(seconds=LAST_USED_PRECISION_S)

    world.clock.advance(LAST_USED_PRECISION_S - 1)
    await world.authenticate(session.access_token)
    assert world.store.commits == commits + 1


async def test_a_refresh_is_a_use_of_its_login(world: World) -> None:
    session = await world.register(world.registration("Ada"))
    world.clock.advance(3600)
    renewed = await world.refresh(Refresh(refresh_token=session.refresh_token))
    (view,) = await world.list_sessions(principal_of(renewed))
    assert view.login.last_used_at == world.clock.now()


# ---------------------------------------------------------------------------------------------
# Sessions


async def test_sessions_lists_the_live_logins_oldest_first_with_the_current_one_marked(world: World) -> None:
    first = await world.sign_up("Ada")
    world.clock.advance(1)
    second = await world.sign_in(
        Credentials(email="ada@example.com", password=PASSWORD, client_address=ADDRESS, user_agent="Phone/2")
    )
    other = await world.sign_up("Bob")

    views = await world.list_sessions(principal_of(second))
    assert [(v.login.id, v.login.client, v.current) for v in views] == [
        (first.sid, None, False),
        (second.sid, "Phone/2", True),
    ]
    assert other.sid not in [v.login.id for v in views]


async def test_ending_a_session_revokes_it_and_tells_its_connections(world: World) -> None:
    first = await world.sign_up("Ada")
    second = await world.signed_in("ada@example.com")
    await world.end_session(principal_of(second), EndLogin(session_id=first.sid))

    assert world.notifier.events_to(first.user.uid) == [LoginsRevoked(sids=frozenset({first.sid}))]
    with pytest.raises(AuthenticationError):
        await world.authenticate(first.access_token)
    with pytest.raises(AuthenticationError):
        await world.refresh(Refresh(refresh_token=first.refresh_token))
    assert [v.login.id for v in await world.list_sessions(principal_of(second))] == [second.sid]


@pytest.mark.parametrize("which", ["another user's", "ended", "unknown", "unstorable"])
async def test_a_session_that_is_not_a_live_one_of_yours_is_not_found(world: World, which: str) -> None:
    ada = await world.sign_up("Ada")
    bob = await world.sign_up("Bob")
    await world.sign_out(principal_of(bob)) if which == "ended" else None
    target = {"another user's": bob.sid, "ended": bob.sid, "unknown": "nope", "unstorable": "x\x00"}[which]
    actor = principal_of(bob if which == "ended" else ada)
    if which == "ended":
        actor = principal_of(await world.signed_in("bob@example.com"))
    world.notifier.clear()
    with pytest.raises(SessionNotFoundError):
        await world.end_session(actor, EndLogin(session_id=target))
    assert world.notifier.published == []


# ---------------------------------------------------------------------------------------------
# Deletion


async def test_deletion_needs_the_password_and_a_wrong_one_counts_as_a_failed_login(world: World) -> None:
    ada = await world.sign_up("Ada")
    for _ in range(3):  # max_failures = 3
        with pytest.raises(InvalidInputError) as caught:
            await world.delete_account(principal_of(ada), AccountDeletion(password="not it"))
        assert [p.field for p in caught.value.problems] == ["password"]
    with pytest.raises(RateLimitedError):
        await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD))
    assert not world.store.user(ada.user.uid).deleted


async def test_deletion_erases_the_profile_and_forgets_logins_contacts_blocks_and_pending(world: World) -> None:
    ada = await world.sign_up("Ada")
    phone = await world.signed_in("ada@example.com")
    bob, cid = world.seed_users("Bob", "Cid")
    await world.send(ada.user.uid, bob, "ada to bob")
    await world.send(bob, ada.user.uid, "bob to ada")  # contacts now; pending to ada
    world.store.block(ada.user.uid, cid)
    world.store.block(cid, ada.user.uid)
    world.notifier.clear()

    ended = await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD))

    assert sorted(ended) == sorted([ada.sid, phone.sid])
    assert world.notifier.events_to(ada.user.uid) == [LoginsRevoked(sids=frozenset(ended))]
    user = world.store.user(ada.user.uid)
    assert (user.name, user.email, user.phone_number, user.password_hash) == (
        DELETED_NAME,
        "",
        f"~{user.uid}",
        "",
    )
    data = world.store.data
    assert [login for login in data.logins.values() if login.user_id == user.uid] == []
    assert data.contacts == set()
    assert data.blocks == set()
    assert (await world.pending_for(principal_of(ada.user.uid), PendingQuery())).messages == []
    for token in (ada.access_token, phone.access_token):
        with pytest.raises(AuthenticationError):
            await world.authenticate(token)
    # the peer keeps the whole conversation
    page = await world.history(principal_of(bob), HistoryQuery(peer_id=user.uid))
    assert [m.body for m in page.items] == ["ada to bob", "bob to ada"]
    # never found, not a recipient, not a profile
    assert await world.search(principal_of(bob), SearchQuery(query="Ada")) == []
    assert await world.search(principal_of(bob), SearchQuery(query="ada@example.com")) == []
    with pytest.raises(UserNotFoundError):
        await world.get_user(principal_of(bob), UserLookup(user_id=user.uid))
    with pytest.raises(UserNotFoundError):
        await world.send_message(principal_of(bob), Send(to=user.uid, body="hi", client_msg_id="late"))
    (conversation,) = (await world.list_conversations(principal_of(bob), PageRequest())).items
    assert conversation.peer.name == DELETED_NAME
    assert conversation.peer.online is None


@pytest.mark.parametrize("meanwhile", ["account deleted", "password changed"])
async def test_a_sign_in_that_races_a_deletion_or_a_password_change_leaves_no_login(
    world: World, meanwhile: str
) -> None:
    ada = await world.sign_up("Ada")
    gate = world.hasher.gate = asyncio.Event()
    attempt = asyncio.create_task(world.signed_in("ada@example.com"))
    await hashing(world, 1)  # the sign-in's password is being checked ...
    world.hasher.gate = None
    if meanwhile == "account deleted":  # ... while another request of the owner commits
        await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD))
    else:
        await world.change_password(
            principal_of(ada), PasswordChange(current_password=PASSWORD, new_password="new password 1")
        )
    live_before = sorted(sid for sid, login in world.store.data.logins.items() if login.active)
    gate.set()
    with pytest.raises(InvalidCredentialsError):
        await attempt
    assert sorted(sid for sid, login in world.store.data.logins.items() if login.active) == live_before


async def test_the_email_and_phone_of_a_deleted_account_register_again(world: World) -> None:
    registration = world.registration("Ada")
    ada = await world.register(registration)
    await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD))
    again = await world.register(registration)
    assert again.user.uid != ada.user.uid
    with pytest.raises(AuthenticationError):
        await world.signed_in("nobody@example.com")
    assert (await world.signed_in("ada@example.com")).user.uid == again.user.uid


async def test_erase_blanks_the_bodies_the_account_sent_and_nothing_else(world: World) -> None:
    ada = await world.sign_up("Ada")
    (bob,) = world.seed_users("Bob")
    await world.exchange(ada.user.uid, bob, 3)
    await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD, erase=True))
    bodies = [(m.sender_id, m.body) for m in world.store.messages_between(ada.user.uid, bob)]
    assert bodies == [(ada.user.uid, ""), (bob, "m2"), (ada.user.uid, "")]


async def test_a_deleted_account_is_not_deleted_twice(world: World) -> None:
    ada = await world.sign_up("Ada")
    await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD))
    with pytest.raises(UserNotFoundError):
        await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD))


# ---------------------------------------------------------------------------------------------
# Export


async def parts_of(world: World, user_id: int) -> list[ExportPart]:
    return [part async for part in await world.export_account.start(principal_of(user_id))]


async def test_the_export_is_every_section_in_order_a_page_at_a_time(world: World) -> None:
    ada = await world.sign_up("Ada")
    bob, cid, eve = world.seed_users("Bob", "Cid", "Eve")
    sent = await world.exchange(ada.user.uid, bob, 5)
    await world.exchange(ada.user.uid, cid, 2)
    world.store.block(ada.user.uid, eve)
    world.store.data.push_targets["t-ada"] = PushTarget(
        id="t-ada",
        user_id=ada.user.uid,
        login_id=ada.sid,
        kind="fcm",
        token="fcm-token",
        app_id="com.example.chat",
        label="Ada's phone",
        created_at=world.clock.now(),
    )

    parts = await parts_of(world, ada.user.uid)

    profile = parts[0]
    assert isinstance(profile, ProfilePart)
    assert (profile.user.uid, profile.user.email, profile.exported_at) == (
        ada.user.uid,
        "ada@example.com",
        world.clock.now(),
    )
    shape = [p.name if isinstance(p, ListStart) else type(p).__name__ for p in parts[1:]]
    assert shape == [
        "logins",
        "LoginPart",
        "ListEnd",
        "devices",
        "DevicePart",
        "ListEnd",
        "contacts",
        "PersonPart",
        "PersonPart",
        "ListEnd",
        "blocks",
        "PersonPart",
        "ListEnd",
        "conversations",
        "ConversationStart",
        "MessagesPart",  # pages of two
        "MessagesPart",
        "MessagesPart",
        "ConversationEnd",
        "ConversationStart",
        "MessagesPart",  # a full page, then an empty one: not yielded
        "ConversationEnd",
        "ListEnd",
    ]
    messages = [m for p in parts if isinstance(p, MessagesPart) for m in p.messages]
    assert [m.id for m in messages[:5]] == [m.id for m in sent]
    starts = [p for p in parts if isinstance(p, ConversationStart)]
    assert [(s.peer.uid, s.state.last_seq) for s in starts] == [(bob, 5), (cid, 2)]
    assert [p.user.uid for p in parts if isinstance(p, PersonPart)] == [bob, cid, eve]
    assert isinstance(parts[-1], ListEnd)
    assert sum(isinstance(p, ConversationEnd) for p in parts) == 2
    assert [p.login.id for p in parts if isinstance(p, LoginPart)] == [ada.sid]
    assert [p.target.id for p in parts if isinstance(p, DevicePart)] == ["t-ada"]


async def test_the_export_leaves_out_what_the_account_may_not_see(world: World) -> None:
    ada = await world.sign_up("Ada")
    (eve,) = world.seed_users("Eve")
    world.store.block(ada.user.uid, eve)
    await world.send(eve, ada.user.uid, "withheld")
    parts = await parts_of(world, ada.user.uid)
    assert [m for p in parts if isinstance(p, MessagesPart) for m in p.messages] == []


async def test_a_deleted_account_has_nothing_to_export(world: World) -> None:
    ada = await world.sign_up("Ada")
    await world.delete_account(principal_of(ada), AccountDeletion(password=PASSWORD))
    with pytest.raises(UserNotFoundError):
        await world.export_account.start(principal_of(ada))
