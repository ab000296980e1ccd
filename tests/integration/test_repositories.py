"""The SQLAlchemy repositories and unit of work against SQLite and PostgreSQL (same test bodies)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.sqlalchemy.orm import blocks, contacts, users
from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from domain.auth import Login, RefreshToken
from domain.errors import EmailTakenError, PhoneTakenError
from domain.social import Relation
from domain.users import User, email_key, name_key, try_normalise_phone

UowFactory = Callable[[], SqlAlchemyUnitOfWork]
Sessions = async_sessionmaker[AsyncSession]

NOW = datetime(2026, 11, 24, 5, 20, 21, 89_000, tzinfo=UTC)
_phones = itertools.count(14155550100)


def new_user(name: str, email: str | None = None, phone: str | None = None) -> User:
    email = email or f"{name.replace(' ', '.').casefold()}.{next(_phones)}@example.com"
    return User(
        name=name,
        name_key=name_key(name),
        email=email,
        email_key=email_key(email),
        phone_number=phone or f"+{next(_phones)}",
        password_hash="$argon2id$not-a-real-hash",
        created_at=NOW,
    )


async def store(uow_factory: UowFactory, *new_users: User) -> list[int]:
    """Add the users in one committed transaction; their ids in the same order."""
    async with uow_factory() as uow:
        for user in new_users:
            await uow.users.add(user)
        await uow.commit()
    return [user.uid for user in new_users]


async def block(session_factory: Sessions, blocker_id: int, blocked_id: int) -> None:
    async with session_factory() as session:
        await session.execute(insert(blocks).values(blocker_id=blocker_id, blocked_id=blocked_id, created_at=NOW))
        await session.commit()


async def count(session_factory: Sessions, table: object, *where: object) -> int:
    async with session_factory() as session:
        stmt = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int((await session.execute(stmt)).scalar_one())


# --- users ------------------------------------------------------------------------------------


async def test_add_assigns_ids_and_the_user_reads_back(uow_factory: UowFactory) -> None:
    ann, bob = new_user("Ann", "Ann@Example.com", "+14155550001"), new_user("Bob")
    ann_id, bob_id = await store(uow_factory, ann, bob)
    assert ann_id > 0
    assert bob_id > 0
    assert ann_id != bob_id

    async with uow_factory() as uow:
        loaded = await uow.users.get(ann_id)
        assert loaded is not None
        assert loaded is not ann
        assert (loaded.id, loaded.name, loaded.name_key, loaded.email, loaded.email_key) == (
            ann_id,
            "Ann",
            "ann",
            "Ann@Example.com",
            "ann@example.com",
        )
        assert loaded.phone_number == "+14155550001"
        assert loaded.password_hash == ann.password_hash
        assert loaded.last_seen_at is None
        by_email = await uow.users.get_by_email_key("ann@example.com")
        by_phone = await uow.users.get_by_phone("+14155550001")
        assert by_email is loaded
        assert by_phone is loaded
        assert await uow.users.get(bob_id + 1000) is None
        assert await uow.users.get_by_email_key("nobody@example.com") is None
        assert await uow.users.get_by_phone("+19999999999") is None


async def test_a_taken_email_is_email_taken_error(uow_factory: UowFactory, session_factory: Sessions) -> None:
    await store(uow_factory, new_user("Ann", "ann@example.com"))
    async with uow_factory() as uow:
        with pytest.raises(EmailTakenError):
            await uow.users.add(new_user("Other Ann", "ANN@example.com"))
    assert await count(session_factory, users) == 1


async def test_a_taken_phone_is_phone_taken_error(uow_factory: UowFactory, session_factory: Sessions) -> None:
    await store(uow_factory, new_user("Ann", phone="+14155550001"))
    async with uow_factory() as uow:
        with pytest.raises(PhoneTakenError):
            await uow.users.add(new_user("Bob", phone="+14155550001"))
    assert await count(session_factory, users) == 1


@pytest.mark.parametrize(
    ("email", "phone"),
    [("phone_number@example.com", "+14155550002"), ("uq_users_phone_number@example.com", "+14155550003")],
)
async def test_which_value_is_taken_does_not_depend_on_the_values(
    uow_factory: UowFactory, email: str, phone: str
) -> None:
    """The error names the violated constraint, whatever text the conflicting values contain."""
    await store(uow_factory, new_user("Ann", email, "+14155550001"))
    async with uow_factory() as uow:
        with pytest.raises(EmailTakenError):
            await uow.users.add(new_user("Bob", email, phone))
    async with uow_factory() as uow:
        with pytest.raises(PhoneTakenError):
            await uow.users.add(new_user("Cid", "email_key@example.com", "+14155550001"))


async def test_two_concurrent_registrations_of_one_email_store_exactly_one(
    uow_factory: UowFactory, session_factory: Sessions
) -> None:
    async def register(phone: str) -> int:
        async with uow_factory() as uow:
            user = new_user("Ann", "ann@example.com", phone)
            await uow.users.add(user)
            await asyncio.sleep(0.2)  # keep the transaction open while the other one tries
            await uow.commit()
        return user.uid

    outcomes = await asyncio.gather(register("+14155550001"), register("+14155550002"), return_exceptions=True)

    assert sorted(type(o).__name__ for o in outcomes) == ["EmailTakenError", "int"]
    assert await count(session_factory, users, users.c.email_key == "ann@example.com") == 1


async def test_leaving_without_commit_rolls_back(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        await uow.users.add(new_user("Ann", "ann@example.com"))

    async def fail_midway() -> None:
        async with uow_factory() as uow:
            await uow.users.add(new_user("Bob", "bob@example.com"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_midway()

    async with uow_factory() as uow:
        assert await uow.users.get_by_email_key("ann@example.com") is None
        assert await uow.users.get_by_email_key("bob@example.com") is None


async def test_a_unit_of_work_is_reusable_one_transaction_after_another(uow_factory: UowFactory) -> None:
    uow = uow_factory()
    async with uow:
        await uow.users.add(new_user("Ann", "ann@example.com"))
        await uow.commit()
    async with uow:
        ann = await uow.users.get_by_email_key("ann@example.com")
        assert ann is not None
        ann.rename("  Ann Lee ")
        await uow.commit()
    async with uow:
        renamed = await uow.users.get_by_email_key("ann@example.com")
        assert renamed is not None
        assert (renamed.name, renamed.name_key) == ("Ann Lee", "ann lee")


async def test_datetimes_round_trip_as_aware_utc(uow_factory: UowFactory) -> None:
    plus_five = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2026, 1, 2, 3, 4, 5, 123_456, tzinfo=plus_five)
    seen = datetime(2026, 6, 30, 23, 59, 59, 999_999, tzinfo=UTC)
    user = new_user("Ann")
    user.created_at, user.last_seen_at = created, seen
    (user_id,) = await store(uow_factory, user)

    async with uow_factory() as uow:
        loaded = await uow.users.get(user_id)
    assert loaded is not None
    assert loaded.last_seen_at is not None
    assert loaded.created_at == created
    assert loaded.created_at.tzinfo is UTC
    assert loaded.created_at.isoformat() == "2026-01-01T21:34:05.123456+00:00"
    assert loaded.last_seen_at == seen
    assert loaded.last_seen_at.tzinfo is UTC


async def test_naive_datetimes_are_refused(uow_factory: UowFactory) -> None:
    user = new_user("Ann")
    user.created_at = datetime(2026, 1, 1)  # noqa: DTZ001 — the point of the test
    async with uow_factory() as uow:
        with pytest.raises(StatementError, match="naive datetime"):
            await uow.users.add(user)


# --- logins and refresh tokens ----------------------------------------------------------------


async def test_logins_and_their_active_ids(uow_factory: UowFactory) -> None:
    ann_id, bob_id = await store(uow_factory, new_user("Ann"), new_user("Bob"))
    async with uow_factory() as uow:
        for login_id, user_id in [("L1", ann_id), ("L2", ann_id), ("L3", ann_id), ("B1", bob_id)]:
            await uow.logins.add(Login(id=login_id, user_id=user_id, created_at=NOW))
        await uow.commit()

    async with uow_factory() as uow:
        login = await uow.logins.get("L2")
        assert login is not None
        assert login.active
        assert (login.user_id, login.created_at) == (ann_id, NOW)
        login.revoke(NOW + timedelta(minutes=1))
        await uow.commit()

    async with uow_factory() as uow:
        assert sorted(await uow.logins.active_ids_of(ann_id)) == ["L1", "L3"]
        assert await uow.logins.active_ids_of(bob_id) == ["B1"]
        assert await uow.logins.active_ids_of(bob_id + 1000) == []
        revoked = await uow.logins.get("L2")
        assert revoked is not None
        assert revoked.revoked_at == NOW + timedelta(minutes=1)
        assert await uow.logins.get("nope") is None


async def test_inactive_among_are_the_revoked_and_the_missing_in_one_query(uow_factory: UowFactory) -> None:
    """What the process's login sweep asks (issue 15, finding 2), a chunk of ids at a time."""
    ann_id, bob_id = await store(uow_factory, new_user("Ann"), new_user("Bob"))
    async with uow_factory() as uow:
        for login_id, user_id in [("L1", ann_id), ("L2", ann_id), ("B1", bob_id), ("B2", bob_id)]:
            await uow.logins.add(Login(id=login_id, user_id=user_id, created_at=NOW))
        await uow.commit()
    async with uow_factory() as uow:
        for login_id in ("L2", "B2"):
            login = await uow.logins.get(login_id)
            assert login is not None
            login.revoke(NOW + timedelta(minutes=1))
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.logins.inactive_among(["L1", "L2", "B1", "B2", "nope"]) == {"L2", "B2", "nope"}
        assert await uow.logins.inactive_among(["L1", "B1"]) == set()
        assert await uow.logins.inactive_among([]) == set()
        many = [f"x{i}" for i in range(500)] + ["L1"]  # a full chunk of the sweep, in one statement
        assert await uow.logins.inactive_among(many) == set(many) - {"L1"}


