"""The OpenAPI document as served: what each operation promises, and the docs UI with no internet."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from application.common import PAGE_MAX
from domain.users import EMAIL_MAX, NAME_MAX, NAME_PATTERN, PASSWORD_MAX, PASSWORD_MIN, PHONE_PATTERN
from tests.integration.test_http_accounts import Api, running_api

OPERATION_IDS = {
    ("post", "/auth/register"): "register",
    ("post", "/auth/login"): "login",
    ("post", "/auth/refresh"): "refreshTokens",
    ("post", "/auth/logout"): "logout",
    ("post", "/auth/logout-all"): "logoutAll",
    ("post", "/auth/password"): "changePassword",
    ("get", "/users/me"): "getProfile",
    ("patch", "/users/me"): "rename",
    ("get", "/users"): "listUsers",
    ("get", "/users/{user_id}"): "getUser",
    ("put", "/users/{user_id}/block"): "blockUser",
    ("delete", "/users/{user_id}/block"): "unblockUser",
    ("get", "/users/me/blocked"): "listBlocked",
    ("get", "/conversations"): "listConversations",
    ("get", "/conversations/{peer_id}/messages"): "listMessages",
    ("post", "/devices"): "registerDevice",
    ("get", "/devices"): "listDevices",
    ("delete", "/devices/{device_id}"): "deleteDevice",
    ("get", "/health"): "health",
    ("get", "/ready"): "ready",
    ("get", "/metrics"): "metrics",
    ("get", "/auth/sessions"): "listSessions",
    ("delete", "/auth/sessions/{session_id}"): "endSession",
    ("delete", "/users/me"): "deleteAccount",
    ("get", "/users/me/export"): "exportAccount",
}
PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def api(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Api]:
    async with running_api(migrated_url, uow_factory) as value:
        yield value


@pytest.fixture
async def document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/schema/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in document["paths"].items() for method, op in item.items()}


async def test_every_operation_has_its_name(document: dict[str, Any]) -> None:
    assert {key: op["operationId"] for key, op in operations(document).items()} == OPERATION_IDS


async def test_every_error_is_a_documented_problem(document: dict[str, Any]) -> None:
    for (method, path), op in operations(document).items():
        responses = op["responses"]
        errors = {status for status in responses if int(status) >= 400}
        assert "500" in errors, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "415"} <= errors, (method, path)
        if op.get("security") == [{"bearer": []}]:
            assert "401" in errors, (method, path)
        for status in errors - ({"503"} if path == "/ready" else set()):
            assert responses[status]["content"] == {
                "application/problem+json": {
                    "schema": PROBLEM,
                    "examples": responses[status]["content"]["application/problem+json"]["examples"],
                }
            }, (method, path, status)
            codes = {
                e["value"]["type"]
                for e in responses[status]["content"]["application/problem+json"]["examples"].values()
            }
            assert all(f"`{code}`" in responses[status]["description"] for code in codes)
    register = operations(document)[("post", "/auth/register")]["responses"]
    assert set(register) == {"201", "400", "409", "413", "415", "429", "500", "503"}
    conflicts = register["409"]["content"]["application/problem+json"]["examples"]
    assert {e["value"]["type"] for e in conflicts.values()} == {"email_taken", "phone_taken"}
    assert register["429"]["headers"]["Retry-After"]["required"] is True
    assert "WWW-Authenticate" in operations(document)[("get", "/users/me")]["responses"]["401"]["headers"]


async def test_the_problem_schema_is_the_one_sent(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "errors", "requestId"}
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert problem["properties"]["errors"]["type"] == "array"  # absent when empty, never null


async def test_constraints_are_those_checked(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    register = schemas["RegisterIn"]
    assert register["additionalProperties"] is False
    assert register["properties"]["name"]["maxLength"] == NAME_MAX
    assert register["properties"]["name"]["pattern"] == NAME_PATTERN
    assert register["properties"]["email"]["maxLength"] == EMAIL_MAX
    assert register["properties"]["phoneNumber"]["pattern"] == PHONE_PATTERN
    password = register["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (PASSWORD_MIN, PASSWORD_MAX)
    assert schemas["ProfileOut"]["properties"]["createdAt"]["format"] == "date-time"
    assert schemas["WireMessage"]["properties"]["timestamp"]["format"] == "date-time"
    assert set(schemas["TokenOut"]["required"]) == set(schemas["TokenOut"]["properties"])  # always sent
    limits = {
        path: next(p for p in op.get("parameters", []) if p["name"] == "limit")["schema"]
        for (_, path), op in operations(document).items()
        if any(p["name"] == "limit" for p in op.get("parameters", []))
    }
    assert set(limits) == {"/users", "/conversations", "/conversations/{peer_id}/messages"}
    assert all((s["minimum"], s["maximum"]) == (1, PAGE_MAX) for s in limits.values())


async def test_security_ready_and_metrics(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    ops = operations(document)
    assert "security" not in ops[("post", "/auth/login")]
    assert ops[("get", "/metrics")]["security"] == [{}, {"metricsToken": []}]
    assert ops[("get", "/ready")]["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"
    }


async def test_the_docs_ui_needs_no_internet(api: Api) -> None:
    page = await api.client.get("/schema")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets
    assert not [a for a in assets if "//" in a], "the page loads something from another host"
    for asset in assets:
        response = await api.client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset
    assert '"operationId":"register"' in page.text.replace(" ", "")  # the finished document, inline
