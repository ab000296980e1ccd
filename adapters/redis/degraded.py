"""What scaled-out mode does while Redis is down or hung (decision 39): it degrades, never fails.

* :class:`FallbackAttemptCounter` — login and registration limits count in this process's memory
  while Redis fails (so register, login and password change keep answering), and go back to Redis
  once it answers again. Redis is asked again at most every ``retry_s``, so a hung Redis costs one
  request one timeout, not every request.
* :class:`HealingPresence` — this process's live connections are mirrored here. While Redis
  fails, connections come and go in the mirror only (a new socket is not held up; the per-user cap
  counts this process's connections), and ``online`` is answered from the mirror. Once Redis
  answers again (or comes back empty after a restart: the heartbeat tells), :meth:`heal`
  re-registers every live connection, removes what Redis still holds that closed meanwhile, and
  reports who came online and who left while Redis could not record it, for
  :class:`~application.presence.SettlePresence` to announce.

Redis calls are bounded by the client's timeouts (``CHAT_REDIS_TIMEOUT_S``, see the container).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import RedisError

from application.ports import AttemptCounter, PresenceRegistry, PresenceRepair
from domain.presence import TooManyConnectionsError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from datetime import datetime

    from adapters.redis.presence import RedisPresenceRegistry
    from domain.auth import AttemptWindow

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_HEAL_PASSES = 10  # a heal that saw connections change in each of these many passes goes on next sweep

# What an unreachable, killed or hung Redis raises (redis-py wraps most, not all, socket errors).
REDIS_DOWN = (RedisError, OSError, TimeoutError)


class ErrorTally:
    """How many Redis calls of this process failed (the metrics read it)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


REDIS_ERRORS = ErrorTally()


