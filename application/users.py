"""User use cases: own profile, rename, look up one user, list contacts, search.

Other users are returned as :class:`domain.users.UserCard` — never email, phone or hash — with
presence filled in only where the viewer may see it (:attr:`domain.social.Relation.presence_visible`),
and a contact who blocked the viewer shown as offline (:attr:`domain.social.Relation.appears_offline`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from application.common import (
    MAX_ID,
    PAGE_MAX,
    Page,
    PageRequest,
    Principal,
    UnitOfWorkFactory,
    page_limit,
    parse_id_cursor,
)
from domain.errors import InvalidInputError, RateLimitedError, UserNotFoundError
from domain.limits import BucketsByKey, TokenBucket, quarter_of
from domain.messages import check_storable
from domain.social import STRANGERS, presence_visible_among
from domain.users import WHITESPACE, User, UserCard, email_key, name_key, try_normalise_phone

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from application.ports import PresenceRegistry, UnitOfWork

SEARCH_QUERY_MIN, SEARCH_QUERY_MAX = 2, 100
_QUERY_EDGE = f"[^{WHITESPACE}\\x00]"
SEARCH_QUERY_PATTERN = f"^[{WHITESPACE}]*{_QUERY_EDGE}[^\\x00]{{0,{SEARCH_QUERY_MAX - 2}}}{_QUERY_EDGE}[{WHITESPACE}]*$"
"""The rule :class:`SearchUsers` checks, as a pattern for the HTTP edge to publish: 2–100 characters
after trimming white space, no NUL (lone surrogates cannot arrive in a URL or JSON)."""
# One page size bound for searches and lists, so that ``GET /users`` has one ``limit`` range with or
# without ``q`` (the OpenAPI document states one).
SEARCH_DEFAULT, SEARCH_MAX = 20, PAGE_MAX


class CardMaker:
    """Builds what a viewer may see of other users (presence only where visible)."""

    def __init__(self, presence: PresenceRegistry) -> None:
        self._presence = presence

    async def cards(self, uow: UnitOfWork, viewer_id: int, users: Sequence[User]) -> list[UserCard]:
        ids = [u.uid for u in users]
        relations = await uow.contacts.relations(viewer_id, ids)
        visible = set(presence_visible_among(relations, ids))
        offline = {uid for uid, relation in relations.items() if relation.appears_offline}
        online = await self._presence.online_among(visible) if visible else set()
        return [self._card(u, u.uid in visible, u.uid in online, u.uid in offline) for u in users]

    @staticmethod
    def _card(user: User, visible: bool, online: bool, appears_offline: bool) -> UserCard:
        if appears_offline:  # no last-seen time: it would keep telling when the blocker comes and goes
            return UserCard(id=user.uid, name=user.name, online=False)
        if not visible:
            return UserCard(id=user.uid, name=user.name)
        return UserCard(id=user.uid, name=user.name, online=online, last_seen_at=None if online else user.last_seen_at)


class LookupLimit:
    """User lookups and searches over HTTP, per user: the socket's ``searchUsers`` bucket (a quarter
    of ``CHAT_RATE_MSG_PER_S`` and of its burst), so ids and emails cannot be enumerated faster
    over HTTP than over the socket. Per process (each worker keeps its own buckets).
    ``seconds`` is a monotonic clock."""

    def __init__(self, rate_per_s: float, burst: int, seconds: Callable[[], float]) -> None:
        search = quarter_of(TokenBucket(rate=rate_per_s, burst=burst))
        self._buckets = BucketsByKey(rate=search.rate, burst=search.burst)
        self._seconds = seconds

    def __call__(self, actor: Principal) -> None:
        """Spend one lookup of the actor's; raises RateLimitedError (with the wait) when none is left."""
        wait = self._buckets.take(actor.user_id, self._seconds())
        if wait > 0:
            raise RateLimitedError(math.ceil(wait), "too many user lookups or searches, retry later")


class GetProfile:
    """The caller's own account, including email and phone number."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal) -> User:
        async with self._uow() as uow:
            user = await uow.users.get(actor.user_id)
        if user is None:
            raise UserNotFoundError(actor.user_id)
        return user


@dataclass(frozen=True, slots=True, kw_only=True)
class Rename:
    name: str


class RenameUser:
    """Change the caller's display name (trimmed, 1–100 characters)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal, cmd: Rename) -> User:
        async with self._uow() as uow:
            user = await uow.users.get(actor.user_id)
            if user is None:
                raise UserNotFoundError(actor.user_id)
            user.rename(cmd.name)
            await uow.commit()
        return user


@dataclass(frozen=True, slots=True, kw_only=True)
class UserLookup:
    user_id: int


class GetUser:
    """One user as the viewer may see them. Raises UserNotFoundError, also for a deleted account
    and for a user who blocked the viewer (:attr:`domain.social.Relation.may_find`, as a search):
    the block never shows."""

    def __init__(self, uow: UnitOfWorkFactory, cards: CardMaker) -> None:
        self._uow, self._cards = uow, cards

    async def __call__(self, actor: Principal, cmd: UserLookup) -> UserCard:
        if not 1 <= cmd.user_id <= MAX_ID:  # no store holds such an id
            raise UserNotFoundError(cmd.user_id)
        async with self._uow() as uow:
            user = await uow.users.get(cmd.user_id)
            relations = await uow.contacts.relations(actor.user_id, [cmd.user_id]) if user else {}
            if user is None or user.deleted or not relations.get(user.uid, STRANGERS).may_find:
                raise UserNotFoundError(cmd.user_id)
            (card,) = await self._cards.cards(uow, actor.user_id, [user])
        return card


class ListContacts:
    """The caller's contacts, by id, keyset-paginated."""

    def __init__(self, uow: UnitOfWorkFactory, cards: CardMaker) -> None:
        self._uow, self._cards = uow, cards

    async def __call__(self, actor: Principal, cmd: PageRequest) -> Page[UserCard]:
        size = page_limit(cmd.limit)
        after_id = parse_id_cursor(cmd.cursor)
        async with self._uow() as uow:
            users = await uow.contacts.list_contacts(actor.user_id, after_id=after_id, limit=size + 1)
            more = len(users) > size
            cards = await self._cards.cards(uow, actor.user_id, users[:size])
        return Page(items=cards, next_cursor=str(cards[-1].id) if more else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    query: str
    limit: int | None = None


class SearchUsers:
    """Find users by name substring, exact email or exact phone number (contract §5)."""

    def __init__(self, uow: UnitOfWorkFactory, cards: CardMaker) -> None:
        self._uow, self._cards = uow, cards

    async def __call__(self, actor: Principal, cmd: SearchQuery) -> list[UserCard]:
        query = cmd.query.strip()
        if not SEARCH_QUERY_MIN <= len(query) <= SEARCH_QUERY_MAX:
            raise InvalidInputError.of(
                "query", f"must be {SEARCH_QUERY_MIN}–{SEARCH_QUERY_MAX} characters after trimming"
            )
        check_storable(query, "query")
        size = page_limit(cmd.limit, default=SEARCH_DEFAULT, maximum=SEARCH_MAX)
        async with self._uow() as uow:
            users = await uow.users.search(
                viewer_id=actor.user_id,
                name_key=name_key(query),
                email_key=email_key(query),
                phone_number=try_normalise_phone(query),
                limit=size,
            )
            return await self._cards.cards(uow, actor.user_id, users)
