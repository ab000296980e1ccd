"""The account side over real HTTP, on SQLite and PostgreSQL (same test bodies)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from dependency_injector import providers

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from entrypoints.container import Container
from entrypoints.http import ops
from tests.integration.support import make_container, make_settings, serve_async

PASSWORD = "correct horse battery"


@dataclass
class Api:
    client: httpx.AsyncClient
    container: Container
    uow: Callable[[], SqlAlchemyUnitOfWork]  # in the test's own event loop (the server runs in another)

    async def register(self, name: str, email: str, phone: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.client.post(
            "/auth/register", json={"name": name, "email": email, "phoneNumber": phone, "password": password}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post("/auth/login", json={"email": email, "password": password})

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def make_contacts(self, a: int, b: int) -> None:
        async with self.uow() as uow:
            await uow.contacts.add_pairs([(a, b)])
            await uow.commit()


@asynccontextmanager
async def running_api(
    url: str, uow: Callable[[], SqlAlchemyUnitOfWork], env: dict[str, str] | None = None
) -> AsyncIterator[Api]:
    container = make_container(make_settings(url, env))
    async with serve_async(container) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield Api(client, container, uow)


@pytest.fixture
async def api(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Api]:
    async with running_api(migrated_url, uow_factory) as value:
        yield value


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == code
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


async def test_register_login_and_profile(api: Api) -> None:
    registered = await api.register("Ann", " Ann@Example.com ", "+1 (415) 555-0100")
    assert registered["token_type"] == "bearer"
    assert registered["email"] == "Ann@Example.com"
    assert registered["phoneNumber"] == "+14155550100"
    assert registered["expires_in"] == 900
    assert set(registered) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "id",
        "name",
        "email",
        "phoneNumber",
    }

    login = await api.login("ANN@example.COM")
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]

    me = await api.client.get("/users/me", headers=api.bearer(token))
    assert me.status_code == 200
    profile = me.json()
    assert profile["id"] == registered["id"]
    assert profile["email"] == "Ann@Example.com"
    assert profile["phoneNumber"] == "+14155550100"
    assert profile["createdAt"].endswith("Z")
    assert len(profile["createdAt"]) == len("2026-11-24T05:20:21.089Z")
    assert "passwordHash" not in profile
    assert "password_hash" not in me.text

    renamed = await api.client.patch("/users/me", json={"name": "  Ann B.  "}, headers=api.bearer(token))
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Ann B."


async def test_same_email_or_phone_in_another_form_is_taken(api: Api) -> None:
    await api.register("Ann", "ann@example.com", "+1 (415) 555-0100")
    email_taken = await api.client.post(
        "/auth/register",
        json={
            "name": "X",
            "email": "  ANN@EXAMPLE.COM",
            "phoneNumber": "+44 20 7946 0000",
            "password": PASSWORD,
        },
    )
    assert_problem(email_taken, 409, "email_taken")
    phone_taken = await api.client.post(
        "/auth/register",
        json={
            "name": "X",
            "email": "other@example.com",
            "phoneNumber": "0014155550100",
            "password": PASSWORD,
        },
    )
    assert_problem(phone_taken, 409, "phone_taken")


async def test_concurrent_burst_with_one_email_creates_exactly_one_account(api: Api) -> None:
    async def attempt(i: int) -> int:
        response = await api.client.post(
            "/auth/register",
            json={
                "name": f"N{i}",
                "email": "burst@example.com",
                "phoneNumber": f"+4420794600{i:02d}",
                "password": PASSWORD,
            },
        )
        return response.status_code

    statuses = await asyncio.gather(*(attempt(i) for i in range(8)))
    assert sorted(statuses) == [201] + [409] * 7


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (
            b'{"name": 1, "email": "a@b.co", "phoneNumber": "+441234567890", "password": "x"}',
            "application/json",
        ),
        (
            b'{"name": "A", "email": "a@b.co", "phoneNumber": "+441234567890", "password": "long enough", "x": 1}',
            "application/json",
        ),
        (
            b'{"name": "   ", "email": "a@b.co", "phoneNumber": "+441234567890", "password": "long enough"}',
            "application/json",
        ),
        (
            b'{"name": "A", "email": "not-an-email", "phoneNumber": "+441234567890", "password": "long enough"}',
            "application/json",
        ),
        (
            b'{"name": "A", "email": "a@b.co", "phoneNumber": "12345", "password": "long enough"}',
            "application/json",
        ),
        (
            b'{"name": "A", "email": "a@b.co", "phoneNumber": "+441234567890", "password": "short"}',
            "application/json",
        ),
        (b'{"name": "A", "email": "a@b.co", "phoneNumber": "+441234567890"}', "application/json"),
        (b"[]", "application/json"),
        (b"", "application/json"),
    ],
)
async def test_bad_registration_input_is_a_400_problem(api: Api, body: bytes, content_type: str) -> None:
    response = await api.client.post("/auth/register", content=body, headers={"Content-Type": content_type})
    assert_problem(response, 400, "validation_error")


async def test_validation_errors_name_each_field(api: Api) -> None:
    response = await api.client.post(
        "/auth/register", json={"name": "", "email": "nope", "phoneNumber": "123", "password": "x"}
    )
    body = assert_problem(response, 400, "validation_error")
    assert {e["field"] for e in body["errors"]} == {"name", "email", "phoneNumber", "password"}


async def test_oversize_strings_and_bodies_are_rejected(api: Api) -> None:
    long_name = await api.client.post(
        "/auth/register",
        json={"name": "x" * 101, "email": "a@b.co", "phoneNumber": "+441234567890", "password": PASSWORD},
    )
    assert_problem(long_name, 400, "validation_error")
    huge = await api.client.post(
        "/auth/register",
        json={"name": "x" * 70_000, "email": "a@b.co", "phoneNumber": "+441234567890", "password": PASSWORD},
    )
    assert_problem(huge, 413, "payload_too_large")


async def test_unknown_email_and_wrong_password_give_the_same_401(api: Api) -> None:
    await api.register("Ann", "ann@example.com", "+14155550100")
    wrong = await api.login("ann@example.com", "wrong password!")
    unknown = await api.login("nobody@example.com", "wrong password!")
    assert_problem(wrong, 401, "unauthorized")
    assert_problem(unknown, 401, "unauthorized")
    wrong_body, unknown_body = wrong.json(), unknown.json()
    assert wrong_body.pop("requestId") != unknown_body.pop("requestId")  # each request its own
    assert wrong_body == unknown_body


async def test_repeated_login_failures_lock_the_account_from_that_address_even_for_the_right_password(api: Api) -> None:
    await api.register("Ann", "ann@example.com", "+14155550100")
    for _ in range(5):
        assert (await api.login("ann@example.com", "wrong password!")).status_code == 401
    locked = await api.login("ann@example.com")
    assert_problem(locked, 429, "rate_limited")
    assert int(locked.headers["Retry-After"]) > 0


async def test_refresh_rotates_and_reuse_revokes_the_login(api: Api) -> None:
    first = await api.register("Ann", "ann@example.com", "+14155550100")
    rotated = await api.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await api.client.get("/users/me", headers=api.bearer(second["access_token"]))).status_code == 200

    reused = await api.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reused, 401, "unauthorized")
    # the whole login is gone: its newest refresh token and its access tokens
    assert_problem(
        await api.client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}),
        401,
        "unauthorized",
    )
    assert_problem(await api.client.get("/users/me", headers=api.bearer(second["access_token"])), 401, "unauthorized")


async def test_refresh_body_uses_snake_case_and_rejects_unknown_fields(api: Api) -> None:
    response = await api.client.post("/auth/refresh", json={"refreshToken": "x"})
    assert_problem(response, 400, "validation_error")


async def test_logout_revokes_only_this_login_and_logout_all_revokes_every_login(api: Api) -> None:
    await api.register("Ann", "ann@example.com", "+14155550100")
    a = (await api.login("ann@example.com")).json()
    b = (await api.login("ann@example.com")).json()
    c = (await api.login("ann@example.com")).json()

    assert (await api.client.post("/auth/logout", headers=api.bearer(a["access_token"]))).status_code == 204
    assert_problem(await api.client.get("/users/me", headers=api.bearer(a["access_token"])), 401, "unauthorized")
    assert_problem(
        await api.client.post("/auth/refresh", json={"refresh_token": a["refresh_token"]}),
        401,
        "unauthorized",
    )
    assert (await api.client.get("/users/me", headers=api.bearer(b["access_token"]))).status_code == 200

    assert (await api.client.post("/auth/logout-all", headers=api.bearer(b["access_token"]))).status_code == 204
    for session in (b, c):
        assert_problem(
            await api.client.get("/users/me", headers=api.bearer(session["access_token"])),
            401,
            "unauthorized",
        )


async def test_password_change_revokes_other_logins_and_replaces_the_password(api: Api) -> None:
    me = await api.register("Ann", "ann@example.com", "+14155550100")
    other = (await api.login("ann@example.com")).json()
    wrong = await api.client.post(
        "/auth/password",
        json={"currentPassword": "not my password", "newPassword": "a new long password"},
        headers=api.bearer(me["access_token"]),
    )
    assert_problem(wrong, 400, "validation_error")
    changed = await api.client.post(
        "/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": "a new long password"},
        headers=api.bearer(me["access_token"]),
    )
    assert changed.status_code == 204, changed.text
    assert (await api.client.get("/users/me", headers=api.bearer(me["access_token"]))).status_code == 200
    assert_problem(await api.client.get("/users/me", headers=api.bearer(other["access_token"])), 401, "unauthorized")
    assert (await api.login("ann@example.com")).status_code == 401
    assert (await api.login("ann@example.com", "a new long password")).status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."],
)
async def test_requests_without_a_valid_bearer_token_are_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await api.client.get("/users/me", headers=headers)
    assert_problem(response, 401, "unauthorized")


async def test_other_users_are_public_cards_without_private_fields(api: Api) -> None:
    ann = await api.register("Ann", "ann@example.com", "+14155550100")
    bob = await api.register("Bob", "bob@example.com", "+14155550101")
    card = await api.client.get(f"/users/{bob['id']}", headers=api.bearer(ann["access_token"]))
    assert card.status_code == 200
    assert card.json() == {"id": bob["id"], "name": "Bob", "online": None, "lastSeenAt": None}
    assert "bob@example.com" not in card.text
    assert "4155550101" not in card.text

    missing = await api.client.get("/users/999999", headers=api.bearer(ann["access_token"]))
    assert_problem(missing, 404, "not_found")
    not_an_id = await api.client.get("/users/abc", headers=api.bearer(ann["access_token"]))
    assert not_an_id.status_code in (400, 404)
    assert not_an_id.headers["content-type"].startswith("application/problem+json")


async def test_contacts_list_shows_presence_and_paginates(api: Api) -> None:
    ann = await api.register("Ann", "ann@example.com", "+14155550100")
    others = [await api.register(f"User {i}", f"u{i}@example.com", f"+441234567{i:03d}") for i in range(5)]
    for other in others[:3]:
        await api.make_contacts(ann["id"], other["id"])
    headers = api.bearer(ann["access_token"])

    first = await api.client.get("/users", params={"limit": 2}, headers=headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [u["id"] for u in page["items"]] == [others[0]["id"], others[1]["id"]]
    assert all(u["online"] is False for u in page["items"])
    assert page["nextCursor"] is not None

    second = (await api.client.get("/users", params={"limit": 2, "cursor": page["nextCursor"]}, headers=headers)).json()
    assert [u["id"] for u in second["items"]] == [others[2]["id"]]
    assert second["nextCursor"] is None

    assert_problem(await api.client.get("/users", params={"limit": 101}, headers=headers), 400, "validation_error")
    assert_problem(await api.client.get("/users", params={"limit": "x"}, headers=headers), 400, "validation_error")
    assert_problem(await api.client.get("/users", params={"cursor": "zz"}, headers=headers), 400, "validation_error")


async def test_search_by_name_email_and_phone(api: Api) -> None:
    ann = await api.register("Ann", "ann@example.com", "+14155550100")
    await api.register("Straße Müller", "mueller@example.com", "+491701234567")
    await api.register("100% sure", "sure@example.com", "+491701234568")
    bob = await api.register("Bob", "bob@example.com", "+14155550101")
    headers = api.bearer(ann["access_token"])

    async def names(q: str) -> list[str]:
        response = await api.client.get("/users", params={"q": q}, headers=headers)
        assert response.status_code == 200, response.text
        return [u["name"] for u in response.json()["items"]]

    assert await names("STRASSE") == ["Straße Müller"]
    assert await names("0%") == ["100% sure"]
    assert await names("%%") == []
    assert await names("BOB@example.com") == ["Bob"]
    assert await names("+1 415 555 0101") == ["Bob"]
    assert await names("example.com") == []  # no substring probing of emails
    assert await names("4155550") == []  # nor of numbers
    assert await names("Ann") == []  # never yourself

    text = (await api.client.get("/users", params={"q": "bob@example.com"}, headers=headers)).text
    assert "bob@example.com" not in text
    assert str(bob["id"]) in text
    assert_problem(await api.client.get("/users", params={"q": "a"}, headers=headers), 400, "validation_error")
    assert_problem(
        await api.client.get("/users", params={"q": "ab", "limit": 101}, headers=headers),
        400,
        "validation_error",
    )


async def test_health_ready_and_openapi(api: Api) -> None:
    assert (await api.client.get("/health")).json() == {"status": "ok", "checks": {}}
    ready = await api.client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}
    spec = await api.client.get("/schema/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["openapi"].startswith("3.1")
    assert "/auth/register" in spec.json()["paths"]
    assert (await api.client.get("/schema")).status_code == 200


async def test_ready_answers_within_its_check_time_whatever_a_check_does(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that never answers (a hung database) does not hold /ready beyond its time, nor
    does its slow cancellation: it is reported unavailable, the others as they are."""
    monkeypatch.setattr(ops, "CHECK_TIMEOUT_S", 0.3)
    cancelled = threading.Event()  # set on the server's thread

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            await asyncio.sleep(1)  # as a driver's connect can take as long again to give up
            raise

    async def passes() -> None:
        return None

    async def fails() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    checks = {"database": hangs, "redis": passes, "other": fails}
    api.container.readiness_checks.override(providers.Object(checks))
    try:
        started = time.monotonic()
        ready = await api.client.get("/ready")
        took = time.monotonic() - started
    finally:
        api.container.readiness_checks.reset_override()
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "redis": "ok", "other": "unavailable"},
    }
    assert 0.3 <= took < 1.0, took
    assert await asyncio.to_thread(cancelled.wait, 5)  # the hung check was cancelled, not left running
    assert (await api.client.get("/ready")).status_code == 200


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    assert_problem(await api.client.get("/nope"), 404, "not_found")
    assert_problem(await api.client.get("/auth/login"), 405, "method_not_allowed")


async def test_history_bounds_up_to_int64_are_answered(api: Api) -> None:
    """seq bounds far beyond the stored column's 32 bits (PostgreSQL refused to bind them: 500)."""
    ann = await api.register("Ann", "ann@example.com", "+14155550100")
    bob = await api.register("Bob", "bob@example.com", "+14155550101")
    for bound in ("before", "after"):
        response = await api.client.get(
            f"/conversations/{bob['id']}/messages", params={bound: 2**63 - 1}, headers=api.bearer(ann["access_token"])
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "hasMore": False}


async def test_a_login_email_no_database_stores_is_just_unknown(api: Api) -> None:
    """A NUL in the email (JSON allows it): PostgreSQL refused to look it up (500)."""
    response = await api.client.post("/auth/login", json={"email": "ann\u0000@example.com", "password": PASSWORD})
    assert_problem(response, 401, "unauthorized")
