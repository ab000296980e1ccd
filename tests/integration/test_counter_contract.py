"""The :class:`AttemptCounter` contract, the same test bodies on the in-memory and the Redis adapter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from adapters.memory.counters import InMemoryAttemptCounter
from adapters.redis.counters import RedisAttemptCounter
from application.ports import AttemptCounter
from domain.auth import AttemptWindow

T0 = datetime(2026, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)
WINDOW_S = 60
TICK = timedelta(microseconds=1)

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis, id="redis")]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def redis_counter(redis_client: Redis) -> AsyncIterator[RedisAttemptCounter]:
    prefix = f"test-{uuid.uuid4().hex}"
    try:
        yield RedisAttemptCounter(redis_client, prefix=prefix)
    finally:
        if stored := [key async for key in redis_client.scan_iter(match=f"{prefix}:*")]:
            await redis_client.delete(*stored)


@pytest.fixture(params=BACKENDS)
def counter(request: pytest.FixtureRequest) -> AttemptCounter:
    if request.param == "memory":
        return InMemoryAttemptCounter()
    redis_counter: RedisAttemptCounter = request.getfixturevalue("redis_counter")
    return redis_counter


async def test_an_unknown_key_has_no_window(counter: AttemptCounter) -> None:
    assert await counter.get("login:account:nobody", now=T0, window_s=WINDOW_S) is None


async def test_the_window_starts_at_the_first_attempt_and_counts_the_later_ones(counter: AttemptCounter) -> None:
    assert await counter.hit("k", now=T0, window_s=WINDOW_S) == AttemptWindow(count=1, started_at=T0)
    assert await counter.hit("k", now=at(10), window_s=WINDOW_S) == AttemptWindow(count=2, started_at=T0)
    assert await counter.hit("k", now=at(WINDOW_S) - TICK, window_s=WINDOW_S) == AttemptWindow(count=3, started_at=T0)

    window = await counter.get("k", now=at(WINDOW_S) - TICK, window_s=WINDOW_S)

    assert window == AttemptWindow(count=3, started_at=T0)
    assert window.started_at.utcoffset() == timedelta(0)


async def test_a_closed_window_is_gone_and_the_next_attempt_starts_a_new_one(counter: AttemptCounter) -> None:
    await counter.hit("k", now=T0, window_s=WINDOW_S)
    await counter.hit("k", now=at(1), window_s=WINDOW_S)

    assert await counter.get("k", now=at(WINDOW_S), window_s=WINDOW_S) is None
    assert await counter.hit("k", now=at(WINDOW_S), window_s=WINDOW_S) == AttemptWindow(
        count=1, started_at=at(WINDOW_S)
    )
    assert await counter.hit("k", now=at(WINDOW_S + 1), window_s=WINDOW_S) == AttemptWindow(
        count=2, started_at=at(WINDOW_S)
    )


async def test_the_window_length_is_the_callers(counter: AttemptCounter) -> None:
    await counter.hit("k", now=T0, window_s=WINDOW_S)

    assert await counter.get("k", now=at(10), window_s=10) is None
    assert await counter.get("k", now=at(10), window_s=WINDOW_S) == AttemptWindow(count=1, started_at=T0)


async def test_reset_forgets_the_window(counter: AttemptCounter) -> None:
    await counter.hit("k", now=T0, window_s=WINDOW_S)
    await counter.hit("k", now=at(1), window_s=WINDOW_S)

    await counter.reset("k")
    await counter.reset("never-hit")

    assert await counter.get("k", now=at(2), window_s=WINDOW_S) is None
    assert await counter.hit("k", now=at(3), window_s=WINDOW_S) == AttemptWindow(count=1, started_at=at(3))


async def test_keys_are_counted_separately(counter: AttemptCounter) -> None:
    await counter.hit("login:account:a", now=T0, window_s=WINDOW_S)
    await counter.hit("login:account:a", now=at(1), window_s=WINDOW_S)
    await counter.hit("login:address:a", now=at(2), window_s=WINDOW_S)

    assert await counter.get("login:account:a", now=at(3), window_s=WINDOW_S) == AttemptWindow(count=2, started_at=T0)
    assert await counter.get("login:address:a", now=at(3), window_s=WINDOW_S) == AttemptWindow(
        count=1, started_at=at(2)
    )


async def test_concurrent_attempts_are_each_counted_exactly_once(counter: AttemptCounter) -> None:
    # One instant for all: which attempt reaches the store first is up to the scheduler.
    windows = await asyncio.gather(*(counter.hit("k", now=T0, window_s=WINDOW_S) for _ in range(50)))

    assert sorted(window.count for window in windows) == list(range(1, 51))
    assert {window.started_at for window in windows} == {T0}
    assert await counter.get("k", now=at(1), window_s=WINDOW_S) == AttemptWindow(count=50, started_at=T0)


@pytest.mark.redis
async def test_the_redis_key_expires_with_the_window_it_holds(
    redis_counter: RedisAttemptCounter, redis_client: Redis
) -> None:
    key = redis_counter.key("k")
    await redis_counter.hit("k", now=T0, window_s=WINDOW_S)
    assert 0 < await redis_client.pttl(key) <= WINDOW_S * 1000

    await redis_counter.hit("k", now=at(WINDOW_S), window_s=5)  # a new window, shorter
    assert 0 < await redis_client.pttl(key) <= 5000

    await redis_counter.reset("k")
    assert not await redis_client.exists(key)
