"""``create_app(container)``: the Litestar application — routes, dependencies, errors, lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from adapters.sqlalchemy.health import count_pending, ping
from adapters.sqlalchemy.migrate import ensure_current
from application.common import Principal
from application.live.actions import CloseCode
from domain.errors import InvalidTokenError
from entrypoints.container import Container
from entrypoints.http.auth import AuthController
from entrypoints.http.client import client_address, parse_networks
from entrypoints.http.conversations import ConversationsController
from entrypoints.http.errors import EXCEPTION_HANDLERS
from entrypoints.http.ops import MetricsSource, ReadinessChecks, health, ready
from entrypoints.http.ops import metrics as metrics_endpoint
from entrypoints.http.users import UsersController
from entrypoints.metrics import Metrics
from entrypoints.ws.handler import LiveConnections, make_ws_handler, presence_sweep, redelivery_sweep
from entrypoints.ws.services import Services

log = logging.getLogger("p2p_chat")
T = TypeVar("T")


def _singleton(provider: Callable[[], T]) -> Provide:
    async def resolve() -> T:
        return provider()

    return Provide(resolve, use_cache=True)


async def heartbeat_loop(container: Container, interval_s: float) -> None:
    """Scale-out mode: keep this process's presence liveness key fresh, so that if the process
    dies its connections expire after ``CHAT_PRESENCE_TTL_S``."""
    presence, clock = container.presence(), container.clock()
    while True:
        await asyncio.sleep(interval_s)
        try:
            await presence.heartbeat(now=clock.now())
        except Exception:  # Redis may be restarting; the next beat retries
            log.warning("presence heartbeat failed", exc_info=True)


def bearer_token(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidTokenError("missing bearer token")
    return token.strip()


def ws_services(container: Container, metrics: Metrics) -> Services:
    """What every WebSocket connection of this app uses, from the container."""
    settings = container.settings()
    return Services(
        settings=settings,
        clock=container.clock(),
        monotonic=container.monotonic(),
        hub=container.fanout(),
        authenticate=container.authenticate(),
        send_message=container.send_message(),
        acknowledge=container.acknowledge(),
        mark_read=container.mark_read(),
        pending_for=container.pending_for(),
        still_pending=container.still_pending(),
        search_users=container.search_users(),
        connect=container.connect(),
        disconnect=container.disconnect(),
        visible_online=container.visible_online(),
        relay_typing=container.relay_typing(),
        metrics=metrics,
        repush_from_store=settings.mode == "redis",
    )


def create_app(container: Container) -> Litestar:
    """Build the application around a configured container. It refuses to start on a database
    that is not migrated to the code's revision."""
    settings = container.settings()
    trusted = parse_networks(settings.trusted_proxies)

    async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
        return await container.authenticate()(bearer_token(request))

    async def provide_client_ip(request: Request[Any, Any, Any]) -> str:
        return client_address(request, trusted)

    async def check_database() -> None:
        await ping(container.engine())

    async def check_redis() -> None:
        await container.redis().ping()

    async def provide_checks() -> ReadinessChecks:
        if settings.mode == "redis":
            return {"database": check_database, "redis": check_redis}
        return {"database": check_database}

    async def metrics_source() -> bytes:
        try:
            metrics.pending.set(await count_pending(container.engine()))
        except Exception:  # the scrape still answers; the gauge keeps its last value
            log.warning("could not count pending messages for /metrics")
        return metrics.render()

    async def provide_metrics_source() -> MetricsSource:
        return metrics_source

    async def provide_metrics_token() -> str:
        return settings.metrics_token or ""

    live = LiveConnections()
    metrics = Metrics(multiprocess_mode=settings.workers > 1)
    services = ws_services(container, metrics)
    allowed_origins = set(settings.cors_origins)

    def origin_allowed(origin: str | None) -> bool:
        return not allowed_origins or origin is None or origin in allowed_origins

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        container.init_resources()
        await ensure_current(settings.database_url)
        scaled = settings.mode == "redis"
        if scaled:
            await container.presence().heartbeat(now=container.clock().now())
            await container.fanout().start()
        log.info(
            "p2p-chat ready (database %s, %s presence and fan-out)",
            container.engine().url.render_as_string(hide_password=True),
            settings.mode,
        )
        sweepers = [
            asyncio.create_task(redelivery_sweep(live, max(0.05, settings.redelivery_s / 2))),
            asyncio.create_task(presence_sweep(container.settle_presence(), max(0.05, settings.offline_grace_s / 4))),
        ]
        if scaled:
            sweepers.append(asyncio.create_task(heartbeat_loop(container, max(0.05, settings.presence_ttl_s / 3))))
        try:
            yield
        finally:
            for sweeper in sweepers:
                sweeper.cancel()
            for connection in live.snapshot():
                connection.close_soon(CloseCode.GOING_AWAY, "server shutting down")
            await asyncio.gather(*sweepers, return_exceptions=True)
            if scaled:
                await container.fanout().stop()
                await container.redis().aclose()
            await container.engine().dispose()
            container.shutdown_resources()
            metrics.process_exited()

    cors = (
        CORSConfig(allow_origins=list(settings.cors_origins), allow_credentials=False)
        if settings.cors_origins
        else None
    )
    return Litestar(
        route_handlers=[
            AuthController,
            UsersController,
            ConversationsController,
            health,
            ready,
            metrics_endpoint,
            make_ws_handler(services, live, container.ids(), origin_allowed),
        ],
        dependencies={
            "principal": Provide(provide_principal),
            "client_ip": Provide(provide_client_ip),
            "readiness_checks": Provide(provide_checks),
            "metrics_source": Provide(provide_metrics_source),
            "metrics_token": Provide(provide_metrics_token),
            "block_user": _singleton(container.block_user),
            "unblock_user": _singleton(container.unblock_user),
            "list_blocked": _singleton(container.list_blocked),
            "register_user": _singleton(container.register_user),
            "log_in": _singleton(container.log_in),
            "refresh_login": _singleton(container.refresh_login),
            "log_out": _singleton(container.log_out),
            "log_out_everywhere": _singleton(container.log_out_everywhere),
            "change_password": _singleton(container.change_password),
            "get_profile": _singleton(container.get_profile),
            "rename_user": _singleton(container.rename_user),
            "get_user": _singleton(container.get_user),
            "list_contacts": _singleton(container.list_contacts),
            "search_users": _singleton(container.search_users),
            "list_conversations": _singleton(container.list_conversations),
            "history": _singleton(container.history),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        logging_config=None,
        cors_config=cors,
        request_max_body_size=settings.max_http_body_bytes,
        openapi_config=OpenAPIConfig(
            title="p2p-chat",
            version="1",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
            ),
        ),
    )
