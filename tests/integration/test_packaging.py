"""Packaging (issue 18): ``make run`` installs what serving needs and no test tool; an unsupported
Python is refused in one clear sentence before anything is created; ``pyproject.toml``'s runtime
dependencies are the runtime lock's direct ones; the locks pin every package with its hashes and
name no package index."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = [ROOT / "requirements.lock", ROOT / "requirements-dev.lock"]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("make")
    if tool is None:
        pytest.skip("make is not installed")
    return subprocess.run([tool, "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, check=False)


def test_make_run_installs_the_runtime_lock_only(tmp_path: Path) -> None:
    plan = make("-n", f"VENV={tmp_path / 'venv'}", "run")
    assert plan.returncode == 0, plan.stderr
    assert "-r requirements.lock" in plan.stdout
    assert "requirements-dev.lock" not in plan.stdout
    assert "p2p-chat serve" in plan.stdout


def test_an_old_python_is_refused_with_the_version_it_needs(tmp_path: Path) -> None:
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "Python 3.10.12"; exit 0; fi\nexit 1\n')
    old.chmod(0o755)
    venv = tmp_path / "venv"
    result = make(f"VENV={venv}", f"PYTHON={old}", "install-serve")
    assert result.returncode != 0
    assert f"p2p-chat needs Python 3.11 or newer; '{old}' is Python 3.10.12." in result.stderr
    assert not venv.exists()


def names(requirements: list[str]) -> set[str]:
    """Normalised distribution names of requirement strings (extras, versions, markers dropped)."""
    return {re.split(r"[\s\[<>=!~;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-") for line in requirements}


def test_pyproject_runtime_dependencies_are_the_runtime_lock_direct_ones() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [
        line
        for line in (ROOT / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    ]
    assert names(project["dependencies"]) == names(direct)
    pinned = set(re.findall(r"^([A-Za-z0-9_.-]+)==", (ROOT / "requirements.lock").read_text(), re.MULTILINE))
    assert names(direct) <= {name.lower() for name in pinned}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_locks_pin_every_package_with_hashes_and_no_index(lock: Path) -> None:
    text = lock.read_text()
    assert not re.search(r"https?://|--(extra-)?index-url|--find-links", text)
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text)
    packages = [entry for entry in entries if re.match(r"[A-Za-z0-9]", entry)]
    assert packages
    for entry in packages:
        assert re.match(r"[A-Za-z0-9_.\[\],-]+==\S+", entry), entry.splitlines()[0]
        assert "--hash=sha256:" in entry, f"{lock.name}: {entry.splitlines()[0]} has no hash"
