"""The :class:`PresenceRegistry` contract, the same test bodies on the in-memory and the Redis adapter.

A *deployment* hands out the registry of each of its processes. In memory there is one process,
so every process id gets the same registry and the multi-process cases check that the one
registry keeps the same promises; the Redis deployment gives each process its own registry and
client over one server. Cases about a process dying need separate processes and are skipped in
memory. Time is injected everywhere; only the liveness-TTL case waits for a real key expiry.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest
from redis.asyncio import Redis

from adapters.memory.presence import InMemoryPresenceRegistry
from adapters.redis.presence import PresenceKeys, RedisPresenceRegistry
from application.ports import PresenceRegistry
from domain.presence import TooManyConnectionsError

T0 = datetime(2026, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)
GRACE_S = 3.0
GRACE = timedelta(seconds=GRACE_S)
TICK = timedelta(microseconds=1)
LIVENESS_TTL_S = 60.0  # long enough never to lapse during a test, unless a test wants it to
TTL_WAIT_S = 5.0  # the longest the liveness-TTL case waits for Redis to expire a key

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis, id="redis")]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Deployment(Protocol):
    """The processes of one deployment, each seen through the port."""

    @property
    def can_crash(self) -> bool:
        """Whether processes are separate, so one can die while another sweeps up after it."""
        ...

    async def process(self, process_id: str) -> PresenceRegistry: ...

    async def crash(self, process_id: str) -> None:
        """Make the process's liveness lapse, as when it is killed (it stops heartbeating)."""
        ...


class MemoryDeployment:
    can_crash = False

    def __init__(self) -> None:
        self._registry = InMemoryPresenceRegistry()

    async def process(self, process_id: str) -> PresenceRegistry:
        return self._registry

    async def crash(self, process_id: str) -> None:
        raise NotImplementedError


class RedisDeployment:
    """Processes with their own client and registry over one Redis, under a prefix of their own."""

    can_crash = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"test-{uuid.uuid4().hex}"
        self.keys = PresenceKeys(self.prefix)
        self.admin = Redis.from_url(url)
        self._clients: list[Redis] = [self.admin]

    async def process(
        self, process_id: str, *, ttl_s: float = LIVENESS_TTL_S, heartbeat: bool = True
    ) -> RedisPresenceRegistry:
        client = Redis.from_url(self.url)
        self._clients.append(client)
        registry = RedisPresenceRegistry(client, process_id=process_id, ttl_s=ttl_s, prefix=self.prefix)
        if heartbeat:
            await registry.heartbeat(now=T0)
        return registry

    async def crash(self, process_id: str) -> None:
        await self.admin.delete(self.keys.process_alive(process_id))

    async def stored_keys(self) -> set[str]:
        return {key.decode() async for key in self.admin.scan_iter(match=f"{self.prefix}:*")}

    async def close(self) -> None:
        try:
            if stored := await self.stored_keys():
                await self.admin.delete(*stored)
        finally:
            for client in self._clients:
                await client.aclose()


@pytest.fixture
async def redis_deployment(redis_url: str) -> AsyncIterator[RedisDeployment]:
    deployment = RedisDeployment(redis_url)
    try:
        yield deployment
    finally:
        await deployment.close()