async def _login_with_token(uow_factory: UowFactory, digest: str = "d" * 64) -> RefreshToken:
    (ann_id,) = await store(uow_factory, new_user("Ann"))
    token = RefreshToken.issue(digest=digest, login_id="L1", now=NOW, ttl_s=3600)
    async with uow_factory() as uow:
        await uow.logins.add(Login(id="L1", user_id=ann_id, created_at=NOW))
        await uow.logins.add_refresh(token)
        await uow.commit()
    return token


async def test_refresh_tokens_read_back_and_are_spent_once(uow_factory: UowFactory) -> None:
    token = await _login_with_token(uow_factory)
    spent_at = NOW + timedelta(seconds=5)

    async with uow_factory() as uow:
        loaded = await uow.logins.get_refresh(token.digest)
        assert loaded is not None
        assert (loaded.login_id, loaded.issued_at, loaded.expires_at, loaded.spent_at) == (
            "L1",
            NOW,
            NOW + timedelta(hours=1),
            None,
        )
        assert await uow.logins.spend_refresh(token.digest, now=spent_at) is True
        assert await uow.logins.spend_refresh(token.digest, now=spent_at) is False
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.logins.spend_refresh(token.digest, now=spent_at) is False
        assert await uow.logins.spend_refresh("unknown", now=spent_at) is False
        again = await uow.logins.get_refresh(token.digest)
        assert again is not None
        assert again.spent_at == spent_at
        assert await uow.logins.get_refresh("unknown") is None


