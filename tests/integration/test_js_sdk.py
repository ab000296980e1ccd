"""The JavaScript SDK (``clients/js``) with node: its JSDoc types pass ``tsc --checkJs --strict``,
its generated frame typedefs match ``docs/asyncapi.json`` and its ``chat.d.ts`` is current
(``npm run check``), and its node tests pass against a real server they start themselves
(``.venv/bin/p2p-chat``, SQLite). ``make test`` installs the SDK's pinned dev dependencies
(``make node-tools``). Without node or them the tests are skipped, or fail with ``CI=true``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.support import unavailable

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "js"
DEV_DEPENDENCIES = ("typescript", "ws", "fake-indexeddb")  # clients/js/package.json


def node() -> str:
    """The node executable, once the SDK's dev dependencies are installed; else skip (or fail on CI)."""
    found = shutil.which("node")
    problem = (
        "node is not installed"
        if found is None
        else "the JavaScript SDK's dev dependencies are not installed (make node-tools)"
        if not all((SDK / "node_modules" / package).is_dir() for package in DEV_DEPENDENCIES)
        else ""
    )
    if problem:
        unavailable(f"cannot test clients/js: {problem}; run `make test`")
    assert found is not None
    return found


def run(args: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(args, cwd=SDK, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_types_are_strict_and_generated_files_are_current() -> None:
    """``tsc --checkJs --strict``; frame typedefs == docs/asyncapi.json; chat.d.ts == tsc's output."""
    run([node(), "scripts/build.mjs", "--check"], timeout=120)


def test_node_tests_against_a_real_server() -> None:
    executable = node()
    command = Path(sys.executable).with_name("p2p-chat")
    assert command.exists(), f"{command} is missing: run make install"
    env = {**os.environ, "CHAT_TEST_P2P_CHAT": str(command)}
    run([executable, "--test", "--test-reporter=spec", "test/chat.test.mjs"], timeout=180, env=env)


def test_a_changed_frame_fails_the_check_and_the_type_check(tmp_path: Path) -> None:
    """The check is not vacuous: with a field of ``messageAck`` renamed in the AsyncAPI document,
    ``--check`` reports stale typedefs, and once they are regenerated the SDK's code that reads
    the old field no longer type-checks."""
    executable = node()
    copy = tmp_path / "clients" / "js"
    for part in ("scripts", "src"):
        shutil.copytree(SDK / part, copy / part)
    for name in ("chat.d.ts", "tsconfig.json", "package.json"):
        shutil.copy(SDK / name, copy / name)
    (copy / "node_modules").symlink_to(SDK / "node_modules")
    document = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    frame = document["components"]["schemas"]["MessageAckFrame"]
    frame["properties"]["serverSeq"] = frame["properties"].pop("seq")
    frame["required"] = ["serverSeq" if name == "seq" else name for name in frame["required"]]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "asyncapi.json").write_text(json.dumps(document))

    stale = subprocess.run(
        [executable, "scripts/build.mjs", "--check"], cwd=copy, capture_output=True, text=True, timeout=120, check=False
    )
    assert stale.returncode == 1
    assert "frame typedefs differ from docs/asyncapi.json" in stale.stderr

    rebuilt = subprocess.run(
        [executable, "scripts/build.mjs"], cwd=copy, capture_output=True, text=True, timeout=120, check=False
    )
    assert rebuilt.returncode == 1
    assert "Property 'seq' does not exist on type 'MessageAckFrame'" in rebuilt.stderr
