"""The web app at ``/app/`` over real HTTP: what is served, with which headers, and when.

The browser drives it in ``test_web_app_browser.py``; here the files, their types, caching and
Content-Security-Policy, the switch (``CHAT_WEB_APP``, on in ``dev`` by default) and the SDK
being the very file of ``clients/js/src/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from entrypoints.http.webapp import FILES_DIRECTORY, MEDIA_TYPES
from tests.integration.support import make_container, make_settings, serve

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "js" / "src" / "chat.js"


@pytest.fixture
def backend() -> str:
    """Static files do not depend on the database: SQLite only."""
    return "sqlite"


@pytest.fixture
def app_url(migrated_url: str) -> Iterator[str]:
    with serve(make_container(make_settings(migrated_url))) as base_url:
        yield base_url


def test_the_page_and_its_files_are_served_with_their_types(app_url: str) -> None:
    with httpx.Client(base_url=app_url) as http:
        for path, name in [("/app/", "index.html"), ("/app", "index.html"), *((f"/app/{n}", n) for n in MEDIA_TYPES)]:
            answer = http.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"] == f"{MEDIA_TYPES[name]}; charset=utf-8", path
            assert answer.content == (FILES_DIRECTORY / name).read_bytes(), path
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-cache"
            policy = answer.headers["content-security-policy"]
            assert "default-src 'none'" in policy
            assert "script-src 'self'" in policy
            assert "connect-src 'self'" in policy


def test_the_page_loads_only_its_own_files(app_url: str) -> None:
    page = httpx.get(f"{app_url}/app/").text
    assert 'src="/app/app.js"' in page
    assert 'href="/app/app.css"' in page
    assert "http://" not in page
    assert "https://" not in page
    script = httpx.get(f"{app_url}/app/app.js").text
    assert 'from "./chat.js"' in script
    assert "https://" not in script


def test_the_sdk_served_is_the_file_in_clients_js(app_url: str) -> None:
    """One source: ``entrypoints/web/chat.js`` links to ``clients/js/src/chat.js``."""
    link = FILES_DIRECTORY / "chat.js"
    assert link.is_symlink()
    assert link.resolve() == SDK.resolve()
    assert httpx.get(f"{app_url}/app/chat.js").content == SDK.read_bytes()


def test_an_unchanged_file_is_not_sent_again(app_url: str) -> None:
    with httpx.Client(base_url=app_url) as http:
        first = http.get("/app/app.js")
        etag = first.headers["etag"]
        again = http.get("/app/app.js", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert http.get("/app/app.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_an_unknown_file_is_a_404_problem(app_url: str) -> None:
    with httpx.Client(base_url=app_url) as http:
        for path in ["/app/secret.txt", "/app/__init__.py", "/app/..%2Fapp.py", "/app/%2e%2e"]:
            answer = http.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"] == "application/problem+json", path


def test_the_root_sends_browsers_to_the_app(app_url: str) -> None:
    answer = httpx.get(f"{app_url}/")
    assert answer.status_code == 302
    assert answer.headers["location"] == "/app/"


def test_the_app_is_not_in_the_openapi_document(app_url: str) -> None:
    paths = httpx.get(f"{app_url}/schema/openapi.json").json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/app")]


@pytest.mark.parametrize(
    ("environment", "served"),
    [
        ({"CHAT_ENV": "prod"}, False),
        ({"CHAT_ENV": "prod", "CHAT_WEB_APP": "on"}, True),
        ({"CHAT_WEB_APP": "off"}, False),
    ],
)
def test_chat_web_app_switches_it(migrated_url: str, environment: dict[str, str], served: bool) -> None:
    with serve(make_container(make_settings(migrated_url, environment))) as base_url:
        for path in ["/app/", "/app/chat.js", "/"]:
            assert (httpx.get(f"{base_url}{path}").status_code != 404) is served, path
