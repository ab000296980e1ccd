"""Presence use cases: connections coming and going, settling offline users, and who is online.

The rules live in :mod:`domain.presence` and, per deployment, behind the
:class:`~application.ports.PresenceRegistry`. Presence events (``userOnline``/``userOffline``) go
only to those who may see the user's presence (:attr:`domain.social.Relation.presence_visible`:
contacts, no block either way; contract §6), after any commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from application.common import MAX_ID
from application.events import UserOffline, UserOnline
from domain.errors import InvalidInputError
from domain.messages import BATCH_MAX
from domain.social import presence_visible_among

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from application.common import Principal, UnitOfWorkFactory
    from application.ports import Clock, Notifier, PresenceRegistry

ONLINE_QUERY_MAX = BATCH_MAX
"""At most this many ids per ``getOnlineUsers``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveConnection:
    connection_id: str  # which of the caller's live connections opened or closed


class Connect:
    """A live, authenticated connection of the caller opened. Returns True iff the caller came
    online; then each contact who may see the caller's presence hears ``userOnline`` once.

    With ``max_per_user``, raises :class:`~domain.presence.TooManyConnectionsError` when the
    caller already holds that many connections anywhere in the deployment (the registry checks and
    registers in one step); nothing is registered or published then. Reads contacts only when the
    user came online; commits nothing.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        presence: PresenceRegistry,
        notifier: Notifier,
        clock: Clock,
        max_per_user: int | None = None,
    ) -> None:
        self._uow, self._presence, self._notifier, self._clock = uow, presence, notifier, clock
        self._max_per_user = max_per_user

    async def __call__(self, actor: Principal, cmd: LiveConnection) -> bool:
        user_id = actor.user_id
        now = self._clock.now()
        came_online = await self._presence.connect(user_id, cmd.connection_id, now=now, limit=self._max_per_user)
        if came_online:
            await announce_online(self._uow, self._notifier, [user_id])
        return came_online


async def announce_online(uow_factory: UnitOfWorkFactory, notifier: Notifier, user_ids: Iterable[int]) -> None:
    """Tell each of ``user_ids``' contacts who may see their presence ``userOnline`` (one read)."""
    async with uow_factory() as uow:
        audiences = {user_id: await uow.contacts.visible_contact_ids(user_id) for user_id in user_ids}
    for user_id, audience in audiences.items():
        event = UserOnline(user_id=user_id)
        for contact_id in audience:
            notifier.publish(contact_id, event)


class Disconnect:
    """A connection of the caller closed. Publishes nothing: going offline is decided later, by
    :class:`SettlePresence`, once the grace period has passed without a reconnect."""

    def __init__(self, presence: PresenceRegistry, clock: Clock) -> None:
        self._presence, self._clock = presence, clock

    async def __call__(self, actor: Principal, cmd: LiveConnection) -> None:
        await self._presence.disconnect(actor.user_id, cmd.connection_id, now=self._clock.now())


class SettlePresence:
    """Run periodically: users whose grace period has passed go offline. For those, ``lastSeenAt``
    is stored (one transaction, committed here) and then their visible contacts hear
    ``userOffline``. Returns the users that went offline with their ``last_seen_at``.

    First the registry heals (after a Redis outage or restart, :meth:`PresenceRegistry.heal`):
    users it registered again who came online by it are announced ``userOnline``, and users who
    left while it could not record that go offline with the rest.

    The registry reports each transition once; if the commit fails the exception propagates and
    that batch's events are not published (contacts learn the state from their next lookup).
    """

    def __init__(
        self, uow: UnitOfWorkFactory, presence: PresenceRegistry, notifier: Notifier, clock: Clock, grace_s: float
    ) -> None:
        self._uow, self._presence, self._notifier, self._clock = uow, presence, notifier, clock
        self._grace_s = grace_s

    async def __call__(self) -> list[tuple[int, datetime]]:
        repair = await self._presence.heal(now=self._clock.now())
        if repair.came_online:
            await announce_online(self._uow, self._notifier, repair.came_online)
        gone = [*repair.went_offline, *await self._presence.settle(now=self._clock.now(), grace_s=self._grace_s)]
        if not gone:
            return gone
        audiences: dict[int, list[int]] = {}
        async with self._uow() as uow:
            for user_id, last_seen_at in gone:
                await uow.users.set_last_seen(user_id, last_seen_at)
                audiences[user_id] = await uow.contacts.visible_contact_ids(user_id)
            await uow.commit()
        for user_id, last_seen_at in gone:
            event = UserOffline(user_id=user_id, last_seen_at=last_seen_at)
            for contact_id in audiences[user_id]:
                self._notifier.publish(contact_id, event)
        return gone


@dataclass(frozen=True, slots=True, kw_only=True)
class OnlineQuery:
    user_ids: list[int] | None  # None: the caller's contacts


class VisibleOnline:
    """``getOnlineUsers``: who is online among ``q.user_ids`` (at most 100), or among the caller's
    contacts when None — only users whose presence the caller may see, never the caller.

    Given ids keep their order (duplicates dropped); contacts come by id. Raises InvalidInputError
    on ``userIds`` for more than 100 ids or an id that cannot be a user id. Reads only.
    """

    def __init__(self, uow: UnitOfWorkFactory, presence: PresenceRegistry) -> None:
        self._uow, self._presence = uow, presence

    async def __call__(self, actor: Principal, q: OnlineQuery) -> list[int]:
        viewer_id, user_ids = actor.user_id, q.user_ids
        wanted = None if user_ids is None else self._check(viewer_id, user_ids)
        if wanted == []:
            return []
        async with self._uow() as uow:
            if wanted is None:
                candidates = await uow.contacts.visible_contact_ids(viewer_id)
            else:
                candidates = presence_visible_among(await uow.contacts.relations(viewer_id, wanted), wanted)
        candidates = [uid for uid in candidates if uid != viewer_id]
        if not candidates:
            return []
        online = await self._presence.online_among(candidates)
        return [uid for uid in candidates if uid in online]

    @staticmethod
    def _check(viewer_id: int, user_ids: list[int]) -> list[int]:
        """The ids to look at: valid, distinct, in the given order, without the viewer."""
        if len(user_ids) > ONLINE_QUERY_MAX:
            raise InvalidInputError.of("userIds", f"must hold at most {ONLINE_QUERY_MAX} ids")
        if any(not 1 <= uid <= MAX_ID for uid in user_ids):
            raise InvalidInputError.of("userIds", "must hold positive user ids")
        return [uid for uid in dict.fromkeys(user_ids) if uid != viewer_id]
