"""Fixed-window attempt counters in process memory (one-process deployments)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from application.ports import AttemptCounter
from domain.auth import AttemptWindow, first_attempt

if TYPE_CHECKING:
    from datetime import datetime

PRUNE_EVERY = 1024


class InMemoryAttemptCounter(AttemptCounter):
    """Windows live in a dict; closed ones are pruned as new keys arrive, so memory stays bounded
    by the keys active in the longest window."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[AttemptWindow, int]] = {}
        self._inserts = 0

    async def get(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow | None:
        entry = self._windows.get(key)
        if entry is None or not entry[0].is_open(now, window_s):
            return None
        return entry[0]

    async def hit(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow:
        entry = self._windows.get(key)
        window = first_attempt(now) if entry is None else entry[0].after_one_more(now, window_s)
        if entry is None:
            self._inserts += 1
            if self._inserts % PRUNE_EVERY == 0:
                self._prune(now)
        self._windows[key] = (window, window_s)
        return window

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _prune(self, now: datetime) -> None:
        for key in [k for k, (w, s) in self._windows.items() if not w.is_open(now, s)]:
            del self._windows[key]