@pytest.fixture(params=BACKENDS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    if request.param == "memory":
        return MemoryDeployment()
    redis_deployment: RedisDeployment = request.getfixturevalue("redis_deployment")
    return redis_deployment


@pytest.fixture
async def registry(deployment: Deployment) -> PresenceRegistry:
    return await deployment.process("p1")


def require_separate_processes(deployment: Deployment) -> None:
    if not deployment.can_crash:
        pytest.skip("the in-memory registry serves one process: there is no other process to die")


# ---------------------------------------------------------------- one process


async def test_the_first_connection_brings_a_user_online_exactly_once(registry: PresenceRegistry) -> None:
    assert await registry.connect(1, "c1", now=T0) is True
    assert await registry.connect(1, "c1", now=at(1)) is False  # the same connection again
    assert await registry.online_among([1]) == {1}


async def test_a_second_device_reports_nothing_and_keeps_the_user_online(registry: PresenceRegistry) -> None:
    assert await registry.connect(1, "phone", now=T0) is True
    assert await registry.connect(1, "laptop", now=at(1)) is False

    await registry.disconnect(1, "phone", now=at(2))

    assert await registry.settle(now=at(100), grace_s=GRACE_S) == []
    assert await registry.online_among([1]) == {1}


async def test_a_connection_over_the_limit_is_refused_and_changes_nothing(registry: PresenceRegistry) -> None:
    assert await registry.connect(1, "c1", now=T0, limit=2) is True
    assert await registry.connect(1, "c2", now=T0, limit=2) is False
    assert await registry.connect(2, "other-user", now=T0, limit=2) is True  # per user

    with pytest.raises(TooManyConnectionsError):
        await registry.connect(1, "c3", now=at(1), limit=2)
    assert await registry.connect(1, "c2", now=at(1), limit=2) is False  # one it holds again: fine

    await registry.disconnect(1, "c1", now=at(2))
    await registry.disconnect(1, "c3", now=at(2))  # never registered: ignored
    assert await registry.connect(1, "c3", now=at(3), limit=2) is False  # room again
    await registry.disconnect(1, "c2", now=at(4))
    await registry.disconnect(1, "c3", now=at(4))
    assert await registry.settle(now=at(4) + GRACE, grace_s=GRACE_S) == [(1, at(4))]


async def test_a_reconnect_within_the_grace_period_reports_nothing(registry: PresenceRegistry) -> None:
    await registry.connect(1, "c1", now=T0)
    await registry.disconnect(1, "c1", now=at(1))

    assert await registry.online_among([1]) == {1}  # leaving, not gone
    assert await registry.connect(1, "c2", now=at(2)) is False  # a page reload
    assert await registry.settle(now=at(100), grace_s=GRACE_S) == []
    assert await registry.online_among([1]) == {1}


async def test_a_reconnect_after_the_grace_but_before_settling_cancels_the_leave(registry: PresenceRegistry) -> None:
    await registry.connect(1, "c1", now=T0)
    await registry.disconnect(1, "c1", now=at(1))

    assert await registry.connect(1, "c2", now=at(1) + GRACE + timedelta(seconds=10)) is False
    assert await registry.settle(now=at(100), grace_s=GRACE_S) == []
    assert await registry.online_among([1]) == {1}


async def test_settling_reports_the_leave_once_with_when_the_last_connection_closed(
    registry: PresenceRegistry,
) -> None:
    left_at = at(5)
    await registry.connect(1, "c1", now=T0)
    await registry.disconnect(1, "c1", now=left_at)

    assert await registry.settle(now=left_at + GRACE - TICK, grace_s=GRACE_S) == []
    assert await registry.online_among([1]) == {1}

    gone = await registry.settle(now=left_at + GRACE, grace_s=GRACE_S)

    assert gone == [(1, left_at)]
    assert gone[0][1].utcoffset() == timedelta(0)
    assert await registry.settle(now=left_at + GRACE, grace_s=GRACE_S) == []
    assert await registry.settle(now=at(1000), grace_s=GRACE_S) == []
    assert await registry.online_among([1]) == set()


async def test_online_among_counts_connected_and_leaving_users_only(registry: PresenceRegistry) -> None:
    await registry.connect(1, "c1", now=T0)  # connected
    await registry.connect(2, "c2", now=T0)
    await registry.disconnect(2, "c2", now=at(10))  # leaving, within the grace
    await registry.connect(3, "c3", now=T0)
    await registry.disconnect(3, "c3", now=at(1))
    assert await registry.settle(now=at(10), grace_s=GRACE_S) == [(3, at(1))]  # gone

    assert await registry.online_among([1, 2, 3, 4]) == {1, 2}
    assert await registry.online_among(uid for uid in (4, 2, 2)) == {2}
    assert await registry.online_among([]) == set()


async def test_closing_unknown_connections_changes_nothing(registry: PresenceRegistry) -> None:
    await registry.disconnect(1, "never-seen", now=T0)
    await registry.connect(1, "c1", now=T0)
    await registry.disconnect(1, "other", now=at(1))
    await registry.disconnect(2, "c1", now=at(1))  # the right id for the wrong user

    assert await registry.settle(now=at(100), grace_s=GRACE_S) == []
    assert await registry.online_among([1, 2]) == {1}


async def test_a_user_who_went_offline_comes_online_again(registry: PresenceRegistry) -> None:
    await registry.connect(1, "c1", now=T0)
    await registry.disconnect(1, "c1", now=at(1))
    assert await registry.settle(now=at(10), grace_s=GRACE_S) == [(1, at(1))]

    assert await registry.connect(1, "c1", now=at(20)) is True
    await registry.disconnect(1, "c1", now=at(21))
    assert await registry.settle(now=at(30), grace_s=GRACE_S) == [(1, at(21))]


async def test_settling_reports_every_due_user_and_keeps_the_rest(registry: PresenceRegistry) -> None:
    for uid in range(1, 6):
        await registry.connect(uid, f"c{uid}", now=T0)
        await registry.disconnect(uid, f"c{uid}", now=at(uid))

    first = await registry.settle(now=at(3) + GRACE, grace_s=GRACE_S)
    rest = await registry.settle(now=at(100), grace_s=GRACE_S)

    assert sorted(first) == [(1, at(1)), (2, at(2)), (3, at(3))]
    assert sorted(rest) == [(4, at(4)), (5, at(5))]


async def test_a_zero_grace_settles_at_the_moment_of_leaving(registry: PresenceRegistry) -> None:
    await registry.connect(1, "c1", now=T0)
    await registry.disconnect(1, "c1", now=at(1))

    assert await registry.settle(now=at(1) - TICK, grace_s=0) == []
    assert await registry.settle(now=at(1), grace_s=0) == [(1, at(1))]


# ---------------------------------------------------------------- several processes


async def test_a_user_on_two_processes_stays_online_until_both_connections_close(deployment: Deployment) -> None:
    a, b = await deployment.process("a"), await deployment.process("b")

    assert await a.connect(1, "via-a", now=T0) is True
    assert await b.connect(1, "via-b", now=at(1)) is False
    await a.disconnect(1, "via-a", now=at(2))

    assert await a.settle(now=at(100), grace_s=GRACE_S) == []
    assert await b.settle(now=at(100), grace_s=GRACE_S) == []
    assert await a.online_among([1]) == await b.online_among([1]) == {1}

    await b.disconnect(1, "via-b", now=at(200))

    assert await a.settle(now=at(200) + GRACE, grace_s=GRACE_S) == [(1, at(200))]
    assert await b.settle(now=at(300), grace_s=GRACE_S) == []
    assert await b.online_among([1]) == set()


async def test_a_connection_storm_on_two_processes_brings_each_user_online_once(deployment: Deployment) -> None:
    a, b = await deployment.process("a"), await deployment.process("b")
    attempts = [
        (uid, process.connect(uid, f"{name}-{uid}-{n}", now=T0))
        for n in range(10)
        for uid in range(1, 6)
        for name, process in (("a", a), ("b", b))
    ]

    results = await asyncio.gather(*(connect for _, connect in attempts))

    came_online = Counter(uid for (uid, _), result in zip(attempts, results, strict=True) if result)
    assert came_online == dict.fromkeys(range(1, 6), 1)
    assert await b.online_among(range(1, 7)) == set(range(1, 6))


async def test_the_per_user_limit_counts_connections_on_every_process_even_when_they_race(
    deployment: Deployment,
) -> None:
    a, b = await deployment.process("a"), await deployment.process("b")
    await a.connect(1, "a-1", now=T0, limit=3)
    attempts = [
        process.connect(1, f"{name}-{n}", now=T0, limit=3)
        for n in range(2, 8)
        for name, process in (("a", a), ("b", b))
    ]

    results = await asyncio.gather(*attempts, return_exceptions=True)

    refused = [r for r in results if isinstance(r, TooManyConnectionsError)]
    assert (len(results) - len(refused), len(refused)) == (2, 10)  # exactly two more got in
    with pytest.raises(TooManyConnectionsError):
        await b.connect(1, "b-late", now=at(1), limit=3)


async def test_concurrent_settles_on_two_processes_report_each_leave_once(deployment: Deployment) -> None:
    a, b = await deployment.process("a"), await deployment.process("b")
    users = range(1, 21)
    for uid in users:
        process = a if uid % 2 else b
        await process.connect(uid, f"c{uid}", now=T0)
        await process.disconnect(uid, f"c{uid}", now=at(1))

    reports = await asyncio.gather(*(p.settle(now=at(1) + GRACE, grace_s=GRACE_S) for p in (a, b, a, b)))

    gone = list(itertools.chain.from_iterable(reports))
    assert sorted(gone) == [(uid, at(1)) for uid in users]
    assert await a.online_among(users) == set()


async def test_a_crashed_process_s_users_leave_once_after_the_grace(deployment: Deployment) -> None:
    require_separate_processes(deployment)
    a, b, c = await deployment.process("a"), await deployment.process("b"), await deployment.process("c")
    await a.connect(1, "a1", now=T0)  # only on the process that dies
    await a.connect(2, "a2", now=T0)
    await b.connect(2, "b2", now=T0)  # also on a surviving one

    await deployment.crash("a")
    swept_at = at(10)

    assert await b.settle(now=swept_at, grace_s=GRACE_S) == []  # the sweep starts user 1's leave
    assert await c.online_among([1, 2]) == {1, 2}
    assert await c.settle(now=swept_at + GRACE - TICK, grace_s=GRACE_S) == []

    reports = await asyncio.gather(
        b.settle(now=swept_at + GRACE, grace_s=GRACE_S), c.settle(now=swept_at + GRACE, grace_s=GRACE_S)
    )

    assert sorted(itertools.chain.from_iterable(reports)) == [(1, swept_at)]
    assert await c.online_among([1, 2]) == {2}
    assert await b.settle(now=at(1000), grace_s=GRACE_S) == []


async def test_a_user_reconnecting_elsewhere_after_a_crash_stays_online(deployment: Deployment) -> None:
    require_separate_processes(deployment)
    a, b = await deployment.process("a"), await deployment.process("b")
    await a.connect(1, "a1", now=T0)
    await deployment.crash("a")
    assert await b.settle(now=at(10), grace_s=GRACE_S) == []

    assert await b.connect(1, "b1", now=at(11)) is False

    assert await b.settle(now=at(1000), grace_s=GRACE_S) == []
    assert await b.online_among([1]) == {1}


async def test_a_swept_process_that_was_only_stalled_cannot_report_twice(deployment: Deployment) -> None:
    require_separate_processes(deployment)
    a, b = await deployment.process("a"), await deployment.process("b")
    await a.connect(1, "a1", now=T0)
    await deployment.crash("a")
    assert await b.settle(now=at(10), grace_s=GRACE_S) == []
    assert await b.settle(now=at(10) + GRACE, grace_s=GRACE_S) == [(1, at(10))]

    await a.disconnect(1, "a1", now=at(20))  # the stalled process closes its socket late

    assert await a.settle(now=at(1000), grace_s=GRACE_S) == []
    assert await b.online_among([1]) == set()


async def test_a_connection_registered_again_elsewhere_outlives_its_first_process(deployment: Deployment) -> None:
    require_separate_processes(deployment)
    a, b = await deployment.process("a"), await deployment.process("b")
    assert await a.connect(1, "c1", now=T0) is True
    assert await b.connect(1, "c1", now=at(1)) is False  # the same id, now held by b

    await deployment.crash("a")

    assert await b.settle(now=at(10), grace_s=GRACE_S) == []
    assert await b.settle(now=at(10) + GRACE, grace_s=GRACE_S) == []
    await b.disconnect(1, "c1", now=at(20))
    assert await b.settle(now=at(20) + GRACE, grace_s=GRACE_S) == [(1, at(20))]


# ---------------------------------------------------------------- Redis only: liveness and keys


@pytest.mark.redis
async def test_a_process_that_stops_heartbeating_is_swept_when_its_liveness_key_expires(
    redis_deployment: RedisDeployment,
) -> None:
    dying = await redis_deployment.process("dying", ttl_s=0.2)
    survivor = await redis_deployment.process("survivor")
    await dying.connect(1, "d1", now=T0)
    alive_key = redis_deployment.keys.process_alive("dying")

    loop = asyncio.get_running_loop()
    deadline = loop.time() + TTL_WAIT_S
    while await redis_deployment.admin.exists(alive_key):
        assert loop.time() < deadline, f"Redis did not expire {alive_key} within {TTL_WAIT_S} s"
        await asyncio.sleep(0.05)

    assert await survivor.settle(now=at(10), grace_s=GRACE_S) == []
    assert await survivor.online_among([1]) == {1}
    assert await survivor.settle(now=at(10) + GRACE, grace_s=GRACE_S) == [(1, at(10))]
    assert await survivor.settle(now=at(1000), grace_s=GRACE_S) == []
    keys = redis_deployment.keys
    assert await redis_deployment.admin.smembers(keys.processes) == {b"survivor"}
    assert not await redis_deployment.admin.exists(keys.process_connections("dying"))


@pytest.mark.redis
async def test_a_heartbeat_keeps_the_process_alive_for_the_ttl(redis_deployment: RedisDeployment) -> None:
    process = await redis_deployment.process("p", ttl_s=30)
    other = await redis_deployment.process("other")
    await process.connect(1, "c1", now=T0)

    await process.heartbeat(now=at(1))

    alive_key = redis_deployment.keys.process_alive("p")
    assert 0 < await redis_deployment.admin.pttl(alive_key) <= 30_000
    assert await other.settle(now=at(1000), grace_s=GRACE_S) == []
    assert await other.settle(now=at(1000) + GRACE, grace_s=GRACE_S) == []
    assert await other.online_among([1]) == {1}


@pytest.mark.redis
async def test_a_process_connecting_before_its_first_heartbeat_is_not_swept(redis_deployment: RedisDeployment) -> None:
    early = await redis_deployment.process("early", heartbeat=False)
    other = await redis_deployment.process("other")

    assert await early.connect(1, "c1", now=T0) is True

    assert await other.settle(now=at(1000), grace_s=GRACE_S) == []
    assert await other.settle(now=at(1000) + GRACE, grace_s=GRACE_S) == []
    assert await other.online_among([1]) == {1}


@pytest.mark.redis
async def test_a_swept_process_registers_again_with_its_next_heartbeat(redis_deployment: RedisDeployment) -> None:
    a, b = await redis_deployment.process("a"), await redis_deployment.process("b")
    await a.connect(1, "a1", now=T0)
    await redis_deployment.crash("a")
    assert await b.settle(now=at(10), grace_s=GRACE_S) == []

    await a.heartbeat(now=at(11))
    assert await a.connect(1, "a2", now=at(12)) is False  # the leave was not settled yet

    assert await b.settle(now=at(1000), grace_s=GRACE_S) == []
    assert await b.online_among([1]) == {1}


@pytest.mark.redis
async def test_nothing_is_left_behind_for_users_who_went_offline(redis_deployment: RedisDeployment) -> None:
    a, b = await redis_deployment.process("a"), await redis_deployment.process("b")
    await a.connect(1, "a1", now=T0)
    await b.connect(1, "b1", now=T0)
    await b.connect(2, "b2", now=T0)
    await a.disconnect(1, "a1", now=at(1))
    await b.disconnect(1, "b1", now=at(1))
    await b.disconnect(2, "b2", now=at(1))

    assert sorted(await a.settle(now=at(10), grace_s=GRACE_S)) == [(1, at(1)), (2, at(1))]

    keys = redis_deployment.keys
    assert await redis_deployment.stored_keys() == {keys.processes, keys.process_alive("a"), keys.process_alive("b")}
