"""The import-linter contracts are real: a planted violation in a copy of the tree breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("domain", "application", "adapters", "entrypoints")


def copy_tree(target: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    copy_tree(tmp_path)
    result = lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("domain/users.py", "import sqlalchemy  # planted\n", "Core is framework-free BROKEN"),
        ("application/users.py", "import adapters.sqlalchemy.orm  # planted\n", "Hexagonal layers BROKEN"),
        ("domain/auth.py", "import time  # planted\n", "Domain is pure BROKEN"),
        (
            "adapters/auth/tokens.py",
            "import adapters.sqlalchemy.orm  # planted\n",
            "Driven adapters are independent BROKEN",
        ),
        (
            "entrypoints/http/ops.py",
            "import adapters.sqlalchemy.health  # planted\n",
            "The web edge knows no adapter BROKEN",
        ),
        (
            "entrypoints/ws/__init__.py",
            "import adapters.memory.fanout  # planted\n",
            "The web edge knows no adapter BROKEN",
        ),
        # through the container, which imports every adapter: the web edge may not do that either
        (
            "entrypoints/http/users.py",
            "import entrypoints.container  # planted\n",
            "The web edge knows no adapter BROKEN",
        ),
        ("entrypoints/app.py", "import adapters.sqlalchemy.migrate  # planted\n", "The app imports no adapter BROKEN"),
    ],
)
def test_a_planted_violation_breaks_its_contract(tmp_path: Path, module: str, planted: str, contract: str) -> None:
    copy_tree(tmp_path)
    path = tmp_path / module
    source = path.read_text()
    marker = "from __future__ import annotations\n"
    path.write_text(source.replace(marker, marker + planted, 1) if marker in source else source + planted)
    result = lint(tmp_path)
    assert result.returncode != 0
    assert contract in result.stdout, result.stdout


def readme_layout() -> list[str]:
    """The directories named in the first column (27 characters) of the README's layout block."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    paths: list[str] = []
    for line in block.splitlines():
        head = line[:27].strip()
        if not head:
            continue
        first, *others = head.split(", ")
        paths.append(first)
        parent = first.rstrip("/").rsplit("/", 1)[0]
        paths.extend(f"{parent}/{other}" for other in others)
    return [path.rstrip("/") for path in paths]


def test_the_readme_layout_matches_the_tree() -> None:
    named = readme_layout()
    missing = [path for path in named if not (ROOT / path).is_dir()]
    assert not missing, f"the README names directories that do not exist: {missing}"
    packages = {
        init.parent.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }
    # Every layer and every package directly under one is named (deeper ones, such as the
    # migrations or the fast path, are described in their parent's line).
    unnamed = sorted(
        path
        for path in packages
        if path.count("/") <= 1 and path not in named and not any(n.startswith(f"{path}/") for n in named)
    )
    assert not unnamed, f"the README's layout does not name these packages: {unnamed}"
