"""Tokens, limits, hashing off the event loop, CORS and proxies — over real HTTP (SQLite)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from dependency_injector import providers
from pwdlib.hashers.argon2 import Argon2Hasher

from adapters.auth.passwords import Argon2PasswordHasher
from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from entrypoints.container import Container
from tests.integration.support import TEST_SECRET, make_container, make_settings, serve
from tests.integration.test_http_accounts import PASSWORD, Api, assert_problem, running_api


@pytest.fixture
def backend() -> str:
    """These behaviours do not depend on the database: SQLite only."""
    return "sqlite"


class GatedArgon2Hasher(Argon2Hasher):
    """Real Argon2 whose ``verify`` first waits for the test to open a gate (in whatever thread runs it)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        self.started.release()
        self.gate.wait(timeout=30)
        return super().verify(password, hash)


def gated_container(url: str, concurrency: int) -> tuple[Container, GatedArgon2Hasher]:
    settings = make_settings(url, {"CHAT_HASH_CONCURRENCY": str(concurrency)})
    container = make_container(settings)
    gated = GatedArgon2Hasher()
    container.password_hasher.override(providers.Singleton(Argon2PasswordHasher, concurrency=concurrency, hasher=gated))
    return container, gated


async def wait_started(gated: GatedArgon2Hasher, count: int) -> None:
    for _ in range(count):
        assert await asyncio.to_thread(gated.started.acquire, True, 10), "hashing never started"


@pytest.fixture
async def api(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Api]:
    async with running_api(migrated_url, uow_factory) as value:
        yield value


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _claims_of(api: Api) -> dict[str, Any]:
    registered = await api.register("Ann", "ann@example.com", "+14155550100")
    claims: dict[str, Any] = jwt.decode(registered["access_token"], TEST_SECRET, algorithms=["HS256"])
    return claims


async def test_a_genuine_token_is_accepted(api: Api) -> None:
    claims = await _claims_of(api)
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert (await api.client.get("/users/me", headers=api.bearer(token))).status_code == 200
    assert set(claims) == {"sub", "sid", "jti", "iat", "exp"}


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda c: jwt.encode({**c, "exp": int(time.time()) - 5}, TEST_SECRET, "HS256"), id="expired"),
        pytest.param(lambda c: jwt.encode(c, "another-secret-of-at-least-32-bytes!!", "HS256"), id="wrong-secret"),
        pytest.param(lambda c: jwt.encode({k: v for k, v in c.items() if k != "sub"}, TEST_SECRET), id="no-sub"),
        pytest.param(lambda c: jwt.encode({k: v for k, v in c.items() if k != "exp"}, TEST_SECRET), id="no-exp"),
        pytest.param(lambda c: jwt.encode({**c, "sub": "999999"}, TEST_SECRET), id="other-user-same-sid"),
        pytest.param(lambda c: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(c)}.", id="alg-none"),
        pytest.param(
            lambda c: jwt.encode(c, TEST_SECRET, "HS256")[:-3] + "AAA",
            id="tampered-signature",
        ),
        pytest.param(
            lambda c: ".".join(
                [
                    jwt.encode(c, TEST_SECRET).split(".")[0],
                    _b64({**c, "sub": "2"}),
                    jwt.encode(c, TEST_SECRET).split(".")[2],
                ]
            ),
            id="tampered-payload",
        ),
        pytest.param(lambda c: jwt.encode(c, TEST_SECRET * 2, "HS512"), id="other-algorithm"),
    ],
)
async def test_bad_tokens_are_401(api: Api, forge: Callable[[dict[str, Any]], str]) -> None:
    claims = await _claims_of(api)
    response = await api.client.get("/users/me", headers=api.bearer(forge(claims)))
    assert_problem(response, 401, "unauthorized")


async def test_registrations_per_address_are_limited(migrated_url: str, uow_factory: Any) -> None:
    async with running_api(migrated_url, uow_factory, {"CHAT_REGISTER_PER_HOUR": "3"}) as api:
        statuses = []
        for i in range(4):
            response = await api.client.post(
                "/auth/register",
                json={"name": "X", "email": f"x{i}@example.com", "phoneNumber": "bad", "password": PASSWORD},
            )
            statuses.append(response.status_code)
        assert statuses == [400, 400, 400, 429]  # invalid attempts count too
        assert int(response.headers["Retry-After"]) > 0


