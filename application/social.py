"""Social use cases between two users: blocking, unblocking, the block list, and typing.

A block is directional (``blocker`` → ``blocked``) but hides presence and typing both ways
(contract §4; the rules are :mod:`domain.social`'s). Nothing here tells the blocked user
anything, and nothing here touches their connections: blocking is never revealed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from application.common import MAX_ID
from application.events import Typing
from domain.errors import InvalidInputError, UserNotFoundError
from domain.social import presence_visible_among
from domain.users import UserCard

if TYPE_CHECKING:
    from application.common import UnitOfWorkFactory
    from application.ports import Clock, Notifier, UnitOfWork


async def _other_user(uow: UnitOfWork, me: int, other: int) -> None:
    """Check that ``other`` is an existing user other than ``me``."""
    if other == me:
        raise InvalidInputError.of("id", "you cannot block or unblock yourself")
    if not 1 <= other <= MAX_ID or await uow.users.get(other) is None:
        raise UserNotFoundError(other)


class BlockUser:
    """``blocker_id`` blocks ``blocked_id``; idempotent (blocking again keeps the first block).

    Commits its own transaction. Raises InvalidInputError on ``id`` for blocking yourself and
    UserNotFoundError for an unknown user. Publishes nothing.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def __call__(self, blocker_id: int, blocked_id: int) -> None:
        async with self._uow() as uow:
            await _other_user(uow, blocker_id, blocked_id)
            await uow.blocks.block(blocker_id, blocked_id, now=self._clock.now())
            await uow.commit()


class UnblockUser:
    """``blocker_id`` lifts their block of ``blocked_id``; idempotent (no block is fine).

    Messages withheld meanwhile stay withheld. Commits its own transaction. Raises
    InvalidInputError on ``id`` for yourself and UserNotFoundError for an unknown user, like
    :class:`BlockUser`. Publishes nothing.
    """

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, blocker_id: int, blocked_id: int) -> None:
        async with self._uow() as uow:
            await _other_user(uow, blocker_id, blocked_id)
            await uow.blocks.unblock(blocker_id, blocked_id)
            await uow.commit()


class ListBlocked:
    """The users the caller blocked, by id, as cards without presence (a block hides it). Reads only."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, blocker_id: int) -> list[UserCard]:
        async with self._uow() as uow:
            users = await uow.blocks.blocked_by(blocker_id)
        return [UserCard(id=user.uid, name=user.name) for user in users]


class RelayTyping:
    """``typing``: tell ``to`` that ``from_id`` is (or stopped) typing — only if they are contacts
    and no block exists either way. Otherwise, and for an unknown ``to`` or yourself, silently do
    nothing: this never raises for those, so it reveals neither blocks nor who exists.
    Reads only; the event is ephemeral (never stored).
    """

    def __init__(self, uow: UnitOfWorkFactory, notifier: Notifier) -> None:
        self._uow, self._notifier = uow, notifier

    async def __call__(self, from_id: int, to: int, is_typing: bool) -> None:
        if to == from_id or not 1 <= to <= MAX_ID:
            return
        async with self._uow() as uow:
            relations = await uow.contacts.relations(to, [from_id])
        if presence_visible_among(relations, [from_id]):
            self._notifier.publish(to, Typing(from_id=from_id, is_typing=is_typing))