async def test_an_uncommitted_spend_is_undone(uow_factory: UowFactory) -> None:
    token = await _login_with_token(uow_factory)
    async with uow_factory() as uow:
        assert await uow.logins.spend_refresh(token.digest, now=NOW) is True
    async with uow_factory() as uow:
        assert await uow.logins.spend_refresh(token.digest, now=NOW) is True


async def test_two_concurrent_spends_of_one_refresh_token_succeed_once(uow_factory: UowFactory) -> None:
    token = await _login_with_token(uow_factory)

    async def spend() -> bool:
        async with uow_factory() as uow:
            spent = await uow.logins.spend_refresh(token.digest, now=NOW)
            await asyncio.sleep(0.2)  # keep the transaction open while the other one tries
            await uow.commit()
        return spent

    assert sorted(await asyncio.gather(spend(), spend())) == [False, True]


# --- contacts and blocks ----------------------------------------------------------------------


async def test_add_pair_is_symmetric_and_idempotent(uow_factory: UowFactory, session_factory: Sessions) -> None:
    ann_id, bob_id, cid_id = await store(uow_factory, new_user("Ann"), new_user("Bob"), new_user("Cid"))
    async with uow_factory() as uow:
        await uow.contacts.add_pairs([(ann_id, bob_id)])
        await uow.contacts.add_pairs([(ann_id, bob_id)])
        await uow.commit()
    async with uow_factory() as uow:
        await uow.contacts.add_pairs([(bob_id, ann_id)])
        await uow.commit()

    assert await count(session_factory, contacts) == 2
    async with uow_factory() as uow:
        assert [u.uid for u in await uow.contacts.list_contacts(ann_id, after_id=None, limit=10)] == [bob_id]
        assert [u.uid for u in await uow.contacts.list_contacts(bob_id, after_id=None, limit=10)] == [ann_id]
        assert await uow.contacts.list_contacts(cid_id, after_id=None, limit=10) == []


