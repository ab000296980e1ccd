"""Presence shared by every process through Redis, with the rules of :mod:`domain.presence`.

Each transition is decided inside one Lua script, so Redis orders them and no two processes
report the same one. Key layout (``B`` = ``{prefix}:presence``; user ids in decimal):

* ``B:user:{user_id}:connections`` — hash, connection id → id of the process holding it. A user
  is connected while this key exists.
* ``B:online`` — set of the user ids announced online (connected, or leaving within the grace).
* ``B:leaving`` — sorted set, user id → ``left_at`` (epoch µs) of users whose last connection
  closed and whose leave is not settled yet. Invariant: a leaving user has no connection.
* ``B:processes`` — set of the process ids that may hold connections.
* ``B:process:{process_id}:alive`` — the process's liveness key (last heartbeat's ``now``),
  expiring ``ttl_s`` after its last heartbeat.
* ``B:process:{process_id}:connections`` — set of ``"{user_id}:{connection_id}"`` held by the
  process, so they can be removed when it dies.

:meth:`RedisPresenceRegistry.settle` first sweeps every registered process whose liveness key has
expired (the process crashed or stalled): its connections are removed as if closed at the
settle's ``now``. Keyspace notifications are not used. The scripts build the per-user and
per-process key names themselves, so this adapter needs a single Redis (not Redis Cluster).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from adapters.redis import epoch_us, from_epoch_us, text
from application.ports import PresenceRegistry, PresenceRepair
from domain.presence import TooManyConnectionsError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from redis.asyncio import Redis

# KEYS: user connections, process connections, online, leaving, processes, process alive
# ARGV: user id, connection id, process id, now (µs), ttl (ms), base, limit (0: none)
# Returns 1 (came online), 0, or -1: refused, the user holds ``limit`` other connections.
_CONNECT = """
local member = ARGV[1] .. ':' .. ARGV[2]
local owner = redis.call('HGET', KEYS[1], ARGV[2])
local limit = tonumber(ARGV[7])
if limit > 0 and not owner and redis.call('HLEN', KEYS[1]) >= limit then
  return -1
