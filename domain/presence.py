"""Presence rules: when a user counts as online, when that changes, and who may see it.

Per user, as a pure state machine (time is passed in, nothing here reads the clock):

* A user is **online** while they have at least one live connection, *or* their last connection
  closed less than the grace period ago (so a page reload does not flap).
* The **first** connection makes them online: that transition is reported exactly once
  (:meth:`UserPresence.connect` returns True). Further connections report nothing. A user holds
  at most ``limit`` live connections at once (``CHAT_MAX_CONNECTIONS_PER_USER``): one more is
  refused (:class:`TooManyConnectionsError`) and changes nothing.
* Closing the **last** connection records ``left_at``; nothing is reported yet.
* A **reconnect** while ``left_at`` is pending cancels it without any report, even when the grace
  period has elapsed but was not settled yet — nobody was told the user left, so nobody is told
  they came back.
* **Settling** at ``now >= left_at + grace`` with still no connection makes them offline with
  ``last_seen_at = left_at``: that transition is reported exactly once
  (:meth:`UserPresence.settle` returns ``left_at``). Settling again reports nothing.

Visibility (:func:`presence_visible`): a user's presence is visible to another user, and presence
events go to them, only when the two are contacts and neither blocked the other. The same rule
decides who may hear ``typing``. The use cases ask it through :attr:`domain.social.Relation.presence_visible`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime, timedelta


class TooManyConnectionsError(Exception):
    """The user already holds as many live connections as allowed; this one is not registered."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} connections per user")
        self.limit = limit


@dataclass(eq=False, kw_only=True)
class UserPresence:
    """The presence of one user: their live connections and whether they are announced online."""

    user_id: int
    connections: set[str] = field(default_factory=set)
    online: bool = False
    left_at: datetime | None = None  # when the last connection closed, while the leave is unsettled

    def connect(self, connection_id: str, *, now: datetime, limit: int | None = None) -> bool:
        """Add a live connection (idempotent per id); True iff this made the user come online.
        Raises :class:`TooManyConnectionsError` when ``limit`` other connections are live."""
        if limit is not None and connection_id not in self.connections and len(self.connections) >= limit:
            raise TooManyConnectionsError(limit)
        self.connections.add(connection_id)
        self.left_at = None
        if self.online:
            return False
        self.online = True
        return True

    def disconnect(self, connection_id: str, *, now: datetime) -> None:
        """Remove a connection (unknown ids are ignored); the last one starts the grace period."""
        if connection_id not in self.connections:
            return
        self.connections.remove(connection_id)
        if not self.connections and self.online:
            self.left_at = now

    def settle(self, *, now: datetime, grace: timedelta) -> datetime | None:
        """Go offline if the grace period after the last close has passed with no reconnect.

        Returns ``last_seen_at`` (the ``left_at``) exactly once for that transition, else None.
        """
        if self.left_at is None or self.connections or now < self.left_at + grace:
            return None
        last_seen_at, self.left_at, self.online = self.left_at, None, False
        return last_seen_at

    @property
    def leaving(self) -> bool:
        """The last connection closed and the leave is not settled yet."""
        return self.left_at is not None

    @property
    def idle(self) -> bool:
        """Offline with nothing pending: the state can be forgotten (it equals a fresh one)."""
        return not self.online and not self.connections and self.left_at is None


def presence_visible(*, contacts: bool, blocked_either_way: bool) -> bool:
    """Whether two users see each other's presence (and typing): contacts, and no block either way.

    Symmetric by construction: a block in either direction hides presence both ways.
    """
    return contacts and not blocked_either_way
