"""``python -m bench run --scenario a|b|c|d [options]``, ``python -m bench usecase`` and
``python -m bench profile FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import hotpath
from bench.common import VENV_BIN, raise_nofile_limit, say
from bench.scenarios import Options
from bench.scenarios import run as run_scenario


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="p2p-chat benchmark (docs/performance.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario against the ceiling/bare server and the real one")
    d = Options()
    run.add_argument("--scenario", choices=["a", "b", "c", "d"], default=d.scenario)
    run.add_argument("--duration", type=float, default=d.duration, help="seconds of sending (a, d)")
    run.add_argument("--warmup", type=float, default=d.warmup, help="first seconds not measured (a, d)")
    run.add_argument(
        "--drain",
        type=float,
        default=d.drain,
        help="after sending: wait for acks and deliveries until nothing moved for this long (max 120 s)",
    )
    run.add_argument("--users", type=int, default=d.users, help="users, one connection each (a, d)")
    run.add_argument("--window", type=int, default=d.window, help="sends in flight per user (a, d)")
    run.add_argument("--body-bytes", type=int, default=d.body_bytes)
    run.add_argument("--workers", type=int, default=d.workers, help="load-generator processes")
    run.add_argument("--connections", type=int, default=d.connections, help="idle connections (b)")
    run.add_argument("--idle-seconds", type=float, default=d.idle_seconds, help="idle CPU measurement (b)")
    run.add_argument("--pending", type=int, default=d.pending, help="backlog to drain (c)")
    run.add_argument("--database", choices=["sqlite", "postgres"], default=d.database, help="for target 'real'")
    run.add_argument("--postgres-url", default=d.postgres_url, help="server on which a fresh database is made")
    run.add_argument("--redis-url", default=d.redis_url, help="for targets with several server processes")
    run.add_argument("--server-workers", type=int, default=d.server_workers, help="CHAT_WORKERS for target 'real'")
    run.add_argument(
        "--targets",
        default="",
        help="comma-separated: ceiling, bare, real, real-pg, real-pg-redis-2w (default per scenario)",
    )
    run.add_argument(
        "--profile", choices=["none", "py-spy", "cprofile"], default=d.profile, help="profile the real server"
    )
    usecase = sub.add_parser("usecase", help="cost of send + ack through the use cases alone (no WebSocket)")
    usecase.add_argument("--database", choices=["sqlite", "postgres"], default=d.database)
    usecase.add_argument("--postgres-url", default=d.postgres_url)
    usecase.add_argument("--count", type=int, default=200)
    usecase.add_argument("--profile", action="store_true", help="print the top functions (cProfile)")
    usecase.add_argument(
        "--push",
        choices=["off", "no-target", "target"],
        default="off",
        help="a push gateway configured (the outbox statement per send); 'target': the recipient has a "
        "push target, so each send writes a job",
    )
    driver = sub.add_parser("driver", help="cost of one message through a live connection's own code (fakes around it)")
    driver.add_argument("--count", type=int, default=20000, help="messages")
    driver.add_argument("--window", type=int, default=16, help="sends in flight")
    profile = sub.add_parser("profile", help="summarise a profile written by --profile")
    profile.add_argument("file", type=Path)
    profile.add_argument("--top", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "profile":
        print(hotpath.render(hotpath.summarise(args.file, args.top), args.top))
        return 0
    if args.command == "driver":
        from bench import driver as driver_bench

        driver_bench.run(args.count, args.window)
        return 0
    if args.command == "usecase":
        from bench import usecase as usecase_bench

        usecase_bench.run(args.database, args.postgres_url, args.count, args.profile, args.push)
        return 0
    if args.command == "run" and args.profile == "py-spy" and not (VENV_BIN / "py-spy").exists():
        print("--profile py-spy needs py-spy in the venv: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    soft, hard = raise_nofile_limit()
    say(f"open-files limit {soft}/{hard}")
    opts = Options(
        scenario=args.scenario,
        duration=args.duration,
        warmup=min(args.warmup, args.duration / 2),
        drain=args.drain,
        users=args.users,
        window=args.window,
        body_bytes=args.body_bytes,
        workers=args.workers,
        connections=args.connections,
        idle_seconds=args.idle_seconds,
        pending=args.pending,
        database=args.database,
        postgres_url=args.postgres_url,
        redis_url=args.redis_url,
        server_workers=args.server_workers,
        targets=[t.strip() for t in args.targets.split(",") if t.strip()],
        profile=args.profile,
    )
    if opts.scenario == "b" and opts.connections + 100 > soft:
        say(f"warning: {opts.connections} connections need more open files than the limit {soft}")
    run_scenario(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
