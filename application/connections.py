"""This process's live connections, by user: the local half of every fan-out adapter.

Pure bookkeeping (no I/O, no framework): the in-memory fan-out delivers from it directly, the
Redis fan-out delivers from it what arrives on pub/sub and asks it which users' channels the
process must listen to.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from application.events import Event
    from application.ports import Subscriber

log = logging.getLogger(__name__)


class ConnectionTable:
    """user id → {connection id → subscriber}, for the connections of this process only.

    A connection id is registered once; attaching another subscriber under an id already present
    replaces it. Nothing here blocks or raises on behalf of a subscriber.
    """

    def __init__(self) -> None:
        self._by_user: dict[int, dict[str, Subscriber]] = {}

    def attach(self, subscriber: Subscriber) -> bool:
        """Register ``subscriber``; True iff it is its user's first local connection."""
        connections = self._by_user.get(subscriber.user_id)
        first = connections is None
        if connections is None:
            connections = self._by_user[subscriber.user_id] = {}
        connections[subscriber.connection_id] = subscriber
        return first

    def detach(self, subscriber: Subscriber) -> bool:
        """Forget ``subscriber`` (unknown ones are ignored); True iff that closed its user's last
        local connection."""
        connections = self._by_user.get(subscriber.user_id)
        if connections is None or connections.pop(subscriber.connection_id, None) is None:
            return False
        if connections:
            return False
        del self._by_user[subscriber.user_id]
        return True

    def users(self) -> set[int]:
        """The users with at least one local connection."""
        return set(self._by_user)

    def deliver(self, user_id: int, event: Event, skip_connection: str | None = None) -> int:
        """Hand ``event`` to every local connection of ``user_id`` except ``skip_connection``, in
        attach order; return how many got it. A subscriber that raises (breaking its contract) is
        logged and skipped, so the others still get the event."""
        delivered = 0
        for connection_id, subscriber in list(self._by_user.get(user_id, {}).items()):
            if connection_id == skip_connection:
                continue
            try:
                subscriber.deliver(event)
            except Exception:
                log.exception("subscriber %s of user %s raised on deliver", connection_id, user_id)
                continue
            delivered += 1
        return delivered
