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

from adapters.sqlalchemy.health import ping
from adapters.sqlalchemy.migrate import ensure_current
from application.common import Principal
from domain.errors import InvalidTokenError
from entrypoints.container import Container
from entrypoints.http.auth import AuthController
from entrypoints.http.client import client_address, parse_networks
from entrypoints.http.conversations import ConversationsController
from entrypoints.http.errors import EXCEPTION_HANDLERS
from entrypoints.http.ops import ReadinessChecks, health, ready
from entrypoints.http.users import UsersController
from entrypoints.ws.connection import CLOSE_GOING_AWAY, Services
from entrypoints.ws.handler import LiveConnections, make_ws_handler, redelivery_sweep

log = logging.getLogger("p2p_chat")
T = TypeVar("T")


def _singleton(provider: Callable[[], T]) -> Provide:
    async def resolve() -> T:
        return provider()

    return Provide(resolve, use_cache=True)


def bearer_token(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidTokenError("missing bearer token")
    return token.strip()


def create_app(container: Container, *, check_schema: bool = True) -> Litestar:
    """Build the application around a configured container. With ``check_schema`` the app refuses
    to start on a database that is not migrated to the code's revision."""
    settings = container.settings()
    trusted = parse_networks(settings.trusted_proxies)

    async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
        return await container.authenticate()(bearer_token(request))

    async def provide_client_ip(request: Request[Any, Any, Any]) -> str:
        return client_address(request, trusted)

    async def check_database() -> None:
        await ping(container.engine())

    async def provide_checks() -> ReadinessChecks:
        return {"database": check_database}

    live = LiveConnections()
    services = Services(
        settings=settings,
        clock=container.clock(),
        hub=container.fanout(),
        authenticate=container.authenticate(),
        send_message=container.send_message(),
        acknowledge=container.acknowledge(),
        mark_read=container.mark_read(),
        pending_for=container.pending_for(),
        still_pending=container.still_pending(),
        search_users=container.search_users(),
    )
    allowed_origins = set(settings.cors_origins)

    def origin_allowed(origin: str | None) -> bool:
        return not allowed_origins or origin is None or origin in allowed_origins

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        container.init_resources()
        if check_schema:
            await ensure_current(settings.database_url)
        log.info("p2p-chat ready (database %s)", container.engine().url.render_as_string(hide_password=True))
        sweeper = asyncio.create_task(redelivery_sweep(live, max(0.05, settings.redelivery_s / 2)))
        try:
            yield
        finally:
            sweeper.cancel()
            for connection in live.snapshot():
                connection.close_soon(CLOSE_GOING_AWAY, "server shutting down")
            await asyncio.gather(sweeper, return_exceptions=True)
            await container.engine().dispose()
            container.shutdown_resources()

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
            make_ws_handler(services, live, container.ids(), origin_allowed),
        ],
        dependencies={
            "principal": Provide(provide_principal),
            "client_ip": Provide(provide_client_ip),
            "readiness_checks": Provide(provide_checks),
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
