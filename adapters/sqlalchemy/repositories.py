"""SQLAlchemy implementations of the account-side repositories (users, logins, contacts, blocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from sqlalchemy import (
    CursorResult,
    and_,
    case,
    delete,
    exists,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy.fastpath import hot_sql
from adapters.sqlalchemy.fastpath.driver import Driver
from adapters.sqlalchemy.orm import blocks, contacts, logins, messages, push_jobs, push_targets, refresh_tokens, users
from adapters.sqlalchemy.upsert import upsert
from application.ports import (
    AccountRepository,
    BlockRepository,
    ContactRepository,
    LoginRepository,
    UserRepository,
)
from domain.auth import Login, RefreshToken
from domain.errors import EmailTakenError, PhoneTakenError
from domain.social import Relation
from domain.users import User

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession


def escape_like(text: str) -> str:
    """``%``, ``_`` and the escape character itself match literally (used with ``escape='\\'``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _blocked_either_way(a: int, other_id_column: object) -> object:
    """:attr:`domain.social.Relation.blocked_either_way` between ``a`` and each row's other user."""
    return exists().where(
        or_(
            and_(blocks.c.blocker_id == a, blocks.c.blocked_id == other_id_column),
            and_(blocks.c.blocker_id == other_id_column, blocks.c.blocked_id == a),
        )
    )


# Live accounts only: a deleted account's row stays (a tombstone) but is found by nothing.
_LIVE = users.c.deleted_at.is_(None)


class SqlAlchemyUserRepository(UserRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, user: User) -> None:
        self._session.add(user)
        try:
            await self._session.flush()
        except IntegrityError as exc:
            text = str(exc.orig)
            if "phone_number" in text:
                raise PhoneTakenError() from exc
            if "email_key" in text:
                raise EmailTakenError() from exc
            raise

    async def get(self, user_id: int) -> User | None:
        return await self._session.get(User, user_id)

    async def lock(self, user_id: int) -> User | None:
        # SELECT … FOR UPDATE on PostgreSQL; SQLite has no row locks (the dialect leaves the
        # clause out) and needs none: its BEGIN IMMEDIATE transactions already run one at a time.
        return await self._session.get(User, user_id, with_for_update=True, populate_existing=True)

    async def existing_ids(self, user_ids: Iterable[int]) -> set[int]:
        # Read every time, one primary-key probe per id (accounts can be deleted: decision 17);
        # a send batch's recipients, so at the driver level like the rest of the send path.
        ids = sorted(set(user_ids))
        if not ids:
            return set()
        driver = await Driver.of(self._session)
        return {uid for (uid,) in await driver.rows(hot_sql.LIVE_USERS_AMONG, driver.table([(i,) for i in ids], 1))}

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, User]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        result = await self._session.execute(select(User).where(users.c.id.in_(ids)))
        return {user.uid: user for user in result.scalars()}

    async def set_last_seen(self, user_id: int, at: datetime) -> None:
        await self._session.execute(update(users).where(users.c.id == user_id, _LIVE).values(last_seen_at=at))

    async def get_by_email_key(self, email_key: str) -> User | None:
        result = await self._session.execute(select(User).where(users.c.email_key == email_key, _LIVE))
        return result.scalar_one_or_none()

    async def get_by_phone(self, phone_number: str) -> User | None:
        result = await self._session.execute(select(User).where(users.c.phone_number == phone_number, _LIVE))
        return result.scalar_one_or_none()

    async def search(
        self, *, viewer_id: int, name_key: str, email_key: str, phone_number: str | None, limit: int
    ) -> list[User]:
        exact = users.c.email_key == email_key
        if phone_number is not None:
            exact = or_(exact, users.c.phone_number == phone_number)
        by_name = users.c.name_key.like(f"%{escape_like(name_key)}%", escape="\\")
        # Relation.may_find, in SQL: the limit applies to what the viewer may find.
        blocked_me = exists().where(blocks.c.blocker_id == users.c.id, blocks.c.blocked_id == viewer_id)
        stmt = (
            select(User)
            .where(or_(exact, by_name), users.c.id != viewer_id, _LIVE, ~blocked_me)
            .order_by(case((exact, 0), else_=1), users.c.name_key, users.c.id)
            .limit(limit)
        )
        return list((await self._session.execute(stmt)).scalars())


class SqlAlchemyLoginRepository(LoginRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, login: Login) -> None:
        self._session.add(login)
        await self._session.flush()

    async def get(self, login_id: str) -> Login | None:
        return await self._session.get(Login, login_id)

    async def lock(self, login_id: str) -> Login | None:
        return await self._session.get(Login, login_id, with_for_update=True, populate_existing=True)

    async def active_ids_of(self, user_id: int) -> list[str]:
        stmt = select(logins.c.id).where(logins.c.user_id == user_id, logins.c.revoked_at.is_(None))
        return list((await self._session.execute(stmt)).scalars())

    async def of_user(self, user_id: int, *, active_only: bool) -> list[Login]:
        stmt = select(Login).where(logins.c.user_id == user_id).order_by(logins.c.created_at, logins.c.id)
        if active_only:
            stmt = stmt.where(logins.c.revoked_at.is_(None))
        return list((await self._session.execute(stmt)).scalars())

    async def inactive_among(self, login_ids: Collection[str]) -> set[str]:
        if not login_ids:
            return set()
        stmt = select(logins.c.id).where(logins.c.id.in_(login_ids), logins.c.revoked_at.is_(None))
        return set(login_ids) - set((await self._session.execute(stmt)).scalars())

    async def add_refresh(self, token: RefreshToken) -> None:
        self._session.add(token)
        await self._session.flush()

    async def get_refresh(self, digest: str) -> RefreshToken | None:
        return await self._session.get(RefreshToken, digest)

    async def spend_refresh(self, digest: str, *, now: datetime) -> bool:
        # A conditional update: of two concurrent requests only one sees ``spent_at IS NULL``.
        stmt = (
            update(refresh_tokens)
            .where(refresh_tokens.c.digest == digest, refresh_tokens.c.spent_at.is_(None))
            .values(spent_at=now)
        )
        result = cast("CursorResult[object]", await self._session.execute(stmt))
        return result.rowcount == 1