end
if owner and owner ~= ARGV[3] then
  redis.call('SREM', ARGV[6] .. ':process:' .. owner .. ':connections', member)
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[2], member)
redis.call('SADD', KEYS[5], ARGV[3])
redis.call('SET', KEYS[6], ARGV[4], 'PX', ARGV[5], 'NX')
redis.call('ZREM', KEYS[4], ARGV[1])
return redis.call('SADD', KEYS[3], ARGV[1])
"""

# KEYS: user connections, online, leaving
# ARGV: user id, connection id, now (µs), base
_DISCONNECT = """
local owner = redis.call('HGET', KEYS[1], ARGV[2])
if not owner then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('SREM', ARGV[4] .. ':process:' .. owner .. ':connections', ARGV[1] .. ':' .. ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return 1
"""

# KEYS: processes, online, leaving
# ARGV: base, now (µs), cutoff = now - grace (µs)
# Returns a flat list: user id, left_at (µs), user id, left_at, ...
_SETTLE = """
local base = ARGV[1]
for _, pid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local process = base .. ':process:' .. pid
  if redis.call('EXISTS', process .. ':alive') == 0 then
    for _, member in ipairs(redis.call('SMEMBERS', process .. ':connections')) do
      local sep = string.find(member, ':', 1, true)
      local uid = string.sub(member, 1, sep - 1)
      local connections = base .. ':user:' .. uid .. ':connections'
      if redis.call('HGET', connections, string.sub(member, sep + 1)) == pid then
        redis.call('HDEL', connections, string.sub(member, sep + 1))
        if redis.call('EXISTS', connections) == 0 and redis.call('SISMEMBER', KEYS[2], uid) == 1 then
          redis.call('ZADD', KEYS[3], ARGV[2], uid)
        end
      end
    end
    redis.call('DEL', process .. ':connections')
    redis.call('SREM', KEYS[1], pid)
  end
end
local gone = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[3], 'WITHSCORES')
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[3], due[i])
  redis.call('SREM', KEYS[2], due[i])
  gone[#gone + 1] = due[i]
  gone[#gone + 1] = due[i + 1]
end
return gone
"""

# KEYS: process alive, processes
# ARGV: now (µs), ttl (ms), process id
_HEARTBEAT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('SADD', KEYS[2], ARGV[3])
"""


class PresenceKeys:
    """The key names of one deployment's presence (the scripts derive the same names from ``base``)."""

    def __init__(self, prefix: str) -> None:
        self.base = f"{prefix}:presence"
        self.online = f"{self.base}:online"
        self.leaving = f"{self.base}:leaving"
        self.processes = f"{self.base}:processes"

    def user_connections(self, user_id: int) -> str:
        return f"{self.base}:user:{user_id}:connections"

    def process_connections(self, process_id: str) -> str:
        return f"{self.base}:process:{process_id}:connections"

    def process_alive(self, process_id: str) -> str:
        return f"{self.base}:process:{process_id}:alive"


class RedisPresenceRegistry(PresenceRegistry):
    """This process's view of the deployment-wide presence kept in Redis.

    One instance per process, with a ``process_id`` unique in the deployment. The application calls
    :meth:`heartbeat` every ``ttl_s / 3``; a process whose liveness key lapses is treated as
    crashed by the next :meth:`settle` of any process, and its connections are removed. Each call
    is one round trip; Redis errors propagate.
    """

    def __init__(self, redis: Redis, *, process_id: str, ttl_s: float, prefix: str = "chat") -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._redis = redis
        self._process_id = process_id
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self.keys = PresenceKeys(prefix)
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)
        self._settle = redis.register_script(_SETTLE)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    @property
    def process_id(self) -> str:
        return self._process_id

    async def heartbeat(self, *, now: datetime) -> bool:
        """Refresh this process's liveness key (expiring ``ttl_s`` from now, by Redis's clock) and
        register the process, also after another process swept it as crashed. True when the
        process was not registered: the first beat, or Redis lost or swept what it held."""
        keys = [self.keys.process_alive(self._process_id), self.keys.processes]
        return int(await self._heartbeat(keys=keys, args=[epoch_us(now), self._ttl_ms, self._process_id])) == 1

    async def held_here(self) -> set[tuple[int, str]]:
        """The ``(user id, connection id)`` pairs Redis holds for this process."""
        members = await self._redis.smembers(self.keys.process_connections(self._process_id))
        pairs = (text(member).partition(":") for member in members)
        return {(int(uid), cid) for uid, _, cid in pairs}

    async def heal(self, *, now: datetime) -> PresenceRepair:
        """Nothing to repair by itself: :class:`adapters.redis.degraded.HealingPresence` does."""
        return PresenceRepair()

    async def connect(self, user_id: int, connection_id: str, *, now: datetime, limit: int | None = None) -> bool:
        """Also registers this process and, when its liveness key is missing (no heartbeat yet, or
        swept after a stall), creates it: a process that connects users is alive. The ``limit``
        counts every connection registered for the user, a crashed process's too until a settle
        sweeps them (at most ``ttl_s`` and a presence sweep after the crash)."""
        k = self.keys
        keys = [
            k.user_connections(user_id),
            k.process_connections(self._process_id),
            k.online,
            k.leaving,
            k.processes,
            k.process_alive(self._process_id),
        ]
        args: list[str | int] = [user_id, connection_id, self._process_id, epoch_us(now), self._ttl_ms, k.base]
        outcome = int(await self._connect(keys=keys, args=[*args, limit or 0]))
        if outcome < 0:
            raise TooManyConnectionsError(limit or 0)
        return outcome == 1

    async def disconnect(self, user_id: int, connection_id: str, *, now: datetime) -> None:
        k = self.keys
        keys = [k.user_connections(user_id), k.online, k.leaving]
        await self._disconnect(keys=keys, args=[user_id, connection_id, epoch_us(now), k.base])

    async def settle(self, *, now: datetime, grace_s: float) -> list[tuple[int, datetime]]:
        k = self.keys
        cutoff = now - timedelta(seconds=grace_s)  # left_at <= cutoff  <=>  now >= left_at + grace
        args: list[str | int] = [k.base, epoch_us(now), epoch_us(cutoff)]
        reply = await self._settle(keys=[k.processes, k.online, k.leaving], args=args)
        flat = [text(item) for item in reply]
        return [(int(uid), from_epoch_us(round(float(left)))) for uid, left in zip(flat[::2], flat[1::2], strict=True)]

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return set()
        flags = await self._redis.smismember(self.keys.online, [str(uid) for uid in wanted])
        return {uid for uid, flag in zip(wanted, flags, strict=True) if flag}
