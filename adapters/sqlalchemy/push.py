"""The push targets and the push outbox, in SQLAlchemy Core.

The send path's write (:meth:`SqlAlchemyPushTargetRepository.queue_pushes`) is one driver-level
statement (:data:`adapters.sqlalchemy.fastpath.hot_sql.QUEUE_PUSHES`) that inserts a job only for
a recipient with a push target. The dispatcher's side (:class:`SqlAlchemyPushOutbox`) runs each
method in its own transaction. Claims lock the jobs they take with ``FOR UPDATE … SKIP LOCKED`` on
PostgreSQL (several processes never take one job at once; SQLite's ``BEGIN IMMEDIATE`` serialises
writers) and lease them: a process that dies mid-send leaves jobs that become free again when the
lease ends.

A login's targets are deleted in the transaction that revokes it, whichever use case does it:
:func:`drop_targets_of_revoked` runs before every flush of a session that changed a login's
``revoked_at``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, case, delete, func, or_, select, type_coerce, update
from sqlalchemy.orm import Session

from adapters.sqlalchemy.fastpath import hot_sql
from adapters.sqlalchemy.fastpath.driver import Driver
from adapters.sqlalchemy.orm import UtcDateTime, messages, push_jobs, push_targets, users
from adapters.sqlalchemy.upsert import upsert
from application.ports import Notification, PushMessage, PushOutbox, PushTargetRepository
from domain.auth import Login
from domain.push import PushTarget, TargetKind, Waiting

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_TARGET_COLUMNS = (
    push_targets.c.id,
    push_targets.c.user_id,
    push_targets.c.login_id,
    push_targets.c.kind,
    push_targets.c.token,
    push_targets.c.app_id,
    push_targets.c.label,
    push_targets.c.created_at,
)


def _target(row: Any) -> PushTarget:
    return PushTarget(
        id=row.id,
        user_id=row.user_id,
        login_id=row.login_id,
        kind=cast("TargetKind", row.kind),
        token=row.token,
        app_id=row.app_id,
        label=row.label,
        created_at=row.created_at,
    )


class SqlAlchemyPushTargetRepository(PushTargetRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, target: PushTarget) -> PushTarget:
        stmt = upsert(self._session, push_targets).values(
            id=target.id,
            user_id=target.user_id,
            login_id=target.login_id,
            kind=target.kind,
            token=target.token,
            app_id=target.app_id,
            label=target.label,
            created_at=target.created_at,
        )
        returning = stmt.on_conflict_do_update(
            index_elements=["app_id", "token"],
            set_={
                "user_id": stmt.excluded.user_id,
                "login_id": stmt.excluded.login_id,
                "kind": stmt.excluded.kind,
                "label": stmt.excluded.label,
                "created_at": stmt.excluded.created_at,
            },
        ).returning(*_TARGET_COLUMNS)
        return _target((await self._session.execute(returning)).one())

    async def of_user(self, user_id: int) -> list[PushTarget]:
        stmt = (
            select(*_TARGET_COLUMNS)
            .where(push_targets.c.user_id == user_id)
            .order_by(push_targets.c.created_at, push_targets.c.id)
        )
        return [_target(row) for row in await self._session.execute(stmt)]

    async def count_of_login(self, login_id: str) -> int:
        stmt = select(func.count()).select_from(push_targets).where(push_targets.c.login_id == login_id)
        return int((await self._session.execute(stmt)).scalar_one())

    async def remove(self, user_id: int, target_id: str) -> bool:
        stmt = delete(push_targets).where(push_targets.c.id == target_id, push_targets.c.user_id == user_id)
        result = cast("CursorResult[object]", await self._session.execute(stmt))
        return result.rowcount == 1

    async def queue_pushes(self, jobs: Sequence[tuple[str, int]], *, now: datetime, due: datetime) -> None:
        driver = await Driver.of(self._session)
        at = driver.stamp(now)
        await driver.rows(hot_sql.QUEUE_PUSHES, (at, driver.stamp(due), at, *driver.table(jobs, 2)))


def drop_targets_of_revoked(session: Session, _context: object, _instances: object) -> None:
    """``before_flush``: delete the push targets of the logins this flush revokes."""
    revoked = [obj.id for obj in session.dirty if isinstance(obj, Login) and obj.revoked_at is not None]
    if revoked:
        session.connection().execute(delete(push_targets).where(push_targets.c.login_id.in_(revoked)))


class ChatSession(Session):
    """The ORM session of the store's units of work (:func:`drop_targets_of_revoked` listens to it)."""