class FallbackAttemptCounter(AttemptCounter):
    """``primary`` (Redis) while it answers, else ``fallback`` (this process's memory). A window
    counted in memory during an outage is not carried into Redis: the limits hold per process
    while Redis is down (decision 39)."""

    def __init__(self, primary: AttemptCounter, fallback: AttemptCounter, *, retry_s: float = 5.0) -> None:
        self._primary, self._fallback = primary, fallback
        self._retry = timedelta(seconds=retry_s)
        self._down_since: datetime | None = None  # when the primary last failed (None: it works)

    def _primary_worth_trying(self, now: datetime) -> bool:
        return self._down_since is None or now - self._down_since >= self._retry

    def _failed(self, now: datetime, exc: BaseException) -> None:
        if self._down_since is None:
            log.warning("attempt counters: Redis unavailable (%s); counting in this process", type(exc).__name__)
        self._down_since = now

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.info("attempt counters: Redis answers again")
            self._down_since = None

    async def get(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow | None:
        return await self._answer(now, lambda counter: counter.get(key, now=now, window_s=window_s))

    async def hit(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow:
        return await self._answer(now, lambda counter: counter.hit(key, now=now, window_s=window_s))

    async def _answer(self, now: datetime, ask: Callable[[AttemptCounter], Awaitable[T]]) -> T:
        """Redis's answer while it gives one, else (and for a while after it failed) this process's."""
        if self._primary_worth_trying(now):
            try:
                answer = await ask(self._primary)
            except REDIS_DOWN as exc:
                REDIS_ERRORS.count += 1
                self._failed(now, exc)
            else:
                self._recovered()
                return answer
        return await ask(self._fallback)

    async def reset(self, key: str) -> None:
        await self._fallback.reset(key)
        if self._down_since is None:
            try:
                await self._primary.reset(key)
            except REDIS_DOWN as exc:
                REDIS_ERRORS.count += 1
                log.warning("attempt counters: could not reset %s in Redis (%s)", key, type(exc).__name__)


class HealingPresence(PresenceRegistry):
    """:class:`RedisPresenceRegistry` that survives Redis outages and restarts; see the module
    docstring. ``unsynced`` means Redis may not hold what this process holds: set by a failed
    call or by a heartbeat that found this process unregistered (Redis restarted empty, or the
    process was swept as stalled), cleared by a :meth:`heal` that ran with nothing changing
    meanwhile.

    A heal waits until Redis has answered for ``heal_after_s``: the transitions it reports travel
    by pub/sub, and the other processes' listeners re-subscribe within their reconnect delay
    (0.2 s) after Redis is back; announced sooner, a contact's process could miss them."""

    def __init__(self, registry: RedisPresenceRegistry, *, heal_after_s: float = 1.0) -> None:
        self._registry = registry
        self._heal_after = timedelta(seconds=heal_after_s)
        self._answering_since: datetime | None = None  # Redis answered every heal probe since
        self._here: dict[str, int] = {}  # this process's live connections: connection id → user id
        self._users: Counter[int] = Counter()  # live connections per user, here
        self._left: dict[int, datetime] = {}  # users gone from here while unsynced → when
        self.unsynced = False
        self._touched: dict[str, int] | None = None  # connection id → user id, changed during a heal

    @property
    def process_id(self) -> str:
        return self._registry.process_id

    def _lost(self, exc: BaseException) -> None:
        if not self.unsynced:
            log.warning("presence: Redis unavailable (%s); connections are registered when it is back", exc)
        self.unsynced = True
        self._answering_since = None

    async def heartbeat(self, *, now: datetime) -> None:
        """Refresh this process's liveness; raises what Redis raises (the heartbeat loop logs it)."""
        try:
            fresh = await self._registry.heartbeat(now=now)
        except REDIS_DOWN as exc:
            REDIS_ERRORS.count += 1
            self._lost(exc)
            raise
        if fresh and self._here:
            log.warning("presence: this process was not registered in Redis (restart or sweep); healing")
            self.unsynced = True

    async def connect(self, user_id: int, connection_id: str, *, now: datetime, limit: int | None = None) -> bool:
        if self.unsynced and limit is not None and self._users[user_id] >= limit:
            raise TooManyConnectionsError(limit)
        came_online = False
        if not self.unsynced:
            try:
                came_online = await self._registry.connect(user_id, connection_id, now=now, limit=limit)
            except REDIS_DOWN as exc:
                REDIS_ERRORS.count += 1
                self._lost(exc)
        if self._touched is not None:
            self._touched[connection_id] = user_id
        if connection_id not in self._here:
            self._here[connection_id] = user_id
            self._users[user_id] += 1
        self._left.pop(user_id, None)
        return came_online

    async def disconnect(self, user_id: int, connection_id: str, *, now: datetime) -> None:
        if self._touched is not None:
            self._touched[connection_id] = user_id
        if self._here.pop(connection_id, None) is not None:
            self._users[user_id] -= 1
            if self._users[user_id] <= 0:
                del self._users[user_id]
        if not self.unsynced:
            try:
                await self._registry.disconnect(user_id, connection_id, now=now)
            except REDIS_DOWN as exc:
                REDIS_ERRORS.count += 1
                self._lost(exc)
            else:
                return
        if user_id not in self._users:
            self._left[user_id] = now

    async def settle(self, *, now: datetime, grace_s: float) -> list[tuple[int, datetime]]:
        return await self._registry.settle(now=now, grace_s=grace_s)

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        wanted = list(user_ids)
        if not self.unsynced:
            try:
                return await self._registry.online_among(wanted)
            except REDIS_DOWN as exc:
                REDIS_ERRORS.count += 1
                self._lost(exc)
        return {uid for uid in wanted if uid in self._users}  # what this process knows

    async def heal(self, *, now: datetime) -> PresenceRepair:
        """Make Redis hold what this process holds (see the class docstring). Connections that
        come and go meanwhile are reconciled in further passes, until one pass sees none: only
        then are calls sent to Redis again (a busy process converges, its churn per pass is small)."""
        if not self.unsynced:
            return PresenceRepair()
        try:
            held = await self._registry.held_here()
        except REDIS_DOWN:
            REDIS_ERRORS.count += 1
            self._answering_since = None
            raise
        if self._answering_since is None:
            self._answering_since = now
        if now - self._answering_since < self._heal_after:
            return PresenceRepair()
        self._touched = {}
        pending = {cid: uid for uid, cid in held if self._here.get(cid) != uid}  # closed meanwhile
        pending.update((cid, uid) for cid, uid in self._here.items() if (uid, cid) not in held)
        came_online: list[int] = []
        for _ in range(MAX_HEAL_PASSES):
            for cid, uid in pending.items():
                if self._here.get(cid) == uid:
                    if await self._registry.connect(uid, cid, now=now):
                        came_online.append(uid)
                else:
                    await self._registry.disconnect(uid, cid, now=now)
            pending, self._touched = self._touched, {}
            if not pending:
                break
        else:
            self._touched = None
            return PresenceRepair(came_online=came_online)  # still churning: the next sweep goes on
        self.unsynced, self._answering_since, self._touched = False, None, None
        left, self._left = self._left, {}
        still_online = await self._registry.online_among(left)
        went_offline = [(uid, at) for uid, at in left.items() if uid not in still_online and uid not in self._users]
        log.info("presence: Redis holds this process's %d connections again", len(self._here))
        return PresenceRepair(came_online=came_online, went_offline=went_offline)
