"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from domain.errors import InvalidTokenError
from entrypoints.http.refusals import answers, refusal
from entrypoints.http.schemas import CheckState, Health
from entrypoints.metrics import MEDIA_TYPE

log = logging.getLogger("p2p_chat.ops")

ReadinessChecks = dict[str, Callable[[], Awaitable[None]]]
CHECK_TIMEOUT_S = 2.0


@get(
    "/health",
    operation_id="health",
    response_description="The process answers",
    tags=["ops"],
    summary="Liveness: the process answers",
    responses=answers(),
)
async def health() -> Health:
    return Health(status="ok", checks={})


@get(
    "/ready",
    operation_id="ready",
    response_description="Every check passed",
    tags=["ops"],
    summary="Readiness: the database (and Redis, when configured) answer",
    description=f"Each check has {CHECK_TIMEOUT_S:g} s. For load balancers: send traffic only while this is 200.",
    responses={
        **answers(),
        HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
            data_container=Health,
            description="A check failed: `status` and the failing checks are `unavailable`",
            generate_examples=False,
        ),
    },
)
async def ready(readiness_checks: NamedDependency[ReadinessChecks]) -> Response[Health]:
    results = await run_checks(readiness_checks, CHECK_TIMEOUT_S)
    ok = all(v == "ok" for v in results.values())
    return Response(
        Health(status="ok" if ok else "unavailable", checks=results),
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


async def run_checks(checks: ReadinessChecks, timeout_s: float) -> dict[str, CheckState]:
    """Every check at once, each ``ok`` if it passed within ``timeout_s``. The answer never waits
    for longer: a check still running then (a hung database) is cancelled and left to finish on
    its own (cancelling a driver's connect can take as long again)."""
    tasks = {name: asyncio.ensure_future(check()) for name, check in checks.items()}
    if tasks:
        await asyncio.wait(tasks.values(), timeout=timeout_s)
    results: dict[str, CheckState] = {}
    for name, task in tasks.items():
        if not task.done():
            task.cancel()
            task.add_done_callback(_forget)
            log.warning("readiness check %s did not answer within %gs", name, timeout_s)
            results[name] = "unavailable"
        elif task.cancelled():
            log.warning("readiness check %s was cancelled", name)
            results[name] = "unavailable"
        elif (exc := task.exception()) is not None:
            log.warning("readiness check %s failed: %r", name, exc)
            results[name] = "unavailable"
        else:
            results[name] = "ok"
    return results


def _forget(task: asyncio.Future[None]) -> None:
    """Retrieve a cancelled check's outcome (asyncio would log an unretrieved error)."""
    if not task.cancelled():
        task.exception()


MetricsSource = Callable[[], Awaitable[bytes]]


@get(
    "/metrics",
    operation_id="metrics",
    response_description="The metrics, as Prometheus text",
    tags=["ops"],
    summary="Prometheus metrics (text exposition format 0.0.4)",
    description="Open unless the server sets `CHAT_METRICS_TOKEN`; then it needs `Authorization: Bearer <token>`.",
    media_type="text/plain",
    security=[{}, {"metricsToken": []}],
    responses=answers(refusal(InvalidTokenError, "CHAT_METRICS_TOKEN is set and the bearer token is not it")),
)
async def metrics(
    request: Request[Any, Any, Any], metrics_source: NamedDependency[MetricsSource], metrics_token: NamedDependency[str]
) -> Response[bytes]:
    if metrics_token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {metrics_token}".encode()):
            raise InvalidTokenError("metrics need the bearer token of CHAT_METRICS_TOKEN")
    return Response(await metrics_source(), media_type=MEDIA_TYPE)
