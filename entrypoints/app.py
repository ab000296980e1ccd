"""``create_app(container)``: the Litestar application — routes, dependencies, errors, lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware

from application.common import Principal
from application.live.actions import CloseCode
from domain.errors import InvalidTokenError
from entrypoints.container import Container, start, stop
from entrypoints.http.asyncapi import asyncapi_document
from entrypoints.http.auth import AuthController
from entrypoints.http.before_request import before_request
from entrypoints.http.client import client_address, parse_networks
from entrypoints.http.context import RequestContext
from entrypoints.http.conversations import ConversationsController
from entrypoints.http.cors import CorsMiddleware, Origins
from entrypoints.http.devices import DevicesController
from entrypoints.http.errors import EXCEPTION_HANDLERS, TRUSTED_PROXIES_STATE
from entrypoints.http.openapi import openapi_config
from entrypoints.http.ops import MetricsSource, ReadinessChecks, health, ready
from entrypoints.http.ops import metrics as metrics_endpoint
from entrypoints.http.users import UsersController
from entrypoints.http.webapp import web_app_router
from entrypoints.logs import name_user
from entrypoints.metrics import Metrics, flush_every
from entrypoints.ws.handler import (
    SHUTTING_DOWN,
    LiveConnections,
    catch_up_sweep,
    login_sweep,
    make_ws_handler,
    presence_sweep,
)
from entrypoints.ws.services import Services

log = logging.getLogger("p2p_chat")
T = TypeVar("T")
METRICS_FLUSH_S = 1.0  # several workers: how stale a scrape may be


def _singleton(provider: Callable[[], T]) -> Provide:
    async def resolve() -> T:
        return provider()

    return Provide(resolve, use_cache=True)


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
        repush_from_store=container.repush_from_store(),
    )


def create_app(container: Container) -> Litestar:
    """Build the application around a configured container. It refuses to start on a database
    that is not migrated to the code's revision."""
    settings = container.settings()
    trusted = parse_networks(settings.trusted_proxies)

    async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
        principal: Principal = await container.authenticate()(bearer_token(request))
        name_user(principal.user_id)  # the request's log lines name the user from here on
        return principal

    async def provide_client_ip(request: Request[Any, Any, Any]) -> str:
        return client_address(request, trusted)

    async def provide_user_agent(request: Request[Any, Any, Any]) -> str:
        return request.headers.get("user-agent", "")

    async def provide_checks() -> ReadinessChecks:
        checks: ReadinessChecks = container.readiness_checks()
        return checks

    async def metrics_source() -> bytes:
        try:
            count_pending: Callable[[], Awaitable[int]] = container.pending_count()
            metrics.pending.set(await count_pending())
        except Exception:  # the scrape still answers; the gauge keeps its last value
            log.warning("could not count pending messages for /metrics")
        return metrics.render()

    async def provide_metrics_source() -> MetricsSource:
        return metrics_source

    async def provide_metrics_token() -> str:
        return settings.metrics_token or ""

    live = LiveConnections()
    metrics: Metrics = container.metrics()
    if settings.push_gateway_url is not None:
        metrics.watch_push(container.push_dispatcher().counts)
    services = ws_services(container, metrics)
    origins = Origins(settings.cors_origins)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await start(container)  # refuses an un-migrated database
        log.info(
            "p2p-chat ready (database %s, %s presence and fan-out)",
            container.database_label(),
            settings.mode,
        )
        sweepers = [
            asyncio.create_task(presence_sweep(container.settle_presence(), max(0.05, settings.offline_grace_s / 4))),
            asyncio.create_task(login_sweep(live, container.revocation_sweep(), settings.session_check_s)),
        ]
        if metrics.multiprocess:  # a scrape reads every worker's values: each adds its counts on time
            sweepers.append(asyncio.create_task(flush_every(metrics, METRICS_FLUSH_S)))
        if services.repush_from_store:  # several processes: what pub/sub lost comes from the store
            sweepers.append(asyncio.create_task(catch_up_sweep(live, max(0.05, settings.redelivery_s / 2))))
        try:
            yield
        finally:
            for sweeper in sweepers:
                sweeper.cancel()
            for connection in live.snapshot():
                connection.close_soon(CloseCode.GOING_AWAY, SHUTTING_DOWN)
            await asyncio.gather(*sweepers, return_exceptions=True)
            await stop(container)  # the write batcher, fan-out, Redis, engine
            metrics.flush()
            metrics.process_exited()

    app = Litestar(
        route_handlers=[
            AuthController,
            UsersController,
            ConversationsController,
            DevicesController,
            health,
            ready,
            metrics_endpoint,
            asyncapi_document,
            make_ws_handler(services, live, container.ids(), origins.allows),
            *([web_app_router()] if settings.serves_web_app else []),
        ],
        dependencies={
            "principal": Provide(provide_principal),
            "client_ip": Provide(provide_client_ip),
            "user_agent": Provide(provide_user_agent),
            "readiness_checks": Provide(provide_checks),
            "metrics_source": Provide(provide_metrics_source),
            "metrics_token": Provide(provide_metrics_token),
            "block_user": _singleton(container.block_user),
            "unblock_user": _singleton(container.unblock_user),
            "list_blocked": _singleton(container.list_blocked),
            "register_user": _singleton(container.register_user),
            "sign_in": _singleton(container.sign_in),
            "refresh_login": _singleton(container.refresh_login),
            "sign_out": _singleton(container.sign_out),
            "sign_out_everywhere": _singleton(container.sign_out_everywhere),
            "change_password": _singleton(container.change_password),
            "list_sessions": _singleton(container.list_sessions),
            "end_session": _singleton(container.end_session),
            "delete_account": _singleton(container.delete_account),
            "export_account": _singleton(container.export_account),
            "get_profile": _singleton(container.get_profile),
            "rename_user": _singleton(container.rename_user),
            "get_user": _singleton(container.get_user),
            "list_contacts": _singleton(container.list_contacts),
            "search_users": _singleton(container.search_users),
            "lookup_limit": _singleton(container.lookup_limit),
            "list_conversations": _singleton(container.list_conversations),
            "history": _singleton(container.history),
            "register_device": _singleton(container.register_device),
            "list_devices": _singleton(container.list_devices),
            "delete_device": _singleton(container.delete_device),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        logging_config=None,
        middleware=[DefineMiddleware(CorsMiddleware, origins=origins)] if origins.configured else [],
        before_request=before_request,
        request_max_body_size=settings.max_http_body_bytes,
        openapi_config=openapi_config(),
        state=State({TRUSTED_PROXIES_STATE: trusted}),
    )
    # Outermost, around the framework's own error handling: every answer (a 404 of no route
    # included) gets its request id and is counted (entrypoints/http/context.py).
    app.asgi_handler = RequestContext(app.asgi_handler, metrics.http_request)
    return app