async def test_forwarded_for_is_believed_only_from_trusted_proxies(migrated_url: str, uow_factory: Any) -> None:
    env = {"CHAT_REGISTER_PER_HOUR": "1", "CHAT_TRUSTED_PROXIES": "127.0.0.1/32"}
    async with running_api(migrated_url, uow_factory, env) as api:

        async def attempt(forwarded: str) -> int:
            response = await api.client.post(
                "/auth/register",
                json={"name": "X", "email": "x@example.com", "phoneNumber": "bad", "password": PASSWORD},
                headers={"X-Forwarded-For": forwarded},
            )
            return response.status_code

        # behind a trusted proxy, each forwarded client has its own budget
        assert [await attempt("203.0.113.1"), await attempt("203.0.113.2"), await attempt("203.0.113.1")] == [
            400,
            400,
            429,
        ]
    async with running_api(migrated_url, uow_factory, {"CHAT_REGISTER_PER_HOUR": "1"}) as api:
        body = {"name": "X", "email": "x@example.com", "phoneNumber": "bad", "password": PASSWORD}
        first = await api.client.post("/auth/register", json=body, headers={"X-Forwarded-For": "203.0.113.9"})
        second = await api.client.post("/auth/register", json=body, headers={"X-Forwarded-For": "203.0.113.10"})
        assert (first.status_code, second.status_code) == (400, 429)  # untrusted peer: header ignored


async def test_cors_allows_only_configured_origins(migrated_url: str, uow_factory: Any) -> None:
    async with running_api(migrated_url, uow_factory, {"CHAT_CORS_ORIGINS": "https://app.example"}) as api:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        allowed = await api.client.options("/auth/login", headers={"Origin": "https://app.example", **preflight})
        assert allowed.headers.get("access-control-allow-origin") == "https://app.example"
        denied = await api.client.options("/auth/login", headers={"Origin": "https://evil.example", **preflight})
        assert denied.headers.get("access-control-allow-origin") is None


async def test_hashing_runs_off_the_event_loop(migrated_url: str) -> None:
    """While two logins are inside Argon2 (held there by the gate), the server still answers."""
    container, gated = gated_container(migrated_url, concurrency=2)
    with serve(container) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            logins = [
                asyncio.create_task(
                    client.post("/auth/login", json={"email": f"{who}@example.com", "password": "x" * 8})
                )
                for who in ("a", "b")  # two accounts: one account has at most one check at a time
            ]
            await wait_started(gated, 2)
            health = await asyncio.wait_for(client.get("/health"), timeout=5)
            assert health.status_code == 200
            assert not any(task.done() for task in logins)  # both still hashing
            gated.gate.set()
            assert [r.status_code for r in await asyncio.gather(*logins)] == [401, 401]


async def test_hashing_slots_full_gives_503_busy(migrated_url: str) -> None:
    container, gated = gated_container(migrated_url, concurrency=1)
    with serve(container) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            first = asyncio.create_task(
                client.post("/auth/login", json={"email": "a@example.com", "password": PASSWORD})
            )
            await wait_started(gated, 1)
            other = {"email": "b@example.com", "password": PASSWORD}
            second = await client.post("/auth/login", json=other)  # waits 1 s for the only slot
            gated.gate.set()
            assert_problem(second, 503, "busy")
            assert second.headers["Retry-After"] == "1"
            assert (await first).status_code == 401


async def test_dev_secret_survives_a_restart(migrated_url: str, tmp_path: Path) -> None:
    secret_file = tmp_path / "data" / "jwt_secret"
    body = {"name": "A", "email": "a@example.com", "phoneNumber": "+14155550100", "password": PASSWORD}

    def settings() -> Any:
        from entrypoints.settings import load_settings

        return load_settings({"CHAT_DATABASE_URL": migrated_url}, secret_file=secret_file)

    with serve(make_container(settings())) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            token = (await client.post("/auth/register", json=body)).json()["access_token"]
    assert secret_file.stat().st_mode & 0o777 == 0o600
    with serve(make_container(settings())) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            me = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200


async def test_user_lookups_and_searches_are_limited_per_user(migrated_url: str, uow_factory: Any) -> None:
    """A quarter of CHAT_RATE_MSG_PER_S (4 → 1/s) and of its burst (8 → 2), shared by
    ``GET /users/{id}`` and ``GET /users?q=``, per user; the clock stands still."""
    container = make_container(make_settings(migrated_url, {"CHAT_RATE_MSG_PER_S": "4", "CHAT_RATE_MSG_BURST": "8"}))
    container.monotonic.override(providers.Object(lambda: 100.0))
    with serve(container) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            api = Api(client, container, uow_factory)
            ann = await api.register("Ann", "ann@example.com", "+14155550100")
            bob = await api.register("Bob", "bob@example.com", "+14155550101")
            as_ann, as_bob = api.bearer(ann["access_token"]), api.bearer(bob["access_token"])

            first = await client.get(f"/users/{bob['id']}", headers=as_ann)
            second = await client.get("/users", params={"q": "bob@example.com"}, headers=as_ann)
            third = await client.get(f"/users/{bob['id']}", headers=as_ann)
            fourth = await client.get("/users", params={"q": "bob@example.com"}, headers=as_ann)

            assert (first.status_code, second.status_code) == (200, 200)
            for refused in (third, fourth):
                assert_problem(refused, 429, "rate_limited")
                assert refused.headers["Retry-After"] == "1"
            assert (await client.get(f"/users/{ann['id']}", headers=as_bob)).status_code == 200
            assert (await client.get("/users", headers=as_ann)).status_code == 200  # contacts: not a lookup
