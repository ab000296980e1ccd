"""A client generated from ``/schema/openapi.json`` with openapi-python-client, as a client team
would: generation raises no warning, and the generated code parses successes into their models and
every error into the typed problem."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.integration.support import make_container, make_settings, serve

PACKAGE = "p2p_chat_generated_client"
REGISTRATION = {"name": "Ann", "email": "ann@example.com", "phone_number": "+1 415 555 0100", "password": "x" * 12}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Path]:
    """Where the client goes; importable while the test runs."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path / PACKAGE
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


async def generate(document: bytes, target: Path) -> str:
    """Run the generator on ``document``; its output (it formats the code with ruff from this venv)."""
    source = target.parent / "openapi.json"
    source.write_bytes(document)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "openapi_python_client", "generate", "--path", str(source)),
        *("--output-path", str(target), "--meta", "none"),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, output.decode()
    return output.decode()


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_client_parses_successes_and_every_problem(migrated_url: str, generated: Path) -> None:
    with serve(make_container(make_settings(migrated_url))) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as http:
            document = (await http.get("/schema/openapi.json")).content
        output = await generate(document, generated)
        assert "warning" not in output.lower(), output

        client: Any = module("client").Client(base_url=base_url)
        register, problem = module("api.auth.register"), module("models.problem").Problem
        body = module("models.register_in").RegisterIn(**REGISTRATION)

        created = await register.asyncio_detailed(client=client, body=body)
        assert created.status_code == 201
        assert isinstance(created.parsed, module("models.token_out").TokenOut)

        again = await register.asyncio_detailed(client=client, body=body)
        assert again.status_code == 409
        assert isinstance(again.parsed, problem)
        assert (again.parsed.type_, again.parsed.status) == ("email_taken", 409)

        anonymous = await module("api.users.get_profile").asyncio_detailed(client=client)
        assert isinstance(anonymous.parsed, problem)
        assert (anonymous.parsed.type_, anonymous.parsed.status) == ("unauthorized", 401)

        signed_in = module("client").AuthenticatedClient(base_url=base_url, token=created.parsed.access_token)
        bad_limit = await module("api.users.list_users").asyncio_detailed(client=signed_in, limit=0)
        assert isinstance(bad_limit.parsed, problem)
        assert [error.field for error in bad_limit.parsed.errors] == ["limit"]

        profile = await module("api.users.get_profile").asyncio_detailed(client=signed_in)
        assert profile.parsed.email == "ann@example.com"
        assert profile.parsed.created_at.tzinfo is not None  # a date-time, parsed as one
