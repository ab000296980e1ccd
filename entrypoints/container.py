"""The composition root: the only module that knows every adapter and wires them to the use cases."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable
from functools import partial

from dependency_injector import containers, providers
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from adapters.auth.passwords import Argon2PasswordHasher
from adapters.auth.tokens import PyJwtTokenService
from adapters.memory.counters import InMemoryAttemptCounter
from adapters.memory.fanout import InMemoryFanout
from adapters.memory.presence import InMemoryPresenceRegistry
from adapters.pushgateway.http import HttpPushGateway
from adapters.redis.counters import RedisAttemptCounter
from adapters.redis.degraded import REDIS_ERRORS, FallbackAttemptCounter, HealingPresence
from adapters.redis.fanout import RedisFanout
from adapters.redis.presence import RedisPresenceRegistry
from adapters.sqlalchemy.engine import create_engine, make_sessionmaker
from adapters.sqlalchemy.fastpath.memo import StoreMemo
from adapters.sqlalchemy.health import count_pending, describe, ping
from adapters.sqlalchemy.migrate import ensure_current
from adapters.sqlalchemy.orm import start_mappers
from adapters.sqlalchemy.push import SqlAlchemyPushOutbox
from adapters.sqlalchemy.uow import DATABASE_ERRORS, SqlAlchemyUnitOfWork
from adapters.system.clock import SystemClock
from adapters.system.ids import Uuid7Ids
from application.account_life import DeleteAccount, ExportAccount
from application.accounts import (
    Authenticate,
    ChangePassword,
    EndSession,
    ListSessions,
    LoginIssuer,
    PasswordConfirmation,
    RefreshLogin,
    RegisterUser,
    RevokedAmong,
    SignIn,
    SignOut,
    SignOutEverywhere,
)
from application.group_commit import GroupCommit
from application.live.revocation import RevocationSweep
from application.messaging import (
    AcknowledgeDelivery,
    History,
    ListConversations,
    MarkRead,
    PendingFor,
    SendMessage,
    StillPending,
)
from application.presence import Connect, Disconnect, SettlePresence, VisibleOnline
from application.push import DeleteDevice, ListDevices, PushDispatcher, PushPolicy, RegisterDevice
from application.social import BlockUser, ListBlocked, RelayTyping, UnblockUser
from application.users import CardMaker, GetProfile, GetUser, ListContacts, LookupLimit, RenameUser, SearchUsers
from domain.auth import LoginThrottle
from entrypoints.lifecycle import one_process, push_dispatching, scaled_out, serving
from entrypoints.metrics import Metrics
from entrypoints.settings import Settings


def connect_redis(url: str | None, timeout_s: float) -> Redis:
    """The process's Redis client. Every connect and command is bounded by ``timeout_s``
    (``CHAT_REDIS_TIMEOUT_S``) and never retried (redis-py's retries nest: a connect retried
    inside a retried command made a hung Redis cost a login 2.5 s): a down or hung Redis costs a
    caller one timeout, and the callers' fallbacks (adapters/redis/degraded.py) then stop asking
    for a while. Pub/sub's blocking reads are not bounded by it (the fan-out PINGs a silent
    connection)."""
    if url is None:
        raise RuntimeError("CHAT_REDIS_URL is not set")
    client: Redis = Redis.from_url(
        url,
        health_check_interval=10,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    return client


class Container(containers.DeclarativeContainer):
    """Every adapter and use case, and the app's lifetime: ``lifetime`` (with ``mappers``) is what
    ``init_resources()`` starts and ``shutdown_resources()`` stops (entrypoints/lifecycle.py)."""

    settings = providers.Dependency(instance_of=Settings)
    # Several worker processes: prometheus_client's multiprocess mode (entrypoints/metrics.py).
    metrics = providers.Singleton(
        Metrics,
        multiprocess_mode=providers.Callable(lambda s: s.workers > 1, settings),
        error_tallies=providers.Object({"database": DATABASE_ERRORS, "redis": REDIS_ERRORS}),
    )

    mappers = providers.Resource(start_mappers)
    engine = providers.Singleton(
        create_engine,
        settings.provided.database_url,
        sqlite_synchronous=settings.provided.sqlite_synchronous,
        sqlite_driver=settings.provided.sqlite_driver,
        timeout_s=settings.provided.db_timeout_s,
    )
    session_factory = providers.Singleton(make_sessionmaker, engine=engine)
    store_memo = providers.Singleton(StoreMemo)
    uow = providers.Factory(SqlAlchemyUnitOfWork, session_factory=session_factory, memo=store_memo)

    clock = providers.Singleton(SystemClock)
    # Seconds that never go back, for per-connection rate limits (tests pass a clock they move).
    monotonic = providers.Object(time.monotonic)
    ids = providers.Singleton(Uuid7Ids)
    password_hasher = providers.Singleton(Argon2PasswordHasher, concurrency=settings.provided.hash_concurrency)
    tokens = providers.Singleton(
        PyJwtTokenService,
        secret=settings.provided.secret,
        access_ttl_s=settings.provided.access_token_ttl_s,
        ids=ids,
    )
    # One process: memory adapters. Several (CHAT_REDIS_URL set): the same ports over Redis.
    mode = providers.Callable(lambda s: s.mode, settings)
    process_id = providers.Singleton(lambda ids: ids.new_id(), ids)
    redis = providers.Singleton(connect_redis, settings.provided.redis_url, settings.provided.redis_timeout_s)
    attempts = providers.Selector(
        mode,
        memory=providers.Singleton(InMemoryAttemptCounter),
        redis=providers.Singleton(
            FallbackAttemptCounter,
            providers.Singleton(RedisAttemptCounter, redis, prefix=settings.provided.redis_prefix),
            providers.Singleton(InMemoryAttemptCounter),
        ),
    )
    presence = providers.Selector(
        mode,
        memory=providers.Singleton(InMemoryPresenceRegistry),
        redis=providers.Singleton(
            HealingPresence,
            providers.Singleton(
                RedisPresenceRegistry,
                redis,
                process_id=process_id,
                ttl_s=settings.provided.presence_ttl_s,
                prefix=settings.provided.redis_prefix,
            ),
        ),
    )
    fanout = providers.Selector(  # the Notifier and the ConnectionHub of this process
        mode,
        memory=providers.Singleton(InMemoryFanout),
        redis=providers.Singleton(
            RedisFanout, redis, prefix=settings.provided.redis_prefix, observe_lag=metrics.provided.fanout_lag.observe
        ),
    )

    throttle = providers.Singleton(
        LoginThrottle,
        max_failures=settings.provided.login_max_failures,
        window_s=settings.provided.login_window_s,
    )
    issuer = providers.Singleton(
        LoginIssuer, tokens=tokens, ids=ids, refresh_ttl_s=settings.provided.refresh_token_ttl_s
    )
    cards = providers.Singleton(CardMaker, presence=presence)

    register_user = providers.Singleton(
        RegisterUser,
        uow=uow.provider,
        hasher=password_hasher,
        issuer=issuer,
        counter=attempts,
        clock=clock,
        per_hour=settings.provided.register_per_hour,
    )
    sign_in = providers.Singleton(
        SignIn,
        uow=uow.provider,
        hasher=password_hasher,
        issuer=issuer,
        counter=attempts,
        clock=clock,
        throttle=throttle,
        notifier=fanout,
        max_logins=settings.provided.max_logins_per_user,
    )
    refresh_login = providers.Singleton(
        RefreshLogin, uow=uow.provider, tokens=tokens, issuer=issuer, clock=clock, notifier=fanout
    )
    authenticate = providers.Singleton(Authenticate, uow=uow.provider, tokens=tokens, clock=clock)
    revoked_among = providers.Singleton(RevokedAmong, uow=uow.provider)
    revocation_sweep = providers.Singleton(RevocationSweep, revoked_among=revoked_among)
    sign_out = providers.Singleton(SignOut, uow=uow.provider, clock=clock, notifier=fanout)
    sign_out_everywhere = providers.Singleton(SignOutEverywhere, uow=uow.provider, clock=clock, notifier=fanout)
    password_confirmation = providers.Singleton(
        PasswordConfirmation, uow=uow.provider, hasher=password_hasher, counter=attempts, clock=clock, throttle=throttle
    )
    change_password = providers.Singleton(
        ChangePassword,
        uow=uow.provider,
        hasher=password_hasher,
        confirm=password_confirmation,
        clock=clock,
        notifier=fanout,
    )
    list_sessions = providers.Singleton(ListSessions, uow=uow.provider)
    end_session = providers.Singleton(EndSession, uow=uow.provider, clock=clock, notifier=fanout)
    delete_account = providers.Singleton(
        DeleteAccount, uow=uow.provider, confirm=password_confirmation, clock=clock, notifier=fanout
    )
    export_account = providers.Singleton(ExportAccount, uow=uow.provider, clock=clock)
    get_profile = providers.Singleton(GetProfile, uow=uow.provider)
    rename_user = providers.Singleton(RenameUser, uow=uow.provider)
    get_user = providers.Singleton(GetUser, uow=uow.provider, cards=cards)
    list_contacts = providers.Singleton(ListContacts, uow=uow.provider, cards=cards)
    search_users = providers.Singleton(SearchUsers, uow=uow.provider, cards=cards)
    lookup_limit = providers.Singleton(
        LookupLimit,
        rate_per_s=settings.provided.rate_msg_per_s,
        burst=settings.provided.rate_msg_burst,
        seconds=monotonic,
    )

    # Push notifications: with CHAT_PUSH_GATEWAY_URL, the send path writes outbox jobs and a
    # dispatcher sends them; without, neither.
    push_mode = providers.Callable(lambda s: "on" if s.push_gateway_url else "off", settings)
    register_device = providers.Singleton(RegisterDevice, uow=uow.provider, clock=clock, ids=ids)
    list_devices = providers.Singleton(ListDevices, uow=uow.provider)
    delete_device = providers.Singleton(DeleteDevice, uow=uow.provider)
    push_gateway = providers.Singleton(
        HttpPushGateway,
        settings.provided.push_gateway_url,
        settings.provided.push_secret,
        clock,
        include_body=settings.provided.push_include_body,
        timeout_s=settings.provided.push_timeout_s,
    )
    push_dispatcher = providers.Singleton(
        PushDispatcher,
        outbox=providers.Singleton(SqlAlchemyPushOutbox, session_factory=session_factory),
        gateway=push_gateway,
        presence=presence,
        clock=clock,
        ids=ids,
        policy=providers.Singleton(
            PushPolicy,
            coalesce_s=settings.provided.push_coalesce_s,
            lease_s=settings.provided.push_lease_s,
            max_attempts=settings.provided.push_max_attempts,
            retry_base_s=settings.provided.push_retry_base_s,
            retry_max_s=settings.provided.push_retry_max_s,
        ),
        random=providers.Object(random.random),
    )
    push_after_s = providers.Selector(push_mode, on=settings.provided.push_after_s, off=providers.Object(None))
    pushing = providers.Selector(
        push_mode,
        on=providers.Factory(push_dispatching, push_dispatcher, push_gateway, poll_s=settings.provided.push_poll_s),
        off=providers.Factory(contextlib.nullcontext),
    )

    # One per lifespan: shutdown_resources() forgets it (``lifetime`` closed it), the next
    # start makes a new one; the use cases that write through it are made with it.
    group_commit = providers.Resource(GroupCommit, uow=uow.provider, observe=metrics.provided.write_batch)
    send_message = providers.Factory(
        SendMessage,
        writes=group_commit,
        notifier=fanout,
        presence=presence,
        clock=clock,
        ids=ids,
        max_body_chars=settings.provided.max_body_chars,
        push_after_s=push_after_s,
    )
    acknowledge = providers.Factory(AcknowledgeDelivery, writes=group_commit, notifier=fanout, clock=clock)
    mark_read = providers.Singleton(MarkRead, uow=uow.provider, notifier=fanout, clock=clock)
    pending_for = providers.Singleton(PendingFor, uow=uow.provider)
    still_pending = providers.Singleton(StillPending, uow=uow.provider)
    history = providers.Singleton(History, uow=uow.provider)
    list_conversations = providers.Singleton(ListConversations, uow=uow.provider, cards=cards)

    connect = providers.Singleton(
        Connect,
        uow=uow.provider,
        presence=presence,
        notifier=fanout,
        clock=clock,
        max_per_user=settings.provided.max_connections_per_user,
    )
    disconnect = providers.Singleton(Disconnect, presence=presence, clock=clock)
    settle_presence = providers.Singleton(
        SettlePresence,
        uow=uow.provider,
        presence=presence,
        notifier=fanout,
        clock=clock,
        grace_s=settings.provided.offline_grace_s,
    )
    visible_online = providers.Singleton(VisibleOnline, uow=uow.provider, presence=presence)
    block_user = providers.Singleton(BlockUser, uow=uow.provider, clock=clock)
    unblock_user = providers.Singleton(UnblockUser, uow=uow.provider)
    list_blocked = providers.Singleton(ListBlocked, uow=uow.provider)
    relay_typing = providers.Singleton(RelayTyping, uow=uow.provider, notifier=fanout)

    # What the app's edge asks for, without knowing the mode or the adapters.
    database_label = providers.Callable(describe, engine)
    pending_count = providers.Callable(partial, count_pending, engine)
    check_database = providers.Callable(partial, ping, engine)
    readiness_checks = providers.Selector(
        mode,
        memory=providers.Dict(database=check_database),
        redis=providers.Dict(database=check_database, redis=redis.provided.ping),
    )
    # Pub/sub is at most once: across processes a connection re-pushes what the store still holds.
    repush_from_store = providers.Selector(mode, memory=providers.Object(False), redis=providers.Object(True))

    deployment = providers.Selector(
        mode,
        memory=providers.Factory(one_process),
        redis=providers.Factory(
            scaled_out, redis, fanout, presence, clock, presence_ttl_s=settings.provided.presence_ttl_s
        ),
    )
    lifetime = providers.Resource(
        serving,
        check_schema=providers.Callable(
            partial, ensure_current, settings.provided.database_url, settings.provided.db_timeout_s
        ),
        deployment=deployment,
        pushing=pushing,
        writes=group_commit,
        engine=engine,
    )


async def start(container: Container) -> None:
    """Start the app's lifetime (every resource); raises ``SchemaNotCurrentError`` on a database
    that is not at the code's revision, and then nothing runs."""
    await _settle(container.init_resources())


async def stop(container: Container) -> None:
    """End the app's lifetime, in the order of entrypoints/lifecycle.py."""
    await _settle(container.shutdown_resources())


async def _settle(pending: Awaitable[None] | None) -> None:
    if pending is not None:  # None when no resource is async (never here: ``lifetime`` is)
        await pending