class SqlAlchemyPushOutbox(PushOutbox):
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def waiting(self, *, now: datetime, fresh_before: datetime, limit: int) -> list[Waiting]:
        j = push_jobs
        fresh = j.c.push_id.is_(None)
        stmt = (
            select(
                j.c.user_id,
                type_coerce(func.min(case((fresh, j.c.created_at))), UtcDateTime()).label("oldest"),
                type_coerce(func.min(case((fresh, j.c.due_at))), UtcDateTime()).label("earliest_due"),
                func.count(j.c.push_id).label("claimed"),
            )
            .where(j.c.lease_until <= now, or_(j.c.push_id.is_not(None), j.c.created_at <= fresh_before))
            .group_by(j.c.user_id)
            .order_by(func.min(j.c.due_at), j.c.user_id)
            .limit(limit)
        )
        async with self._session_factory() as session:
            rows = (await session.execute(stmt)).all()
        return [
            Waiting(user_id=r.user_id, oldest=r.oldest, earliest_due=r.earliest_due, retry=r.claimed > 0) for r in rows
        ]

    async def claim(
        self,
        *,
        fresh: Collection[int],
        retry: Collection[int],
        now: datetime,
        lease_until: datetime,
        new_id: Callable[[], str],
    ) -> list[Notification]:
        j = push_jobs
        wanted = []
        if fresh:
            wanted.append(and_(j.c.user_id.in_(list(fresh)), j.c.push_id.is_(None)))
        if retry:
            wanted.append(and_(j.c.user_id.in_(list(retry)), j.c.push_id.is_not(None)))
        if not wanted:
            return []
        stmt = (
            select(
                j.c.id.label("job_id"),
                j.c.user_id,
                j.c.push_id,
                j.c.attempts,
                messages.c.id.label("message_id"),
                messages.c.sender_id,
                users.c.name.label("sender_name"),
                messages.c.created_at,
                messages.c.body,
                messages.c.delivered_at,
                messages.c.withheld,
            )
            .select_from(
                j.join(messages, messages.c.id == j.c.message_id).join(users, users.c.id == messages.c.sender_id)
            )
            .where(or_(*wanted), j.c.lease_until <= now)
            .order_by(j.c.id)
            .with_for_update(of=j, skip_locked=True)
        )
        async with self._session_factory() as session:
            rows = (await session.execute(stmt)).all()
            dead = [r.job_id for r in rows if r.delivered_at is not None or r.withheld]
            groups: dict[str, list[Any]] = {}
            fresh_ids: dict[int, str] = {}
            for r in rows:
                if r.delivered_at is not None or r.withheld:
                    continue
                push_id = r.push_id or fresh_ids.setdefault(r.user_id, new_id())
                groups.setdefault(push_id, []).append(r)
            owners = sorted({g[0].user_id for g in groups.values()})
            targets: dict[int, list[PushTarget]] = {}
            unread: dict[int, int] = {}
            if owners:
                found = await session.execute(
                    select(*_TARGET_COLUMNS)
                    .where(push_targets.c.user_id.in_(owners))
                    .order_by(push_targets.c.created_at, push_targets.c.id)
                )
                for row in found:
                    targets.setdefault(row.user_id, []).append(_target(row))
                counted = await session.execute(
                    select(messages.c.recipient_id, func.count())
                    .where(
                        messages.c.recipient_id.in_(owners),
                        messages.c.delivered_at.is_(None),
                        ~messages.c.withheld,
                    )
                    .group_by(messages.c.recipient_id)
                )
                unread = {user_id: int(n) for user_id, n in counted.all()}
            notifications: list[Notification] = []
            for push_id, group in groups.items():
                user_id = group[0].user_id
                if user_id not in targets:  # every target deleted meanwhile: nobody to push to
                    dead.extend(r.job_id for r in group)
                    continue
                await session.execute(
                    update(j)
                    .where(j.c.id.in_([r.job_id for r in group]))
                    .values(push_id=push_id, lease_until=lease_until)
                )
                notifications.append(
                    Notification(
                        id=push_id,
                        user_id=user_id,
                        attempts=max(r.attempts for r in group),
                        lease_until=lease_until,
                        messages=[
                            PushMessage(
                                id=r.message_id,
                                sender_id=r.sender_id,
                                sender_name=r.sender_name,
                                created_at=r.created_at,
                                body=r.body,
                            )
                            for r in group
                        ],
                        targets=targets[user_id],
                        unread=unread.get(user_id, len(group)),
                    )
                )
            if dead:
                await session.execute(delete(j).where(j.c.id.in_(dead)))
            await session.commit()
        return notifications

    async def sent(self, push_id: str, *, lease_until: datetime, rejected: Collection[str]) -> int:
        held = _held(push_id, lease_until)
        async with self._session_factory() as session:
            owner = (await session.execute(select(push_jobs.c.user_id).where(held).limit(1))).scalar_one_or_none()
            await session.execute(delete(push_jobs).where(held))
            removed = 0
            if owner is not None and rejected:
                result = cast(
                    "CursorResult[object]",
                    await session.execute(
                        delete(push_targets).where(
                            push_targets.c.user_id == owner, push_targets.c.token.in_(list(rejected))
                        )
                    ),
                )
                removed = result.rowcount
            await session.commit()
        return removed

    async def retry(self, push_id: str, *, lease_until: datetime, at: datetime) -> None:
        async with self._session_factory() as session:
            await session.execute(
                update(push_jobs)
                .where(_held(push_id, lease_until))
                .values(lease_until=at, attempts=push_jobs.c.attempts + 1)
            )
            await session.commit()

    async def drop(self, push_id: str, *, lease_until: datetime) -> None:
        async with self._session_factory() as session:
            await session.execute(delete(push_jobs).where(_held(push_id, lease_until)))
            await session.commit()


def _held(push_id: str, lease_until: datetime) -> ColumnElement[bool]:
    """The push's jobs, while they still carry this claim's lease (no other process took them)."""
    return and_(push_jobs.c.push_id == push_id, push_jobs.c.lease_until == lease_until)
