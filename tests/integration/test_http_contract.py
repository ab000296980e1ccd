"""The HTTP edge's rough edges, over real HTTP (SQLite): bodies that are not JSON, browser origins
(CORS and the WebSocket handshake), OPTIONS, ids out of range."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.test_http_accounts import PASSWORD, Api, assert_problem, running_api

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
LOGIN = {"email": "ann@example.com", "password": PASSWORD}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def api(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Api]:
    async with running_api(migrated_url, uow_factory) as value:
        yield value


def ws_url(api: Api) -> str:
    return str(api.client.base_url).replace("http://", "ws://") + "/ws"


async def test_a_body_that_is_not_json_is_named_in_errors(api: Api) -> None:
    response = await api.client.post(
        "/auth/login", content=b'{"email": "ann@example.com", "pass', headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["body"]
    assert body["errors"][0]["message"].startswith("is not valid JSON")


async def test_a_missing_body_is_named_in_errors(api: Api) -> None:
    body = assert_problem(await api.client.post("/auth/login"), 400, "validation_error")
    assert body["errors"] == [{"field": "body", "message": "a JSON object is required"}]


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/x-www-form-urlencoded", b"email=ann%40example.com&password=correct+horse"),
        ("text/plain", json.dumps(LOGIN).encode()),
    ],
)
async def test_a_body_of_another_media_type_is_415(api: Api, content_type: str, content: bytes) -> None:
    response = await api.client.post("/auth/login", content=content, headers={"Content-Type": content_type})
    body = assert_problem(response, 415, "unsupported_media_type")
    assert content_type in body["detail"]


async def test_json_with_a_charset_or_a_json_suffix_is_json(api: Api) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.chat+json"):
        response = await api.client.post(
            "/auth/login", content=json.dumps(LOGIN).encode(), headers={"Content-Type": content_type}
        )
        assert_problem(response, 401, "unauthorized")  # read as JSON: the credentials were checked


async def test_options_lists_every_method_of_the_path(api: Api) -> None:
    assert (await api.client.options("/users/me")).headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
    assert (await api.client.options("/users/7/block")).headers["allow"] == "DELETE, OPTIONS, PUT"


@pytest.mark.parametrize("path", ["/users/{id}", "/conversations/{id}/messages"])
async def test_an_id_beyond_int64_is_an_unknown_user(api: Api, path: str) -> None:
    ann = await api.register("Ann", "ann@example.com", "+14155550100")
    response = await api.client.get(path.format(id=2**64), headers=api.bearer(ann["access_token"]))
    assert_problem(response, 404, "not_found")


async def test_history_with_yourself_is_refused_on_peer_id(api: Api) -> None:
    ann = await api.register("Ann", "ann@example.com", "+14155550100")
    response = await api.client.get(f"/conversations/{ann['id']}/messages", headers=api.bearer(ann["access_token"]))
    assert assert_problem(response, 400, "validation_error")["errors"][0]["field"] == "peerId"


# --- browser origins ----------------------------------------------------------------------------


@pytest.fixture
async def listed(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Api]:
    env = {"CHAT_CORS_ORIGINS": "https://app.example", "CHAT_REGISTER_PER_HOUR": "1"}
    async with running_api(migrated_url, uow_factory, env) as value:
        yield value


@pytest.fixture
async def any_origin(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Api]:
    async with running_api(migrated_url, uow_factory, {"CHAT_CORS_ORIGINS": "*"}) as value:
        yield value


async def test_a_refused_preflight_is_a_forbidden_problem(listed: Api) -> None:
    response = await listed.client.options("/auth/login", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert "https://evil.example" in assert_problem(response, 403, "forbidden")["detail"]
    assert "access-control-allow-origin" not in response.headers


async def test_an_allowed_preflight_allows_the_origin(listed: Api) -> None:
    response = await listed.client.options("/auth/login", headers={"Origin": "https://app.example", **PREFLIGHT})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"


async def test_browsers_may_read_retry_after_and_www_authenticate(listed: Api) -> None:
    origin = {"Origin": "https://app.example"}
    body = {"name": "X", "email": "x@example.com", "phoneNumber": "bad", "password": PASSWORD}
    await listed.client.post("/auth/register", json=body, headers=origin)
    limited = await listed.client.post("/auth/register", json=body, headers=origin)
    assert_problem(limited, 429, "rate_limited")
    assert limited.headers["access-control-allow-origin"] == "https://app.example"
    exposed = {h.strip().lower() for h in limited.headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "www-authenticate"} <= exposed


async def test_any_origin_allows_every_origin_over_http(any_origin: Api) -> None:
    preflight = await any_origin.client.options("/auth/login", headers={"Origin": "https://a.example", **PREFLIGHT})
    assert (preflight.status_code, preflight.headers["access-control-allow-origin"]) == (204, "*")
    answer = await any_origin.client.get("/health", headers={"Origin": "https://b.example"})
    assert answer.headers["access-control-allow-origin"] == "*"


async def test_any_origin_allows_every_websocket_origin(any_origin: Api) -> None:
    ann = await any_origin.register("Ann", "ann@example.com", "+14155550100")
    async with connect(ws_url(any_origin), origin="https://a.example") as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "auth", "token": ann["access_token"]}))
        ready: dict[str, Any] = json.loads(await ws.recv())
        assert ready["type"] == "ready"


async def test_a_refused_websocket_origin_is_a_forbidden_problem(listed: Api) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(listed), origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.body or b"{}")
    assert (problem["type"], problem["status"]) == ("forbidden", 403)
    assert "https://evil.example" in problem["detail"]


async def test_a_listed_websocket_origin_is_accepted(listed: Api) -> None:
    ann = await listed.register("Ann", "ann@example.com", "+14155550100")
    async with connect(ws_url(listed), origin="https://app.example") as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "auth", "token": ann["access_token"]}))
        assert json.loads(await ws.recv())["type"] == "ready"