async def test_list_contacts_pages_by_id(uow_factory: UowFactory) -> None:
    ann_id, *others = await store(uow_factory, *(new_user(n) for n in ["Ann", "Zed", "Bob", "Yan", "Cid", "Wu", "Xia"]))
    stranger = others.pop()
    async with uow_factory() as uow:
        for other in reversed(others):
            await uow.contacts.add_pairs([(other, ann_id)])
        await uow.commit()

    async with uow_factory() as uow:
        pages: list[list[int]] = []
        after: int | None = None
        while True:
            page = [u.uid for u in await uow.contacts.list_contacts(ann_id, after_id=after, limit=2)]
            if not page:
                break
            pages.append(page)
            after = page[-1]
    assert pages == [others[0:2], others[2:4], others[4:]]
    assert all(stranger not in page for page in pages)


async def test_relations_are_the_contacts_and_blocks_seen_from_the_user(
    uow_factory: UowFactory, session_factory: Sessions
) -> None:
    ann, bob, cid, dan, eve = await store(uow_factory, *(new_user(n) for n in ["Ann", "Bob", "Cid", "Dan", "Eve"]))
    async with uow_factory() as uow:
        for other in (bob, cid, dan):
            await uow.contacts.add_pairs([(ann, other)])
        await uow.commit()
    await block(session_factory, ann, cid)  # Ann blocked Cid
    await block(session_factory, dan, ann)  # Dan blocked Ann
    await block(session_factory, bob, eve)  # unrelated to Ann
    await block(session_factory, eve, ann)  # Eve blocked Ann, no contacts

    async with uow_factory() as uow:
        assert await uow.contacts.relations(ann, [bob, cid, dan, eve, ann, bob]) == {
            bob: Relation(contacts=True),
            cid: Relation(contacts=True, i_block=True),
            dan: Relation(contacts=True, blocks_me=True),
            eve: Relation(blocks_me=True),
        }
        assert await uow.contacts.relations(bob, [ann]) == {ann: Relation(contacts=True)}
        assert await uow.contacts.relations(cid, [ann]) == {ann: Relation(contacts=True, blocks_me=True)}
        assert await uow.contacts.relations(eve, [ann, bob, cid]) == {
            ann: Relation(i_block=True),
            bob: Relation(blocks_me=True),
        }
        assert await uow.contacts.relations(cid, [eve, dan]) == {}
        assert await uow.contacts.relations(ann, []) == {}
        assert await uow.contacts.relations(ann, iter([bob])) == {bob: Relation(contacts=True)}


# --- search -----------------------------------------------------------------------------------


async def search(uow_factory: UowFactory, viewer_id: int, query: str, limit: int = 50) -> list[str]:
    """The names found for ``query`` the way the search use case asks (contract §5)."""
    async with uow_factory() as uow:
        found = await uow.users.search(
            viewer_id=viewer_id,
            name_key=name_key(query),
            email_key=email_key(query),
            phone_number=try_normalise_phone(query),
            limit=limit,
        )
    return [u.name for u in found]


async def test_search_by_name_is_a_case_insensitive_substring_via_casefold(uow_factory: UowFactory) -> None:
    me, *_ = await store(
        uow_factory, *(new_user(n) for n in ["Viewer", "Hauptstraße 1", "STRASSENBAHN", "Strand", "ΣΊΣΥΦΟΣ"])
    )
    assert await search(uow_factory, me, "STRASSE") == ["Hauptstraße 1", "STRASSENBAHN"]
    assert await search(uow_factory, me, "straße") == ["Hauptstraße 1", "STRASSENBAHN"]
    assert await search(uow_factory, me, "σίσυφος") == ["ΣΊΣΥΦΟΣ"]
    assert await search(uow_factory, me, "tra") == ["Hauptstraße 1", "Strand", "STRASSENBAHN"]
    assert await search(uow_factory, me, "xyz") == []


