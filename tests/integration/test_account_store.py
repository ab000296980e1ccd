"""The store's side of an account's life — a deleted account (``User.erase`` and
``AccountRepository.forget``), the logins of a user, the peers of a user's conversations — the same
test bodies on the SQLAlchemy store (SQLite through both drivers, PostgreSQL) and on the fake."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.auth import Login, RefreshToken
from domain.messages import Pair
from domain.users import DELETED_NAME
from tests.integration.conftest import sql_unit_of_work_factory
from tests.integration.test_message_store import FAKE, NOW, SQL_BACKENDS, Sessions, UowFactory, add_users, draft
from tests.unit.fakes import InMemoryStore


@pytest.fixture(params=[*SQL_BACKENDS, FAKE])
def backend(request: pytest.FixtureRequest) -> str:
    """As in ``test_message_store``: SQLite through both drivers, PostgreSQL, and the fake."""
    name: str = request.param
    return name


@pytest.fixture
def uow_factory(backend: str, request: pytest.FixtureRequest) -> UowFactory:
    if backend == FAKE:
        return InMemoryStore().unit_of_work
    sessions: Sessions = request.getfixturevalue("session_factory")
    return sql_unit_of_work_factory(sessions)


async def add_login(uow_factory: UowFactory, user_id: int, sid: str, *, minutes: int = 0) -> None:
    async with uow_factory() as uow:
        await uow.logins.add(Login(id=sid, user_id=user_id, created_at=NOW + timedelta(minutes=minutes), client="c"))
        await uow.logins.add_refresh(RefreshToken.issue(digest=f"d-{sid}", login_id=sid, now=NOW, ttl_s=60))
        await uow.commit()


async def test_a_deleted_account_is_forgotten_but_its_conversations_stay(uow_factory: UowFactory) -> None:
    ann, bob, cid = await add_users(uow_factory, "Annika", "Bob", "Cid")
    await add_login(uow_factory, ann, "ann-1")
    await add_login(uow_factory, bob, "bob-1")
    async with uow_factory() as uow:
        appended = await uow.conversations.append(
            [draft(ann, bob, "from ann"), draft(bob, ann, "from bob"), draft(ann, bob, "again")]
        )
        await uow.contacts.add_pairs([(ann, bob)])
        await uow.blocks.block(cid, ann, now=NOW)
        await uow.blocks.block(ann, cid, now=NOW)
        await uow.commit()
    async with uow_factory() as uow:
        user = await uow.users.get(ann)
        assert user is not None
        email, phone = user.email_key, user.phone_number
        user.erase(NOW)
        await uow.accounts.forget(ann, erase_bodies=True)
        await uow.commit()

    async with uow_factory() as uow:
        tombstone = await uow.users.get(ann)
        assert tombstone is not None
        assert (tombstone.name, tombstone.deleted_at, tombstone.email_key) == (DELETED_NAME, NOW, f"~{ann}")
        assert await uow.users.existing_ids([ann, bob, cid]) == {bob, cid}
        assert await uow.users.get_by_email_key(email) is None
        assert await uow.users.get_by_phone(phone) is None
        assert await uow.users.get_by_email_key(f"~{ann}") is None  # the placeholders find nothing either
        assert await uow.users.get_by_phone(f"~{ann}") is None
        for query in ("annika", "deleted account", f"~{ann}"):
            found = await uow.users.search(viewer_id=bob, name_key=query, email_key=query, phone_number=None, limit=9)
            assert found == []
        assert await uow.logins.get("ann-1") is None
        assert await uow.logins.of_user(ann, active_only=False) == []
        assert await uow.logins.inactive_among(["ann-1", "bob-1"]) == {"ann-1"}
        assert await uow.logins.get_refresh("d-ann-1") is None
        assert await uow.logins.get_refresh("d-bob-1") is not None
        assert await uow.contacts.list_contacts(bob, after_id=None, limit=9) == []
        assert await uow.contacts.relations(cid, [ann]) == {}
        assert await uow.blocks.among([(cid, ann), (ann, cid)]) == set()
        assert await uow.messages.pending_for(ann, limit=9) == []  # dropped
        assert [m.body for m in await uow.messages.pending_for(bob, limit=9)] == ["", ""]  # still bob's
        history = await uow.messages.history(bob, Pair.of(ann, bob), before=None, after=0, limit=9)
        assert [(m.id, m.body) for m in history] == [
            (appended[0].message.id, ""),
            (appended[1].message.id, "from bob"),
            (appended[2].message.id, ""),
        ]
        assert await uow.conversations.peers_of(bob, after_id=None, limit=9) == [ann]
        state = await uow.conversations.state(bob, ann)
        assert state is not None
        assert state.last_seq == 3


async def test_a_contact_made_again_after_the_deletion_is_not_listed(uow_factory: UowFactory) -> None:
    """A send racing the deletion may add the pair after ``forget`` removed it: still no contact."""
    ann, bob = await add_users(uow_factory, "Annika", "Bob")
    async with uow_factory() as uow:
        user = await uow.users.get(ann)
        assert user is not None
        user.erase(NOW)
        await uow.accounts.forget(ann, erase_bodies=False)
        await uow.commit()
    async with uow_factory() as uow:
        await uow.contacts.add_pairs([(ann, bob)])
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.contacts.list_contacts(bob, after_id=None, limit=10) == []


async def test_without_erase_the_bodies_stay(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    async with uow_factory() as uow:
        await uow.conversations.append([draft(ann, bob, "kept")])
        await uow.commit()
    async with uow_factory() as uow:
        await uow.accounts.forget(ann, erase_bodies=False)
        await uow.commit()
    async with uow_factory() as uow:
        history = await uow.messages.history(bob, Pair.of(ann, bob), before=None, after=None, limit=9)
    assert [m.body for m in history] == ["kept"]


async def test_logins_of_a_user_oldest_first_and_the_live_ones(uow_factory: UowFactory) -> None:
    ann, bob = await add_users(uow_factory, "Ann", "Bob")
    await add_login(uow_factory, ann, "z-first", minutes=0)
    await add_login(uow_factory, ann, "a-second", minutes=1)
    await add_login(uow_factory, ann, "m-third", minutes=2)
    await add_login(uow_factory, bob, "bob")
    async with uow_factory() as uow:
        second = await uow.logins.get("a-second")
        assert second is not None
        second.revoke(NOW)
        await uow.commit()
    async with uow_factory() as uow:
        every = await uow.logins.of_user(ann, active_only=False)
        live = await uow.logins.of_user(ann, active_only=True)
    assert [login.id for login in every] == ["z-first", "a-second", "m-third"]
    assert [login.id for login in live] == ["z-first", "m-third"]
    assert every[0].client == "c"


async def test_the_peers_of_a_users_conversations_page_by_id(uow_factory: UowFactory) -> None:
    ann, *others = await add_users(uow_factory, "Ann", "B", "C", "D", "E")
    async with uow_factory() as uow:
        await uow.conversations.append([draft(ann, others[2]), draft(others[0], ann), draft(ann, others[3])])
        await uow.commit()
    async with uow_factory() as uow:
        first = await uow.conversations.peers_of(ann, after_id=None, limit=2)
        rest = await uow.conversations.peers_of(ann, after_id=first[-1], limit=2)
        theirs = await uow.conversations.peers_of(others[1], after_id=None, limit=2)
    assert first + rest == sorted([others[0], others[2], others[3]])
    assert theirs == []
