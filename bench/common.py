"""Small helpers shared by the benchmark: limits, ports, percentiles, machine description, output."""

from __future__ import annotations

import functools
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent


def raise_nofile_limit() -> tuple[int, int]:
    """Raise this process's open-files soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def say(message: str) -> None:
    """A progress line on stderr (results go to stdout and the JSON file)."""
    print(message, file=sys.stderr, flush=True)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0–1) of an ascending list, nearest-rank; NaN for an empty list."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(latencies_us: list[int]) -> dict[str, float | int]:
    """p50/p90/p99/max/mean in milliseconds of a list of latencies in microseconds."""
    ordered = sorted(latencies_us)
    if not ordered:
        return {"count": 0, "p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "max_ms": 0.0}
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 0.50) / 1000,
        "p90_ms": percentile(ordered, 0.90) / 1000,
        "p99_ms": percentile(ordered, 0.99) / 1000,
        "max_ms": ordered[-1] / 1000,
        "mean_ms": sum(ordered) / len(ordered) / 1000,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def code_version() -> dict[str, Any]:
    """Which server code was measured: the commit and the files changed since (outside bench/),
    or ``BENCH_CODE_REF`` for a checkout without ``.git`` (a ``git archive`` snapshot)."""
    git = shutil.which("git")
    if (REPO_ROOT / ".git").exists() and git is not None:
        run = functools.partial(subprocess.run, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
        commit = run([git, "rev-parse", "HEAD"]).stdout.strip()
        status = run([git, "status", "--porcelain"]).stdout.splitlines()
        changed = [line[3:] for line in status if not line[3:].startswith("bench/")]
        return {"commit": commit, "changed_since_commit": changed}
    return {"commit": os.environ.get("BENCH_CODE_REF", "unknown"), "changed_since_commit": []}


def machine_info() -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "open_files_limit": [soft, hard],
        "packages": {
            name: _version(name)
            for name in ("litestar", "uvicorn", "websockets", "msgspec", "sqlalchemy", "aiosqlite", "asyncpg")
        },
    }


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC: one clock for every process of the machine, so senders and recipients in
    different load-generator processes can compare their timestamps."""
    return time.monotonic_ns()
