"""The fakes keep the promises of the ports, so the use-case tests above them mean something."""

from __future__ import annotations

import pytest

from application.ports import TokenService
from domain.auth import AttemptWindow, Login, RefreshToken
from domain.errors import BusyError, EmailTakenError, InvalidTokenError, PhoneTakenError
from domain.users import Registration, User
from tests.unit.fakes import (
    EPOCH,
    FakePasswordHasher,
    FakePresence,
    FakeTokenService,
    FakeUnitOfWork,
    FixedClock,
    InMemoryAttemptCounter,
    InMemoryStore,
    SequentialIds,
)


def new_user(name: str, email: str, phone: str) -> User:
    data = Registration.parse(name=name, email=email, phone_number=phone, password="password1")
    return User.register(data, password_hash="h", now=EPOCH)


# --- unit of work -----------------------------------------------------------------------------


async def test_committed_changes_are_visible_to_the_next_unit_of_work() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        await uow.users.add(new_user("Ada", "ada@example.com", "+14155550100"))
        await uow.commit()

    async with store.unit_of_work() as uow:
        assert (await uow.users.get(1)) is not None
    assert store.commits == 1


async def test_changes_without_commit_are_discarded() -> None:
    store = InMemoryStore()
    ada = store.seed_user("Ada")
    async with store.unit_of_work() as uow:
        await uow.users.add(new_user("Bob", "bob@example.com", "+14155550100"))
        user = await uow.users.get(ada.uid)
        assert user is not None
        user.rename("Changed")

    assert [u.name for u in store.data.users.values()] == ["Ada"]
    assert store.commits == 0


async def test_changes_after_a_commit_are_discarded_unless_committed_again() -> None:
    store = InMemoryStore()
    ada = store.seed_user("Ada")
    async with store.unit_of_work() as uow:
        user = await uow.users.get(ada.uid)
        assert user is not None
        user.rename("First")
        await uow.commit()
        user.rename("Second")

    assert store.user(ada.uid).name == "First"


async def test_an_error_inside_the_block_rolls_back() -> None:
    store = InMemoryStore()
    uow = FakeUnitOfWork(store)

    async def pair_then_fail() -> None:
        async with uow:
            await uow.contacts.add_pair(1, 2)
            raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await pair_then_fail()

    assert store.data.contacts == set()
    assert uow.commits == 0


async def test_repositories_refuse_use_outside_an_open_unit_of_work() -> None:
    uow = InMemoryStore().unit_of_work()
    with pytest.raises(RuntimeError):
        await uow.users.get(1)
    async with uow:
        pass
    with pytest.raises(RuntimeError):
        await uow.logins.get("s")


async def test_a_unit_of_work_may_be_reused_but_not_nested() -> None:
    uow = InMemoryStore().unit_of_work()
    async with uow:
        with pytest.raises(RuntimeError):
            await uow.__aenter__()
    async with uow:
        await uow.commit()
    assert uow.commits == 1


# --- users ------------------------------------------------------------------------------------


async def test_user_ids_are_assigned_and_emails_and_phones_are_unique() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        ada = new_user("Ada", "ada@example.com", "+14155550100")
        await uow.users.add(ada)
        assert ada.id == 1
        with pytest.raises(EmailTakenError):
            await uow.users.add(new_user("Ada2", "ADA@example.com", "+14155550101"))
        with pytest.raises(PhoneTakenError):
            await uow.users.add(new_user("Ada3", "ada3@example.com", "+14155550100"))
        assert await uow.users.get_by_email_key("ada@example.com") is ada
        assert await uow.users.get_by_phone("+14155550100") is ada


async def test_user_search_follows_the_documented_semantics() -> None:
    store = InMemoryStore()
    viewer = store.seed_user("Viewer")
    exact = store.seed_user("Zed", email="zed@example.com")
    b = store.seed_user("b_x%")
    a = store.seed_user("a_x%")
    store.seed_user("abx%")
    blocker = store.seed_user("c_x%")
    store.block(blocker.uid, viewer.uid)
    async with store.unit_of_work() as uow:
        found = await uow.users.search(
            viewer_id=viewer.uid, name_key="_x%", email_key="zed@example.com", phone_number=None, limit=10
        )
        limited = await uow.users.search(
            viewer_id=viewer.uid, name_key="_x%", email_key="zed@example.com", phone_number=None, limit=2
        )

    assert [u.uid for u in found] == [exact.uid, a.uid, b.uid]
    assert [u.uid for u in limited] == [exact.uid, a.uid]


# --- logins -----------------------------------------------------------------------------------


