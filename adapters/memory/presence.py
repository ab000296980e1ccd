"""Presence in process memory (one-process deployments), with the rules of :mod:`domain.presence`."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from application.ports import PresenceRegistry, PresenceRepair
from domain.presence import UserPresence

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime


class InMemoryPresenceRegistry(PresenceRegistry):
    """user id → :class:`UserPresence`. Only users with live connections or an unsettled leave are
    kept; idle states are dropped, so memory is bounded by who is (about to be) online. Every method
    runs without awaiting, so on one event loop each call is atomic."""

    def __init__(self) -> None:
        self._users: dict[int, UserPresence] = {}
        self._leaving: set[int] = set()

    async def connect(self, user_id: int, connection_id: str, *, now: datetime, limit: int | None = None) -> bool:
        state = self._users.get(user_id)
        if state is None:
            state = self._users[user_id] = UserPresence(user_id=user_id)
        came_online = state.connect(connection_id, now=now, limit=limit)  # may refuse: nothing changed
        self._leaving.discard(user_id)
        return came_online

    async def disconnect(self, user_id: int, connection_id: str, *, now: datetime) -> None:
        state = self._users.get(user_id)
        if state is None:
            return
        state.disconnect(connection_id, now=now)
        if state.leaving:
            self._leaving.add(user_id)

    async def settle(self, *, now: datetime, grace_s: float) -> list[tuple[int, datetime]]:
        grace = timedelta(seconds=grace_s)
        gone: list[tuple[int, datetime]] = []
        for user_id in sorted(self._leaving):
            state = self._users[user_id]
            last_seen_at = state.settle(now=now, grace=grace)
            if last_seen_at is None:
                continue
            gone.append((user_id, last_seen_at))
            self._leaving.discard(user_id)
            if state.idle:
                del self._users[user_id]
        return gone

    async def heal(self, *, now: datetime) -> PresenceRepair:
        return PresenceRepair()  # one process: nothing shared can be lost

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        return {uid for uid in user_ids if (state := self._users.get(uid)) is not None and state.online}
