"""What runs while the app serves, as resources of the container: ``init_resources()`` starts it
before the first request, ``shutdown_resources()`` stops it after the connections were closed.

:func:`serving` is the one resource; the deployment mode only changes which
:func:`one_process` / :func:`scaled_out` part the container hands it. Start order: the schema
check (the app refuses to serve an un-migrated database), then in scaled-out mode the first
presence heartbeat, the fan-out and the heartbeat loop, then the push dispatcher (when a push
gateway is configured). Stop order: the write batcher (whoever still waits learns it was not
written), the push dispatcher, the heartbeat loop, the fan-out (it flushes what was published),
the Redis client, the database engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from adapters.pushgateway.http import HttpPushGateway
    from adapters.redis.degraded import HealingPresence
    from adapters.redis.fanout import RedisFanout
    from application.group_commit import GroupCommit
    from application.ports import Clock
    from application.push import PushDispatcher

log = logging.getLogger("p2p_chat")

MIN_HEARTBEAT_S = 0.05


async def serving(
    *,
    check_schema: Callable[[], Awaitable[None]],
    deployment: AbstractAsyncContextManager[None],
    pushing: AbstractAsyncContextManager[None],
    writes: GroupCommit,
    engine: AsyncEngine,
) -> AsyncIterator[None]:
    """The app's lifetime: raises (and nothing starts) unless the schema is current."""
    await check_schema()
    try:
        async with deployment, pushing:
            try:
                yield
            finally:
                await writes.close()
    finally:
        await engine.dispose()


@asynccontextmanager
async def push_dispatching(
    dispatcher: PushDispatcher, gateway: HttpPushGateway, *, poll_s: float
) -> AsyncIterator[None]:
    """The push dispatcher's rounds run while the app serves (``CHAT_PUSH_GATEWAY_URL`` set); on
    stop the round in progress is cancelled (its claimed jobs come back when their lease ends)
    and the gateway's HTTP client closes."""
    rounds = asyncio.create_task(dispatcher.run(poll_s), name="push-dispatcher")
    try:
        yield
    finally:
        rounds.cancel()
        await asyncio.gather(rounds, return_exceptions=True)
        await gateway.aclose()


def one_process() -> AbstractAsyncContextManager[None]:
    """One process: presence and fan-out live in memory; nothing runs beside the app."""
    return contextlib.nullcontext()


@asynccontextmanager
async def scaled_out(
    redis: Redis, fanout: RedisFanout, presence: HealingPresence, clock: Clock, *, presence_ttl_s: float
) -> AsyncIterator[None]:
    """Several processes over Redis: this process's presence heartbeats and its pub/sub fan-out
    run while it serves; the Redis client closes after them. Redis must answer at the start."""
    await presence.heartbeat(now=clock.now())
    await fanout.start()
    beats = asyncio.create_task(
        heartbeat_loop(presence, clock, max(MIN_HEARTBEAT_S, presence_ttl_s / 3)), name="presence-heartbeat"
    )
    try:
        yield
    finally:
        beats.cancel()
        await asyncio.gather(beats, return_exceptions=True)
        await fanout.stop()
        await redis.aclose()


async def heartbeat_loop(presence: HealingPresence, clock: Clock, interval_s: float) -> None:
    """Keep this process's presence liveness key fresh, so that if the process dies its
    connections expire after ``CHAT_PRESENCE_TTL_S``."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await presence.heartbeat(now=clock.now())
        except Exception as exc:  # Redis may be restarting; the next beat retries
            log.warning("presence heartbeat failed: %s", type(exc).__name__)
