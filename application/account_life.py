"""The end of an account's life and its copy: delete the account, export everything it holds.

Deletion (:class:`DeleteAccount`) keeps the account's row as a tombstone, its profile erased
(:meth:`domain.users.User.erase`), so the peers keep their conversations with it; the store drops
what else the account holds (:meth:`application.ports.AccountRepository.forget`). The export
(:class:`ExportAccount`) reads the account a page at a time, one short transaction per page, so
its memory does not grow with the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from application.accounts import PasswordConfirmation, publish_revoked
from domain.errors import UserNotFoundError
from domain.messages import Pair

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from datetime import datetime

    from application.common import Principal, UnitOfWorkFactory
    from application.ports import Clock, ConversationState, Notifier
    from domain.auth import Login
    from domain.messages import Message
    from domain.push import PushTarget
    from domain.users import User


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountDeletion:
    password: str
    erase: bool = False


class DeleteAccount:
    """Delete the caller's account after checking its password.

    A wrong password counts as a failed login of the account from this login, as a wrong
    ``currentPassword`` does (:class:`~application.accounts.ChangePassword`), and raises
    InvalidInputError on ``password``. In one transaction: the profile is erased (name "Deleted
    account", email and phone number freed, no password), and the store forgets the logins,
    contacts, blocks and the pending deliveries to the account, and with ``erase`` blanks the
    bodies of the messages it sent. After the commit every connection of the account hears
    :class:`~application.events.LoginsRevoked` (closed 4403 on every process; the login sweep
    closes them too, the logins being gone). Returns the ended login ids.
    """

    def __init__(self, uow: UnitOfWorkFactory, confirm: PasswordConfirmation, clock: Clock, notifier: Notifier) -> None:
        self._uow, self._confirm, self._clock, self._notifier = uow, confirm, clock, notifier

    async def __call__(self, actor: Principal, cmd: AccountDeletion) -> list[str]:
        user = await self._confirm(actor, cmd.password, "password", "is not your password")
        async with self._uow() as uow:
            stored = await uow.users.lock(user.uid)  # after a concurrent sign-in, never beside it
            if stored is None or stored.deleted:  # a concurrent deletion won
                raise UserNotFoundError(user.uid)
            ended = await uow.logins.active_ids_of(user.uid)
            stored.erase(self._clock.now())
            await uow.accounts.forget(user.uid, erase_bodies=cmd.erase)
            await uow.commit()
        publish_revoked(self._notifier, user.uid, ended)
        return ended


# What the export yields, in document order. The edge writes each as JSON as it comes.


@dataclass(frozen=True, slots=True)
class ProfilePart:
    user: User
    exported_at: datetime


@dataclass(frozen=True, slots=True)
class ListStart:
    """A list of the document begins: ``logins``, ``contacts``, ``blocks``, ``conversations``."""

    name: str


@dataclass(frozen=True, slots=True)
class ListEnd:
    pass


@dataclass(frozen=True, slots=True)
class LoginPart:
    login: Login


@dataclass(frozen=True, slots=True)
class DevicePart:
    """A push target of one of the account's live logins (its token is not exported)."""

    target: PushTarget


@dataclass(frozen=True, slots=True)
class PersonPart:
    """A contact or a blocked user: id and name."""

    user: User


@dataclass(frozen=True, slots=True)
class ConversationStart:
    peer: User
    state: ConversationState


@dataclass(frozen=True, slots=True)
class MessagesPart:
    """A page of the current conversation's messages, ascending by seq."""

    messages: list[Message]


@dataclass(frozen=True, slots=True)
class ConversationEnd:
    pass


ExportPart = (
    ProfilePart
    | ListStart
    | ListEnd
    | LoginPart
    | DevicePart
    | PersonPart
    | ConversationStart
    | MessagesPart
    | ConversationEnd
)


class ExportAccount:
    """Everything the caller's account holds, as a stream of parts: the profile, every login
    (revoked ones too), the push targets (devices), the contacts, the blocks, and each
    conversation (by peer id) with every message sent or received that the caller may see,
    ascending by seq.

    Each page is read in a transaction of its own (``page`` rows at most), so memory stays bounded
    whatever the account's size; the document is therefore not one snapshot: a message sent while
    the export runs may or may not be in it. Raises UserNotFoundError before the first part when
    the account is gone.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, page: int = 1000) -> None:
        self._uow, self._clock, self._page = uow, clock, page

    async def start(self, actor: Principal) -> AsyncIterator[ExportPart]:
        """Check the account exists (raising here, before a response starts), then the parts."""
        async with self._uow() as uow:
            user = await uow.users.get(actor.user_id)
        if user is None or user.deleted:
            raise UserNotFoundError(actor.user_id)
        return self._parts(user)

    async def _parts(self, user: User) -> AsyncIterator[ExportPart]:
        yield ProfilePart(user, self._clock.now())
        for name, section in self._sections():
            yield ListStart(name)
            async for part in section(user.uid):
                yield part
            yield ListEnd()

    def _sections(self) -> list[tuple[str, Callable[[int], AsyncIterator[ExportPart]]]]:
        return [
            ("logins", self._logins),
            ("devices", self._devices),
            ("contacts", self._contacts),
            ("blocks", self._blocks),
            ("conversations", self._conversations),
        ]

    async def _logins(self, user_id: int) -> AsyncIterator[ExportPart]:
        async with self._uow() as uow:
            found = await uow.logins.of_user(user_id, active_only=False)
        for login in found:
            yield LoginPart(login)

    async def _devices(self, user_id: int) -> AsyncIterator[ExportPart]:
        async with self._uow() as uow:
            found = await uow.push.of_user(user_id)
        for target in found:
            yield DevicePart(target)

    async def _contacts(self, user_id: int) -> AsyncIterator[ExportPart]:
        after: int | None = None
        while True:
            async with self._uow() as uow:
                page = await uow.contacts.list_contacts(user_id, after_id=after, limit=self._page)
            for contact in page:
                yield PersonPart(contact)
            if len(page) < self._page:
                return
            after = page[-1].uid

    async def _blocks(self, user_id: int) -> AsyncIterator[ExportPart]:
        async with self._uow() as uow:
            found = await uow.blocks.blocked_by(user_id)
        for blocked in found:
            yield PersonPart(blocked)

    async def _conversations(self, user_id: int) -> AsyncIterator[ExportPart]:
        after: int | None = None
        while True:
            async with self._uow() as uow:
                peers = await uow.conversations.peers_of(user_id, after_id=after, limit=self._page)
                users = await uow.users.get_many(peers)
                states = [(users.get(p), await uow.conversations.state(user_id, p)) for p in peers]
            for peer, state in states:
                if peer is None or state is None:  # a conversation without a message yet
                    continue
                yield ConversationStart(peer, state)
                async for part in self._messages(user_id, peer.uid):
                    yield part
                yield ConversationEnd()
            if len(peers) < self._page:
                return
            after = peers[-1]

    async def _messages(self, user_id: int, peer_id: int) -> AsyncIterator[ExportPart]:
        pair, after = Pair.of(user_id, peer_id), 0
        while True:
            async with self._uow() as uow:
                page = await uow.messages.history(user_id, pair, before=None, after=after, limit=self._page)
            if page:
                yield MessagesPart(page)
            if len(page) < self._page:
                return
            after = page[-1].seq
