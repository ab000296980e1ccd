"""``docs/asyncapi.json`` is valid AsyncAPI 3 by the official parser (``@asyncapi/parser``, run with
node from ``tools/asyncapi``, installed by ``make test``), and the app serves it without
authentication. Without node or the installed parser the validation is skipped, or fails with
``CI=true``."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from entrypoints.ws import asyncapi
from tests.integration.support import unavailable
from tests.integration.test_http_accounts import running_api

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "asyncapi"
# The one diagnostic allowed: the parser recommends the newest AsyncAPI (3.1); the document is 3.0,
# what most generators read today.
ALLOWED = {("asyncapi-latest-version", "Information")}


@pytest.fixture
def backend() -> str:
    """The route does not depend on the database: SQLite only."""
    return "sqlite"


def parse(document: Path) -> dict[str, Any]:
    """The parser's verdict on ``document`` (tools/asyncapi/validate.mjs)."""
    node = shutil.which("node")
    problem = (
        "node is not installed"
        if node is None
        else "the AsyncAPI parser is not installed (make node-tools)"
        if not (TOOLS / "node_modules" / "@asyncapi" / "parser").is_dir()
        else ""
    )
    if problem:
        unavailable(f"cannot validate docs/asyncapi.json: {problem}; run `make test`")
    assert node is not None
    result = subprocess.run(
        [node, str(TOOLS / "validate.mjs"), str(document)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    verdict: dict[str, Any] = json.loads(result.stdout)
    return verdict


def test_the_document_is_valid_asyncapi_3() -> None:
    verdict = parse(asyncapi.DOCUMENT)
    problems = [d for d in verdict["diagnostics"] if (d["code"], d["severity"]) not in ALLOWED]
    assert verdict["valid"], problems
    assert verdict["version"] == "3.0.0"
    assert problems == []


def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    """The check is not vacuous: an operation that neither sends nor receives is an error."""
    broken = json.loads(asyncapi.document_bytes())
    broken["operations"]["ping"]["action"] = "publish"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    verdict = parse(path)
    assert not verdict["valid"]
    assert any(d["severity"] == "Error" and d["path"] == "operations/ping/action" for d in verdict["diagnostics"])


async def test_the_app_serves_the_document_without_authentication(
    migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    async with running_api(migrated_url, uow_factory) as api:
        response: httpx.Response = await api.client.get("/schema/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == asyncapi.DOCUMENT.read_bytes()
