"""An independent check of the OpenAPI document: schemathesis, with its own generated inputs and
every one of its checks, against the live app, on SQLite and on PostgreSQL (each store refuses
different things: PostgreSQL found a 32-bit column and NUL characters).

It fails on any 5xx, any status, content type, header or body the document does not promise, any
schema-valid request refused and any schema-violating one accepted. Each request acts as an account
registered for it (``schemathesis_hooks.py``, which also says which rules written only in words it
keeps in the valid cases). The seed is fixed so that a run is repeatable; set
``CHAT_CONFORMANCE_SEED`` (and ``CHAT_CONFORMANCE_EXAMPLES``) to explore further.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.integration.schemathesis_hooks import BASE_URL_VARIABLE
from tests.integration.support import make_container, make_settings, serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = os.environ.get("CHAT_CONFORMANCE_EXAMPLES", "30")  # per operation and phase: ~30 s here
SEED = os.environ.get("CHAT_CONFORMANCE_SEED", "14")
# Every request registers an account and some try to log in: no limit may get in the way.
UNLIMITED = {"CHAT_REGISTER_PER_HOUR": "1000000", "CHAT_LOGIN_MAX_FAILURES": "1000000"}


async def test_the_api_conforms_to_its_openapi_document(migrated_url: str, tmp_path: Path) -> None:
    with serve(make_container(make_settings(migrated_url, UNLIMITED))) as base_url:
        command = [
            *(sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/schema/openapi.json"),
            *("--checks", "all", "--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1"),
            *("--generation-database", "none", "--no-color", "--output-truncate", "false"),
        ]
        environment = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
            BASE_URL_VARIABLE: base_url,
        }
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=tmp_path,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    report = output.decode()
    assert process.returncode == 0, report
    assert "Tested: 25" in report, report  # every operation of the document was exercised
