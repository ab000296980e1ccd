"""CPU time and resident memory of a process and its descendants, from ``/proc``.

A server started as ``p2p-chat serve`` with ``CHAT_WORKERS=2`` is a supervisor and two worker
processes; under ``py-spy record`` the server is the profiler's child. :func:`sample` sums the
whole tree below the given pid (the profiler itself is left out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EXCLUDED_COMMANDS = frozenset({"py-spy"})


@dataclass(frozen=True, slots=True)
class Sample:
    """CPU seconds (user + system) and RSS bytes of a process tree, and how many processes."""

    cpu_s: float
    rss_bytes: int
    processes: int
    system_s: float = 0.0  # the kernel's share of cpu_s


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command is in parentheses and may contain spaces: split after the last ')'.
    command = raw[raw.index("(") + 1 : raw.rindex(")")]
    return command, raw[raw.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parsed = _stat_fields(int(entry))
            if parsed is not None:
                parents[int(entry)] = int(parsed[1][1])  # field 4: ppid
    return parents


def tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def sample(root: int) -> Sample:
    """Sum CPU and RSS over the live tree below ``root`` (processes that exited are not counted)."""
    cpu_ticks = system_ticks = rss = count = 0
    for pid in tree(root):
        parsed = _stat_fields(pid)
        if parsed is None or parsed[0] in EXCLUDED_COMMANDS:
            continue
        fields = parsed[1]
        cpu_ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
        system_ticks += int(fields[12])
        rss += _rss_bytes(pid)
        count += 1
    return Sample(cpu_s=cpu_ticks / CLOCK_TICKS, rss_bytes=rss, processes=count, system_s=system_ticks / CLOCK_TICKS)


def sample_many(pids: list[int]) -> Sample:
    """The sum of several independent processes (the load generator's workers)."""
    parts = [sample(pid) for pid in pids]
    return Sample(
        cpu_s=sum(p.cpu_s for p in parts),
        rss_bytes=sum(p.rss_bytes for p in parts),
        processes=sum(p.processes for p in parts),
        system_s=sum(p.system_s for p in parts),
    )


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (every core; idle and
    iowait excluded), from the first line of ``/proc/stat``."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
