"""Fixed-window attempt counters shared by every process through Redis.

One hash per key, ``{prefix}:attempts:{key}`` with fields ``count`` and ``start`` (epoch µs of the
window's first attempt). The window is judged with the injected ``now``, exactly like
:class:`adapters.memory.counters.InMemoryAttemptCounter`; the key's Redis expiry (the window's
length, set when a window starts) only reclaims memory.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from adapters.redis import epoch_us, from_epoch_us, text
from application.ports import AttemptCounter
from domain.auth import AttemptWindow

if TYPE_CHECKING:
    from datetime import datetime

    from redis.asyncio import Redis

# KEYS: the counter; ARGV: now (µs), window (µs), window (ms)
# Returns {count, start (µs)} of the window including this attempt.
_HIT = """
local start = redis.call('HGET', KEYS[1], 'start')
if start and tonumber(start) + tonumber(ARGV[2]) > tonumber(ARGV[1]) then
  return {redis.call('HINCRBY', KEYS[1], 'count', 1), start}
end
redis.call('HSET', KEYS[1], 'count', 1, 'start', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, ARGV[1]}
"""


class RedisAttemptCounter(AttemptCounter):
    """Attempt windows in Redis; :meth:`hit` is one atomic script, :meth:`get` one read."""

    def __init__(self, redis: Redis, *, prefix: str = "chat") -> None:
        self._redis = redis
        self._prefix = f"{prefix}:attempts"
        self._hit = redis.register_script(_HIT)

    def key(self, key: str) -> str:
        """The Redis key holding the window of ``key``."""
        return f"{self._prefix}:{key}"

    async def get(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow | None:
        count, start = await self._redis.hmget(self.key(key), ["count", "start"])
        if count is None or start is None:
            return None
        window = AttemptWindow(count=int(text(count)), started_at=from_epoch_us(int(text(start))))
        return window if window.is_open(now, window_s) else None

    async def hit(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow:
        window_us = window_s * 1_000_000
        args = [epoch_us(now), window_us, max(1, math.ceil(window_us / 1000))]
        count, start = await self._hit(keys=[self.key(key)], args=args)
        return AttemptWindow(count=int(count), started_at=from_epoch_us(int(text(start))))

    async def reset(self, key: str) -> None:
        await self._redis.delete(self.key(key))
