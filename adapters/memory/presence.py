"""Presence in process memory (one-process deployments): user id → number of live connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from application.ports import PresenceRegistry

if TYPE_CHECKING:
    from collections.abc import Iterable


class InMemoryPresenceRegistry(PresenceRegistry):
    def __init__(self) -> None:
        self._connections: dict[int, int] = {}

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        return {uid for uid in user_ids if self._connections.get(uid, 0) > 0}
