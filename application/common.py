"""Small pieces shared by the use cases: the authenticated principal, pages, limits, UoW factory.

How a use case is called
------------------------
A use case is a class whose constructor takes its ports and whose
``async def __call__(self, actor: Principal, cmd: <Command>) -> <Result>`` does one thing:

- ``actor`` is the authenticated caller (:class:`Principal`); ``cmd`` is ONE command or query
  object, a frozen, slotted, kw_only dataclass in the use case's module named for what is asked
  (``Rename``, ``Block``, ``HistoryQuery``, ``PasswordChange``; :class:`PageRequest` for a page of
  a list). Commands hold plain values only; the actor is never repeated inside one.
- A use case with nothing to say beyond the actor takes ``(actor)`` alone (``GetProfile``,
  ``SignOut``). An anonymous one, called before anyone is signed in, takes ``(cmd)`` alone
  (``RegisterUser``, ``SignIn``, ``RefreshLogin``); ``Authenticate``, which turns a bearer token into
  the actor, takes the token itself. A system task that acts for no one takes ``()``
  (``SettlePresence``, run by a timer).
- The connection a command came in on is not the actor's: it belongs to the command, as
  ``connection_id`` (``Send``, ``Read``; ``LiveConnection`` for ``Connect`` and ``Disconnect``),
  so the actor's other connections can be told apart from it.
- A write that shares a transaction with others (:class:`~application.group_commit.GroupCommit`)
  splits the call: ``begin(actor, cmd)`` validates and queues it, returning a future of the
  committed write, and ``finish(written)`` turns that into the result (``SendMessage``,
  ``AcknowledgeDelivery``; the WebSocket pipelines a connection's writes between the two).
  ``__call__(actor, cmd)`` is the two in one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - Principal's fields are resolved at run time by the web edge
from typing import Generic, TypeVar

from application.ports import UnitOfWork
from domain.errors import InvalidInputError

T = TypeVar("T")

UnitOfWorkFactory = Callable[[], UnitOfWork]
"""Makes a fresh :class:`UnitOfWork`; use cases open one per transaction, so they are safe to share."""

PAGE_DEFAULT, PAGE_MAX = 50, 100
MAX_ID = 2**63 - 1  # ids and sequence numbers are signed 64-bit integers in every store


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The authenticated caller: a user, the login (``sid``) the token belongs to, and when the
    token expires (None where no token is involved)."""

    user_id: int
    sid: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list; ``next_cursor`` continues it (None: no more)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PageRequest:
    """Which page of a keyset-paginated list: its size (None: the default) and where it continues
    (None: the first page; else a ``next_cursor`` this server issued)."""

    limit: int | None = None
    cursor: str | None = None


def parse_id_cursor(cursor: str | None) -> int | None:
    """Cursors are opaque to clients; for id-ordered lists they are the last id of the page."""
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19 or int(cursor) > MAX_ID:
        raise InvalidInputError.of("cursor", "is not a cursor this server issued")
    return int(cursor)


def page_limit(limit: int | None, *, default: int = PAGE_DEFAULT, maximum: int = PAGE_MAX) -> int:
    """The page size to use; ``None`` → ``default``; outside 1..maximum → InvalidInputError."""
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise InvalidInputError.of("limit", f"must be between 1 and {maximum}")
    return limit
