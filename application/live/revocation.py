"""The process's login sweep: revocation that cannot be missed (issue 15, finding 2).

A logout or password change reaches the sockets of its logins as a :class:`LoginsRevoked` event
over the fan-out, which delivers at most once (Redis down, a dropped pub/sub message). So every
``CHAT_SESSION_CHECK_S`` each process asks the store, in one query per few hundred logins (see
:class:`~application.accounts.RevokedAmong`), which of its live connections' logins are no longer
active, and delivers :class:`LoginsRevoked` of those to them locally: the session closes 4403 on it
as on a broadcast one (a connection re-authenticated meanwhile with another login stays). One
batched read per process and interval instead of one per socket keeps idle sockets free.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from application.events import LoginsRevoked

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterable

    from application.events import Event

log = logging.getLogger("p2p_chat.ws")


class LiveLogin(Protocol):
    """A live connection as the sweep sees it: its current login, and the way events reach it."""

    @property
    def sid(self) -> str: ...

    def deliver(self, event: Event) -> None: ...


class RevocationSweep:
    """One round per call; the caller runs it every ``CHAT_SESSION_CHECK_S``. A round whose read
    fails closes nothing and logs a warning: the next round asks again."""

    def __init__(self, revoked_among: Callable[[Collection[str]], Awaitable[set[str]]]) -> None:
        self._revoked_among = revoked_among

    async def __call__(self, connections: Iterable[LiveLogin]) -> set[str]:
        """Deliver :class:`LoginsRevoked` to the connections whose login is no longer active;
        the sids found revoked (empty when the read failed)."""
        by_sid: dict[str, list[LiveLogin]] = {}
        for connection in connections:
            by_sid.setdefault(connection.sid, []).append(connection)
        if not by_sid:
            return set()
        try:
            revoked = await self._revoked_among(list(by_sid))
        except Exception as exc:  # the store is down: keep the sockets, ask again next round
            log.warning(
                "checking %d live logins failed (%s); tried again next interval", len(by_sid), type(exc).__name__
            )
            return set()
        event = LoginsRevoked(sids=frozenset(revoked))
        for sid in revoked:
            for connection in by_sid.get(sid, ()):
                connection.deliver(event)
        return revoked