class SqlAlchemyContactRepository(ContactRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_pairs(self, pairs: Iterable[tuple[int, int]]) -> None:
        rows = sorted({row for a, b in pairs for row in ((a, b), (b, a))})
        if rows:
            driver = await Driver.of(self._session)
            await driver.many(hot_sql.ADD_CONTACTS, rows, 2)

    async def list_contacts(self, user_id: int, *, after_id: int | None, limit: int) -> list[User]:
        # Live accounts only: a send that raced an account's deletion can make a contact of it again.
        stmt = (
            select(User).join(contacts, contacts.c.contact_id == users.c.id).where(contacts.c.user_id == user_id, _LIVE)
        )
        if after_id is not None:
            stmt = stmt.where(users.c.id > after_id)
        stmt = stmt.order_by(users.c.id).limit(limit)
        return list((await self._session.execute(stmt)).scalars())

    async def relations(self, user_id: int, others: Iterable[int]) -> dict[int, Relation]:
        ids = list(set(others))
        if not ids:
            return {}
        facts = union_all(
            select(contacts.c.contact_id, literal_column("'c'")).where(
                contacts.c.user_id == user_id, contacts.c.contact_id.in_(ids)
            ),
            select(blocks.c.blocked_id, literal_column("'i'")).where(
                blocks.c.blocker_id == user_id, blocks.c.blocked_id.in_(ids)
            ),
            select(blocks.c.blocker_id, literal_column("'m'")).where(
                blocks.c.blocked_id == user_id, blocks.c.blocker_id.in_(ids)
            ),
        )
        kinds: dict[int, set[str]] = {}
        for other, kind in await self._session.execute(facts):
            kinds.setdefault(other, set()).add(kind)
        return {
            other: Relation(contacts="c" in found, i_block="i" in found, blocks_me="m" in found)
            for other, found in kinds.items()
        }

    async def visible_contact_ids(self, user_id: int) -> list[int]:
        # Relation.presence_visible, in SQL (contacts: the join; no block either way: the filter).
        stmt = (
            select(contacts.c.contact_id)
            .where(
                contacts.c.user_id == user_id,
                ~_blocked_either_way(user_id, contacts.c.contact_id),  # type: ignore[operator]
            )
            .order_by(contacts.c.contact_id)
        )
        return list((await self._session.execute(stmt)).scalars())


class SqlAlchemyBlockRepository(BlockRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def among(self, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        wanted = sorted(set(pairs))
        if not wanted:
            return set()
        driver = await Driver.of(self._session)
        return {(a, b) for a, b in await driver.rows(hot_sql.BLOCKS_AMONG, driver.table(wanted, 2))}

    async def block(self, blocker_id: int, blocked_id: int, *, now: datetime) -> None:
        if blocker_id == blocked_id:
            raise ValueError("a user cannot block themself")
        stmt = (
            upsert(self._session, blocks)
            .values(blocker_id=blocker_id, blocked_id=blocked_id, created_at=now)
            .on_conflict_do_nothing(index_elements=["blocker_id", "blocked_id"])
        )
        await self._session.execute(stmt)

    async def unblock(self, blocker_id: int, blocked_id: int) -> None:
        await self._session.execute(
            delete(blocks).where(blocks.c.blocker_id == blocker_id, blocks.c.blocked_id == blocked_id)
        )

    async def blocked_by(self, blocker_id: int) -> list[User]:
        stmt = (
            select(User)
            .join(blocks, blocks.c.blocked_id == users.c.id)
            .where(blocks.c.blocker_id == blocker_id)
            .order_by(users.c.id)
        )
        return list((await self._session.execute(stmt)).scalars())


class SqlAlchemyAccountRepository(AccountRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def forget(self, user_id: int, *, erase_bodies: bool) -> None:
        execute = self._session.execute
        # Refresh tokens first: SQLite enforces ON DELETE CASCADE only with its foreign keys on.
        await execute(
            delete(refresh_tokens).where(
                refresh_tokens.c.login_id.in_(select(logins.c.id).where(logins.c.user_id == user_id))
            )
        )
        await execute(delete(logins).where(logins.c.user_id == user_id))
        await execute(delete(contacts).where(or_(contacts.c.user_id == user_id, contacts.c.contact_id == user_id)))
        await execute(delete(blocks).where(or_(blocks.c.blocker_id == user_id, blocks.c.blocked_id == user_id)))
        # Pending deliveries to the account are dropped: withheld, they are never pending again
        # and stay in their senders' history (undelivered).
        await execute(
            update(messages)
            .where(messages.c.recipient_id == user_id, messages.c.delivered_at.is_(None), ~messages.c.withheld)
            .values(withheld=True)
        )
        if erase_bodies:
            await execute(update(messages).where(messages.c.sender_id == user_id).values(body=""))
        # Its push targets and queued push jobs (explicitly: SQLite cascades only with its foreign
        # keys on; jobs *for* it go, jobs for its peers about messages it sent stay).
        await execute(delete(push_jobs).where(push_jobs.c.user_id == user_id))
        await execute(delete(push_targets).where(push_targets.c.user_id == user_id))
