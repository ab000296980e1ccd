"""Summaries of a server profile: where the time goes, by function and by module.

* ``py-spy record --format raw --threads [--gil]`` output (collapsed stacks, one
  ``frame;frame;… count`` line per distinct stack, root first): samples per thread, self and
  inclusive time per function and per package/module. With ``--gil`` (as ``--profile py-spy``
  records) only samples where a thread holds the GIL are kept: Python CPU time.
* a ``cProfile`` file: ``pstats`` top functions by own and cumulative time, own time per module.

``python -m bench profile FILE`` prints the summary of a file written by ``--profile``.
"""

from __future__ import annotations

import pstats
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_LAYERS = ("domain", "application", "adapters", "entrypoints", "bench")
REPO = Path(__file__).resolve().parent.parent
# Frames under which everything runs (process start, event loop, uvicorn's runner): left out of
# the inclusive list, which would otherwise open with them.
PLUMBING = frozenset(
    {
        "<module> (p2p-chat)",
        "main (cli.py)",
        "serve (cli.py)",
        "run (main.py)",
        "asyncio_run (_compat.py)",
        "Server.run (server.py)",
        "Runner.run (runners.py)",
        "BaseEventLoop.run_until_complete (base_events.py)",
        "BaseEventLoop.run_forever (base_events.py)",
        "BaseEventLoop._run_once (base_events.py)",
        "Handle._run (events.py)",
    }
)


def module_of(path: str) -> str:
    """The owner of a source path, at package level: ``sqlalchemy``, ``stdlib:asyncio``,
    ``application/messaging`` (the project's layers keep their module) …

    py-spy prints paths relative to ``sys.path`` entries (``sqlalchemy/sql/elements.py``),
    cProfile absolute ones; both are handled."""
    if path.startswith("<frozen"):
        return "stdlib:" + path.strip("<>").removeprefix("frozen ").split(".")[0]
    for marker in ("site-packages/", "/lib/python3.11/", "/lib/python3.12/", "/lib/python3.13/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    parts = path.split("/")
    head = parts[0].removesuffix(".py")
    if head in _LAYERS and len(parts) > 1:
        return f"{head}/{parts[1].removesuffix('.py')}"
    if head in sys.stdlib_module_names:
        return f"stdlib:{head}"
    return head or "?"


def _function(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "?"
    return f"{match['func']} ({match['file'].rsplit('/', 1)[-1]})", match["file"]


def _thread_group(frames: list[str]) -> str:
    """``event loop (main thread)``, ``aiosqlite threads`` or ``other threads``."""
    thread = next((f for f in frames if f.startswith("thread ")), None)
    if thread is None or "MainThread" in thread:  # recorded without --threads: one thread
        return "event loop (main thread)"
    if "_connection_worker_thread" in thread:
        return "aiosqlite threads"
    return "other threads"


def summarise_pyspy(path: Path, top: int = 25) -> dict[str, Any]:
    """Samples split by thread group; for the event-loop thread, own and inclusive time by
    module and function (the share spent waiting in ``select`` is its idle time); for the
    database threads, the lines they sit on (a SQLite call, including its busy-wait for the
    write lock, or waiting for work)."""
    groups: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    module_inclusive: Counter[str] = Counter()
    worker_lines: Counter[str] = Counter()
    total = loop_total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        python_frames = [f for f in frames if not f.startswith(("thread ", "process "))]
        if not python_frames:
            continue
        total += count
        group = _thread_group(frames)
        groups[group] += count
        if group != "event loop (main thread)":
            leaf, _ = _function(python_frames[-1])
            worker_lines[f"{group}: {leaf} — {python_frames[-1].rsplit(':', 1)[-1].rstrip(')')}"] += count
            continue
        loop_total += count
        name, file = _function(python_frames[-1])
        own[name] += count
        modules[module_of(file)] += count
        for function in {_function(f)[0] for f in python_frames} - PLUMBING:
            inclusive[function] += count
        for module in {module_of(_function(f)[1]) for f in python_frames}:
            module_inclusive[module] += count

    def share(counter: Counter[str], n: int, of: int) -> list[tuple[str, float]]:
        return [(k, v / of * 100) for k, v in counter.most_common(n)] if of else []

    return {
        "kind": "py-spy",
        "samples": total,
        "event_loop_samples": loop_total,
        "threads": share(groups, 10, total),
        "database_thread_lines": share(worker_lines, 8, total),
        "own_by_module": share(modules, top, loop_total),
        "inclusive_by_module": share(module_inclusive, top, loop_total),
        "own_by_function": share(own, top, loop_total),
        "inclusive_by_function": share(inclusive, top, loop_total),
    }


def summarise_cprofile(path: Path, top: int = 25) -> dict[str, Any]:
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    modules: Counter[str] = Counter()
    for (file, _line, _func), entry in raw.items():
        modules[module_of(file)] += int(entry[2] * 1e6)

    def label(key: tuple[str, int, str]) -> str:
        return f"{key[2]} ({key[0].rsplit('/', 1)[-1]}:{key[1]})"

    by_own = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    by_cum = sorted(raw.items(), key=lambda kv: kv[1][3], reverse=True)[:top]
    return {
        "kind": "cprofile",
        "total_own_s": total,
        "own_by_function": [(label(k), v[2] / total * 100) for k, v in by_own],
        "inclusive_by_function": [(label(k), v[3] / total * 100) for k, v in by_cum],
        "own_by_module": [(k, v / 1e6 / total * 100) for k, v in modules.most_common(top)],
    }


def summarise(path: Path, top: int = 25) -> dict[str, Any]:
    return summarise_cprofile(path, top) if path.suffix == ".prof" else summarise_pyspy(path, top)


def render(summary: dict[str, Any], top: int = 15) -> str:
    lines = [f"profile ({summary['kind']}, {summary.get('samples', '')} samples)"]
    scope = " (share of the event-loop thread's samples)" if summary["kind"] == "py-spy" else ""
    for key, title in (
        ("threads", "samples by thread group (share of all samples)"),
        ("database_thread_lines", "database threads sit on (share of all samples)"),
        ("own_by_module", f"own time by package (project: by module){scope}"),
        ("inclusive_by_module", f"inclusive time by package (project: by module){scope}"),
        ("own_by_function", f"own time by function{scope}"),
        ("inclusive_by_function", f"inclusive time by function, event-loop plumbing left out{scope}"),
    ):
        rows = summary.get(key)
        if not rows:
            continue
        lines.append(f"  {title}:")
        lines.extend(f"    {pct:5.1f}%  {name}" for name, pct in rows[:top])
    return "\n".join(lines)