async def test_refresh_tokens_can_be_spent_only_once() -> None:
    store = InMemoryStore()
    async with store.unit_of_work() as uow:
        await uow.logins.add(Login(id="s1", user_id=1, created_at=EPOCH))
        await uow.logins.add_refresh(RefreshToken.issue(digest="d", login_id="s1", now=EPOCH, ttl_s=60))
        assert await uow.logins.spend_refresh("d", now=EPOCH)
        assert not await uow.logins.spend_refresh("d", now=EPOCH)
        assert not await uow.logins.spend_refresh("unknown", now=EPOCH)
        assert await uow.logins.active_ids_of(1) == ["s1"]


# --- contacts ---------------------------------------------------------------------------------


async def test_contacts_are_symmetric_and_visibility_needs_no_block_either_way() -> None:
    store = InMemoryStore()
    me, friend, blocked, blocker, stranger = (store.seed_user(n).uid for n in ["Me", "F", "Bd", "Br", "S"])
    async with store.unit_of_work() as uow:
        for other in (friend, blocked, blocker):
            await uow.contacts.add_pair(other, me)
        await uow.contacts.add_pair(me, friend)  # idempotent
        await uow.commit()
    store.block(me, blocked)
    store.block(blocker, me)

    async with store.unit_of_work() as uow:
        listed = [u.uid for u in await uow.contacts.list_contacts(me, after_id=None, limit=10)]
        visible = await uow.contacts.visible_among(me, [friend, blocked, blocker, stranger, me])
        from_friend = await uow.contacts.visible_among(friend, [me])

    assert listed == [friend, blocked, blocker]
    assert visible == {friend}
    assert from_friend == {me}


# --- the small fakes --------------------------------------------------------------------------


def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock()
    assert clock.now() == clock.now() == EPOCH
    assert clock.advance(1.5) == clock.now()
    clock.set(EPOCH)
    assert clock.now() == EPOCH


def test_sequential_ids_are_unique_and_ordered() -> None:
    ids = SequentialIds()
    made = [ids.new_id() for _ in range(3)]
    assert made == sorted(made)
    assert len(set(made)) == 3


async def test_fake_hasher_verifies_its_own_hashes_and_records_dummy_checks() -> None:
    hasher = FakePasswordHasher()
    hashed = await hasher.hash("secret pw")

    assert await hasher.verify("secret pw", hashed)
    assert not await hasher.verify("other pw", hashed)
    assert not await hasher.verify("secret pw", None)
    assert (hasher.hash_calls, hasher.verify_calls, hasher.dummy_verifications) == (1, 3, 1)
    hasher.busy = True
    with pytest.raises(BusyError):
        await hasher.hash("x")
    with pytest.raises(BusyError):
        await hasher.verify("x", hashed)


def test_fake_tokens_verify_only_their_own_unexpired_tokens() -> None:
    tokens: TokenService = FakeTokenService(access_ttl_s=60)
    issued = tokens.issue_access(user_id=1, sid="s", now=EPOCH)

    claims = tokens.verify_access(issued.token, now=EPOCH)
    assert (claims.user_id, claims.sid, claims.expires_at) == (1, "s", issued.expires_at)
    with pytest.raises(InvalidTokenError):
        tokens.verify_access(issued.token, now=issued.expires_at)
    with pytest.raises(InvalidTokenError):
        tokens.verify_access("access-999", now=EPOCH)
    raw = tokens.new_refresh_secret()
    assert raw != tokens.new_refresh_secret()
    assert tokens.refresh_digest(raw) != raw


async def test_attempt_counter_keeps_fixed_windows() -> None:
    counter = InMemoryAttemptCounter()
    first = await counter.hit("k", now=EPOCH, window_s=60)
    assert await counter.hit("k", now=EPOCH, window_s=60) == AttemptWindow(count=2, started_at=EPOCH)
    assert await counter.get("k", now=EPOCH, window_s=60) == AttemptWindow(count=2, started_at=EPOCH)

    later = FixedClock(EPOCH)
    later.advance(60)
    assert await counter.get("k", now=later.now(), window_s=60) is None
    assert await counter.hit("k", now=later.now(), window_s=60) == AttemptWindow(count=1, started_at=later.now())
    await counter.reset("k")
    assert await counter.get("k", now=later.now(), window_s=60) is None
    assert first.count == 1


async def test_fake_presence_answers_only_about_the_ids_asked() -> None:
    presence = FakePresence(online={1, 2})

    assert await presence.online_among([2, 3]) == {2}
    assert presence.asked == [{2, 3}]
