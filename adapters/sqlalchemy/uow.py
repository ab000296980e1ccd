"""The SQLAlchemy Unit of Work: one ``AsyncSession`` (one transaction) per ``async with``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SqlAlchemyTimeoutError

from adapters.sqlalchemy.fastpath.driver import Driver
from adapters.sqlalchemy.fastpath.memo import StoreMemo
from adapters.sqlalchemy.messaging import SqlAlchemyConversationRepository, SqlAlchemyMessageRepository
from adapters.sqlalchemy.push import SqlAlchemyPushTargetRepository
from adapters.sqlalchemy.repositories import (
    SqlAlchemyAccountRepository,
    SqlAlchemyBlockRepository,
    SqlAlchemyContactRepository,
    SqlAlchemyLoginRepository,
    SqlAlchemyUserRepository,
)
from application.ports import StoreUnavailableError, UnitOfWork

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class ErrorTally:
    """How many units of work of this process failed with a database error (the metrics read it)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


DATABASE_ERRORS = ErrorTally()


def _unavailable(exc: BaseException | None) -> bool:
    """The database failed, not the data: unreachable, locked (SQLite's busy timeout), the
    connection lost, or no pooled connection in time."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, SqlAlchemyTimeoutError | OSError)


class SqlAlchemyUnitOfWork(UnitOfWork):
    """``memo``: what the units of work of one database share to skip reads (:class:`StoreMemo`);
    without one, each unit of work starts knowing nothing."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], memo: StoreMemo | None = None) -> None:
        self._session_factory = session_factory
        self._memo = memo if memo is not None else StoreMemo()
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("this unit of work is already in use")
        session = self._session_factory()
        self._session = session
        self.users = SqlAlchemyUserRepository(session)
        self.logins = SqlAlchemyLoginRepository(session)
        self.contacts = SqlAlchemyContactRepository(session)
        self.blocks = SqlAlchemyBlockRepository(session)
        self.conversations = SqlAlchemyConversationRepository(session, self._memo)
        self.messages = SqlAlchemyMessageRepository(session)
        self.accounts = SqlAlchemyAccountRepository(session)
        self.push = SqlAlchemyPushTargetRepository(session)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            # close() rolls back whatever was not committed and detaches the objects without
            # expiring them, so use cases may read what they loaded after the block.
            await session.close()
        if exc is None:
            return
        if isinstance(exc, SQLAlchemyError) or _unavailable(exc):
            DATABASE_ERRORS.count += 1
        if _unavailable(exc):
            raise StoreUnavailableError(str(exc)) from exc

    async def commit(self) -> None:
        if self._session is None:
            raise RuntimeError("commit outside of a unit of work")
        Driver.forget(self._session)
        await self._session.commit()
        self._memo.learn(sent=self.conversations.learned)
        self.conversations.learned.clear()
