"""Social use cases between two users: blocking, unblocking, the block list, and typing.

A block is directional (``blocker`` → ``blocked``) but hides presence and typing both ways
(contract §4; the rules are :mod:`domain.social`'s). Nothing here tells the blocked user
anything, and nothing here touches their connections: blocking is never revealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from application.common import MAX_ID
from application.events import Typing
from domain.errors import InvalidInputError, UserNotFoundError
from domain.social import presence_visible_among
from domain.users import UserCard

if TYPE_CHECKING:
    from application.common import Principal, UnitOfWorkFactory
    from application.ports import Clock, Notifier, UnitOfWork


async def _other_user(uow: UnitOfWork, me: int, other: int) -> None:
    """Check that ``other`` is an existing user other than ``me``."""
    if other == me:
        raise InvalidInputError.of("id", "you cannot block or unblock yourself")
    if not 1 <= other <= MAX_ID or await uow.users.get(other) is None:
        raise UserNotFoundError(other)


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    user_id: int  # the user to block


class BlockUser:
    """The caller blocks ``cmd.user_id``; idempotent (blocking again keeps the first block).

    Commits its own transaction. Raises InvalidInputError on ``id`` for blocking yourself and
    UserNotFoundError for an unknown user. Publishes nothing.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def __call__(self, actor: Principal, cmd: Block) -> None:
        async with self._uow() as uow:
            await _other_user(uow, actor.user_id, cmd.user_id)
            await uow.blocks.block(actor.user_id, cmd.user_id, now=self._clock.now())
            await uow.commit()


@dataclass(frozen=True, slots=True, kw_only=True)
class Unblock:
    user_id: int  # the user to unblock


class UnblockUser:
    """The caller lifts their block of ``cmd.user_id``; idempotent (no block is fine).

    Messages withheld meanwhile stay withheld. Commits its own transaction. Raises
    InvalidInputError on ``id`` for yourself and UserNotFoundError for an unknown user, like
    :class:`BlockUser`. Publishes nothing.
    """

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal, cmd: Unblock) -> None:
        async with self._uow() as uow:
            await _other_user(uow, actor.user_id, cmd.user_id)
            await uow.blocks.unblock(actor.user_id, cmd.user_id)
            await uow.commit()


class ListBlocked:
    """The users the caller blocked, by id, as cards without presence (a block hides it). Reads only."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal) -> list[UserCard]:
        async with self._uow() as uow:
            users = await uow.blocks.blocked_by(actor.user_id)
        return [UserCard(id=user.uid, name=user.name) for user in users]


@dataclass(frozen=True, slots=True, kw_only=True)
class TypingNotice:
    to: int  # the user to tell
    is_typing: bool  # started (True) or stopped (False)


class RelayTyping:
    """``typing``: tell ``cmd.to`` that the caller is (or stopped) typing — only if they are
    contacts and no block exists either way. Otherwise, and for an unknown ``to`` or yourself,
    silently do nothing: this never raises for those, so it reveals neither blocks nor who exists.
    Reads only; the event is ephemeral (never stored).
    """

    def __init__(self, uow: UnitOfWorkFactory, notifier: Notifier) -> None:
        self._uow, self._notifier = uow, notifier

    async def __call__(self, actor: Principal, cmd: TypingNotice) -> None:
        from_id, to = actor.user_id, cmd.to
        if to == from_id or not 1 <= to <= MAX_ID:
            return
        async with self._uow() as uow:
            relations = await uow.contacts.relations(to, [from_id])
        if presence_visible_among(relations, [from_id]):
            self._notifier.publish(to, Typing(from_id=from_id, is_typing=cmd.is_typing))