async def test_search_treats_like_wildcards_and_backslash_literally(uow_factory: UowFactory) -> None:
    me, *_ = await store(
        uow_factory,
        *(new_user(n) for n in ["Viewer", "100% sure", "1000 sure", "snake_case", "snakeXcase", "back\\slash", "bs"]),
    )
    assert await search(uow_factory, me, "0%") == ["100% sure"]
    assert await search(uow_factory, me, "%") == ["100% sure"]
    assert await search(uow_factory, me, "%%") == []
    assert await search(uow_factory, me, "e_c") == ["snake_case"]
    assert await search(uow_factory, me, "_") == ["snake_case"]
    assert await search(uow_factory, me, "k\\s") == ["back\\slash"]
    assert await search(uow_factory, me, "\\") == ["back\\slash"]
    assert await search(uow_factory, me, "\\%") == []


async def test_search_matches_email_and_phone_only_exactly(uow_factory: UowFactory) -> None:
    me, *_ = await store(
        uow_factory,
        new_user("Viewer"),
        new_user("Ann", "Ann.Lee@Example.com", "+14155550001"),
        new_user("Bob", "bob@example.com", "+14155550002"),
    )
    assert await search(uow_factory, me, " ANN.lee@example.COM ") == ["Ann"]
    assert await search(uow_factory, me, "ann.lee@example") == []
    assert await search(uow_factory, me, "example.com") == []
    assert await search(uow_factory, me, "+1 (415) 555-0002") == ["Bob"]
    assert await search(uow_factory, me, "0014155550002") == ["Bob"]
    assert await search(uow_factory, me, "+1415555000") == []
    assert await search(uow_factory, me, "5550002") == []


async def test_search_orders_exact_matches_first_then_by_name_then_id(uow_factory: UowFactory) -> None:
    me, zed_exact, _, _, zed_1, zed_2, _ = await store(
        uow_factory,
        new_user("Viewer"),
        new_user("Zoë", "zed@example.com", "+14155550001"),
        new_user("zed@example.com fan"),
        new_user("a zed@example.com fan"),
        new_user("Zed"),
        new_user("zed"),
        new_user("Ωmega", phone="+14155550003"),
    )
    assert await search(uow_factory, me, "zed@example.com") == ["Zoë", "a zed@example.com fan", "zed@example.com fan"]

    async with uow_factory() as uow:
        found = await uow.users.search(
            viewer_id=me, name_key="zed", email_key="zed@example.com", phone_number="+14155550003", limit=50
        )
    # Exact matches (email or phone) first, by name; then name matches by name, then id.
    assert [u.name for u in found] == [
        "Zoë",
        "Ωmega",
        "a zed@example.com fan",
        "Zed",
        "zed",
        "zed@example.com fan",
    ]
    assert [u.uid for u in found][3:5] == [zed_1, zed_2]
    assert zed_exact == found[0].uid


async def test_search_orders_names_by_code_point_on_every_backend(uow_factory: UowFactory) -> None:
    me, *_ = await store(
        uow_factory, *(new_user(n) for n in ["Viewer", "émile x", "Eve x", "zoë x", "ångström x", "Zed-a x", "Zeda x"])
    )
    assert await search(uow_factory, me, " x") == ["Eve x", "Zed-a x", "Zeda x", "zoë x", "ångström x", "émile x"]


async def test_search_excludes_the_viewer_and_users_who_blocked_the_viewer(
    uow_factory: UowFactory, session_factory: Sessions
) -> None:
    me, ann, annabel, joanna = await store(
        uow_factory,
        new_user("Anna Viewer", "viewer@example.com"),
        new_user("Ann", "ann@example.com"),
        new_user("Annabel", "annabel@example.com"),
        new_user("Joanna", "joanna@example.com"),
    )
    await block(session_factory, annabel, me)  # Annabel blocked the viewer: she is hidden
    await block(session_factory, me, joanna)  # the viewer blocked Joanna: she is still found

    assert await search(uow_factory, me, "ann") == ["Ann", "Joanna"]
    assert await search(uow_factory, me, "annabel@example.com") == []
    assert await search(uow_factory, me, "viewer@example.com") == []
    assert await search(uow_factory, ann, "ann") == ["Anna Viewer", "Annabel", "Joanna"]
    assert ann != joanna


async def test_search_returns_at_most_limit_users(uow_factory: UowFactory) -> None:
    me, *_ = await store(uow_factory, new_user("Viewer"), *(new_user(f"Ann {i:02}") for i in range(12)))
    assert await search(uow_factory, me, "ann", limit=5) == [f"Ann {i:02}" for i in range(5)]
