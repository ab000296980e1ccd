"""The pure rules of the reconnect loop: what a close code asks for, how long to wait before the
next attempt, and which message ids were already shown. No I/O, no clock reads: callers pass
``random`` and timings in, so every rule is unit-tested with fakes."""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

ABNORMAL = 1006  # no close frame (the connection dropped, the server was killed)


class CloseAction(enum.Enum):
    RECONNECT = "reconnect"  # at once the first time, then with growing back-off
    BACK_OFF = "back_off"  # the server asked us to go slower: wait at least the floor
    REFRESH = "refresh"  # the token is not (or no longer) good: refresh it, then reconnect
    SIGNED_OUT = "signed_out"  # the login is revoked: never retry


_BACK_OFF_CODES = frozenset({1008, 1009, 1013, 4008, 4429, 4430})


def close_action(code: int) -> CloseAction:
    """What a close code (``ABNORMAL`` when none came) asks the client to do (docs/protocol.md)."""
    if code == 4403:
        return CloseAction.SIGNED_OUT
    if code == 4401:
        return CloseAction.REFRESH
    if code in _BACK_OFF_CODES:
        return CloseAction.BACK_OFF
    return CloseAction.RECONNECT  # 1000, 1001, 1006, 1011, 1012, 4408 and anything unknown


@dataclass(frozen=True, slots=True)
class Timings:
    """Every duration the client waits for (seconds); tests shorten them."""

    backoff_base_s: float = 0.5  # the first retry after a failed attempt waits about this
    backoff_cap_s: float = 30.0  # no wait grows beyond this
    backoff_floor_s: float = 5.0  # the least wait after a close that asks us to back off
    refresh_margin_s: float = 60.0  # refresh this long before the access token expires, …
    refresh_fraction: float = 0.8  # … but not before this fraction of its lifetime (short tokens)
    open_timeout_s: float = 10.0  # to open the socket and get ``ready``
    request_timeout_s: float = 30.0  # one HTTP request
    retry_send_s: float = 1.0  # before resending a send refused as ``rate_limited``/``internal``


class Backoff:
    """Exponential back-off with jitter: attempt ``n`` (0-based) waits a random time between half
    and all of ``min(cap, base · 2ⁿ)`` (never less than ``floor`` when one is asked for).
    ``reset`` after a successful connection."""

    def __init__(self, timings: Timings, random: Callable[[], float]) -> None:
        self._timings = timings
        self._random = random
        self.attempt = 0

    def next_delay(self, *, floor: float = 0.0) -> float:
        t = self._timings
        ceiling = min(t.backoff_cap_s, t.backoff_base_s * 2.0**self.attempt)
        self.attempt += 1
        delay = ceiling * (0.5 + 0.5 * self._random())
        return min(max(delay, floor), max(t.backoff_cap_s, floor))

    def reset(self) -> None:
        self.attempt = 0


def refresh_delay(expires_in: float, timings: Timings) -> float:
    """Seconds from now until the token of ``expires_in`` seconds should be refreshed: ``margin``
    before it expires, but never before ``fraction`` of its lifetime (a token shorter than the margin
    would otherwise be refreshed over and over)."""
    return max(0.0, expires_in - timings.refresh_margin_s, expires_in * timings.refresh_fraction)


class Deduper:
    """Remembers the last ``capacity`` message ids; :meth:`first_time` is true once per id."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, message_id: str) -> bool:
        if message_id in self._seen:
            self._seen.move_to_end(message_id)
            return False
        self._seen[message_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
