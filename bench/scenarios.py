"""The scenarios: which servers run, on which data, with which clients; the ratio tables.

(a) throughput: N users × window W, small bodies, ceiling vs real (SQLite).
(b) idle: many authenticated connections, RSS per connection and idle CPU, bare vs real.
(c) offline drain: one user reconnects to a backlog and drains it with acknowledgements.
(d) (a) on PostgreSQL, one process, and two processes with Redis.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.auth.tokens import PyJwtTokenService
from adapters.system.ids import Uuid7Ids
from bench import hotpath
from bench.common import RESULTS_DIR, code_version, machine_info, say, stamp
from bench.drain import drain
from bench.fixture import BenchUser, count_pending, drop_database, fresh_database, new_secret, seed_pending, seed_users
from bench.loadgen import IDLE, LOAD
from bench.runner import LoadConfig, run_clients
from bench.servers import BARE, CEILING, REAL, Server, ServerFailedError, ServerSpec

MIB = 1024 * 1024
TOKEN_TTL_S = 4 * 3600
DRAIN_SENDERS = 10


@dataclass(kw_only=True)
class Options:
    scenario: str = "a"
    duration: float = 20.0
    warmup: float = 2.0
    drain: float = 12.0
    users: int = 100
    window: int = 8
    body_bytes: int = 64
    workers: int = 2
    connections: int = 15_000
    idle_seconds: float = 10.0
    pending: int = 10_000
    database: str = "sqlite"
    postgres_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/15"
    server_workers: int = 1
    targets: list[str] = field(default_factory=list)
    profile: str = "none"
    redelivery_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    kind: str
    database: str | None = None
    workers: int = 1
    redis: bool = False

    def describe(self) -> str:
        if self.kind != REAL:
            return {CEILING: "in-memory relay (bench/ceiling.py)", BARE: "bare handler (bench/bare.py)"}[self.kind]
        extra = f", {self.workers} processes + Redis" if self.redis else ", 1 process"
        return f"p2p-chat serve on {self.database}{extra}"


DEFAULT_TARGETS = {
    "a": ["ceiling", "real"],
    "b": ["bare", "real"],
    "c": ["ceiling", "real"],
    "d": ["ceiling", "real-pg", "real-pg-redis-2w"],
}


def targets_of(opts: Options) -> list[Target]:
    known = {
        "ceiling": Target(name="ceiling", kind=CEILING),
        "bare": Target(name="bare", kind=BARE),
        "real": Target(
            name="real",
            kind=REAL,
            database=opts.database,
            workers=opts.server_workers,
            redis=opts.server_workers > 1,
        ),
        "real-pg": Target(name="real-pg", kind=REAL, database="postgres"),
        "real-pg-redis-2w": Target(name="real-pg-redis-2w", kind=REAL, database="postgres", workers=2, redis=True),
    }
    names = opts.targets or DEFAULT_TARGETS[opts.scenario]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [known[n] for n in names]


def mint_users(count: int, secret: str) -> list[BenchUser]:
    """Users 1..count with tokens, for servers without a database (ceiling, bare)."""
    tokens = PyJwtTokenService(secret=secret, access_ttl_s=TOKEN_TTL_S, ids=Uuid7Ids())
    now = datetime.now(UTC)
    return [
        BenchUser(id=i, token=tokens.issue_access(user_id=i, sid="bench", now=now).token) for i in range(1, count + 1)
    ]


async def _warm_up(server: Server, token: str, expect_ready: bool) -> None:
    """One connection opened and closed before measuring, so one-off imports and caches of the
    first WebSocket are not counted as per-connection memory."""
    from websockets.asyncio.client import connect

    async with connect(server.ws_url, compression=None, ping_interval=None, proxy=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        if expect_ready:
            await asyncio.wait_for(ws.recv(), timeout=30)
            await asyncio.wait_for(ws.recv(), timeout=30)
        else:
            await asyncio.sleep(0.2)


def _user_count(opts: Options) -> int:
    return {"b": opts.connections, "c": 1 + DRAIN_SENDERS}.get(opts.scenario, opts.users)


def run(opts: Options) -> dict[str, Any]:
    targets = targets_of(opts)
    started = stamp()
    report: dict[str, Any] = {
        "scenario": opts.scenario,
        "started_at": started,
        "machine": machine_info(),
        "code": code_version(),
        "options": asdict(opts),
        "runs": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="p2p-chat-bench-"))
    try:
        for target in targets:
            report["runs"].append(_run_target(opts, target, workdir / target.name, started))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["ratios"] = ratios(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{opts.scenario}-{started}.json"
    path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    print(render(report))
    print(f"\nresults written to {path}")
    return report


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _run_target(opts: Options, target: Target, workdir: Path, started: str) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    secret = new_secret()
    count = _user_count(opts)
    outcome: dict[str, Any] = {"target": target.name, "server": target.describe()}
    database = None
    redis_prefix: str | None = None
    profile_out = None
    if target.kind == REAL and opts.profile != "none":
        suffix = "prof" if opts.profile == "cprofile" else "txt"
        profile_out = RESULTS_DIR / f"profile-{opts.scenario}-{target.name}-{started}.{suffix}"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        if target.kind == REAL:
            if target.database is None:
                raise ValueError("a real target needs a database")
            say(f"[{target.name}] fresh {target.database} database, migrating and seeding {count} users …")
            try:
                database = asyncio.run(fresh_database(target.database, workdir, opts.postgres_url))
            except Exception as exc:  # an unreachable PostgreSQL is reported, the other targets still run
                say(f"[{target.name}] NO DATABASE: {type(exc).__name__}: {exc}")
                outcome["error"] = f"database set-up failed: {type(exc).__name__}: {exc}"
                return outcome
            users = asyncio.run(seed_users(database.url, count, secret, TOKEN_TTL_S))
            if opts.scenario == "c":
                say(f"[{target.name}] seeding {opts.pending} pending messages for user {users[0].id} …")
                senders = [u.id for u in users[1:]]
                asyncio.run(seed_pending(database.url, users[0].id, senders, opts.pending, opts.body_bytes))
        else:
            users = mint_users(count, secret)
        env = {}
        redis_prefix = f"bench-{uuid.uuid4().hex[:12]}" if target.redis else None
        if redis_prefix is not None:
            env["CHAT_REDIS_PREFIX"] = redis_prefix  # this run's keys only; removed afterwards
        if target.kind == CEILING and opts.scenario == "c":
            env["BENCH_CEILING_PENDING"] = f"{users[0].id}:{opts.pending}:{opts.body_bytes}"
        spec = ServerSpec(
            kind=target.kind,
            label=target.name,
            secret=secret,
            database_url=database.url if database else None,
            workers=target.workers,
            redis_url=opts.redis_url if target.redis else None,
            env=env,
            profile=opts.profile if target.kind == REAL else "none",
            profile_out=profile_out,
        )
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        server = Server(spec, workdir, RESULTS_DIR / f"{opts.scenario}-{started}-{target.name}.server.log")
        outcome["server_log"] = str(server.log_path)
        say(f"[{target.name}] starting {target.describe()} on port {server.port} …")
        try:
            server.start()
        except ServerFailedError as exc:
            say(f"[{target.name}] SERVER REFUSED TO START: {exc}")
            outcome["error"] = f"server refused to start: {exc}"
            return outcome
        try:
            outcome |= _measure(opts, target, server, users, database.url if database else None)
            server.finish_profile()
        finally:
            status = server.stop()
            outcome["server_exit_status"] = status
            if status not in (0, None):
                outcome["server_log_tail"] = server.log_tail()
    finally:
        if database is not None:
            asyncio.run(drop_database(database))
        if redis_prefix is not None:
            _forget_redis_keys(opts.redis_url, redis_prefix)
    if profile_out is not None and profile_out.exists():
        summary = hotpath.summarise(profile_out)
        outcome["profile"] = {"file": str(profile_out), "summary": summary}
        say(hotpath.render(summary))
    return outcome


def _forget_redis_keys(url: str, prefix: str) -> None:
    """Delete the keys the server wrote under this run's prefix (and nothing else)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError as exc:
        say(f"could not remove the Redis keys {prefix}*: {exc}")
    finally:
        client.close()


def _measure(
    opts: Options, target: Target, server: Server, users: list[BenchUser], database_url: str | None
) -> dict[str, Any]:
    expect_ready = target.kind != BARE
    if opts.scenario == "c":
        result = asyncio.run(drain(server, users[0].token, opts.pending, target.name))
        if database_url is not None:
            result["left_pending_in_database"] = asyncio.run(count_pending(database_url, users[0].id))
        return result
    if opts.scenario == "b":
        asyncio.run(_warm_up(server, users[0].token, expect_ready))
        config = LoadConfig(
            mode=IDLE,
            workers=opts.workers,
            idle_s=opts.idle_seconds,
            expect_ready=expect_ready,
            connect_concurrency=200,
        )
        return run_clients(server, users, config, target.name)
    config = LoadConfig(
        mode=LOAD,
        window=opts.window,
        body_bytes=opts.body_bytes,
        duration_s=opts.duration,
        warmup_s=opts.warmup,
        drain_s=opts.drain,
        workers=opts.workers,
        redelivery_s=opts.redelivery_s,
    )
    return run_clients(server, users, config, target.name)


# ---- ratios and the table ------------------------------------------------------------------


def _get(run: dict[str, Any], path: str) -> float | None:
    value: Any = run
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def ratios(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Each real target against the reference (ceiling, or bare in scenario b)."""
    runs = {r["target"]: r for r in report["runs"] if "error" not in r}
    reference = runs.get("bare" if report["scenario"] == "b" else "ceiling")
    if reference is None:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for name, run in runs.items():
        if run is reference:
            continue
        if report["scenario"] == "b":
            out[name] = {
                "rss_per_connection": _ratio(
                    _get(run, "server_rss_per_connection_bytes"), _get(reference, "server_rss_per_connection_bytes")
                ),
                "idle_cpu": _ratio(_get(run, "server_idle_cpu_percent"), _get(reference, "server_idle_cpu_percent")),
            }
        elif report["scenario"] == "c":
            out[name] = {"drain_msg_per_s": _ratio(_get(run, "drained_per_s"), _get(reference, "drained_per_s"))}
        else:
            out[name] = {
                "msg_per_s": _ratio(_get(run, "delivered_per_s"), _get(reference, "delivered_per_s")),
                "p50": _ratio(_get(run, "latency.p50_ms"), _get(reference, "latency.p50_ms")),
                "p99": _ratio(_get(run, "latency.p99_ms"), _get(reference, "latency.p99_ms")),
            }
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "0"
    return f"{value:,}" if isinstance(value, int) else str(value)


_ROWS: dict[str, list[tuple[str, str, int]]] = {
    "load": [
        ("delivered msg/s", "delivered_per_s", 0),
        ("acked msg/s", "acked_per_s", 0),
        ("latency p50 ms (send→received)", "latency.p50_ms", 1),
        ("latency mean ms", "latency.mean_ms", 1),
        ("latency p99 ms", "latency.p99_ms", 1),
        ("latency max ms", "latency.max_ms", 1),
        ("ack latency p50 ms (send→ack)", "ack_latency.p50_ms", 1),
        ("ack latency p99 ms", "ack_latency.p99_ms", 1),
        ("acks per connection min/median/max", "acked_spread", 0),
        ("sent", "sent", 0),
        ("acked", "acked", 0),
        ("received (unique)", "received", 0),
        ("lost (acked, never received)", "lost", 0),
        ("unacked at end", "unacked", 0),
        ("server-closed connections: unacked", "unacked_closed", 0),
        ("  … acked to closed/unconnected users", "undelivered_to_closed", 0),
        ("duplicates raw", "duplicates_raw", 0),
        ("duplicates not allowed re-pushes", "duplicates_unexpected", 0),
        ("error frames", "errors", 0),
        ("server CPU % (100 = 1 core)", "server_cpu_percent", 0),
        ("  … of which system (kernel) %", "server_system_cpu_percent", 0),
        ("server CPU µs per message", "server_cpu_us_per_message", 0),
        ("server RSS MiB (end)", "server_rss_end_mib", 1),
        ("load generator CPU %", "loadgen_cpu_percent", 0),
        ("other processes' CPU % (noise)", "other_cpu_percent", 0),
        ("connections / closed by server", "connections_closed", 0),
    ],
    "idle": [
        ("connections", "connections", 0),
        ("connect failures", "connection_failures", 0),
        ("connections/s while connecting", "connections_per_s", 0),
        ("server RSS MiB before", "server_rss_before_mib", 1),
        ("server RSS MiB connected", "server_rss_connected_mib", 1),
        ("server RSS KiB per connection", "server_rss_per_connection_kib", 1),
        ("server idle CPU % (mean)", "server_idle_cpu_percent", 1),
        ("server idle CPU % (median second)", "server_idle_cpu_median_percent", 1),
        ("still open at end", "open_at_end", 0),
        ("load generator CPU % (idle window)", "loadgen_cpu_percent", 0),
        ("other processes' CPU % (noise)", "other_cpu_percent", 0),
    ],
    "drain": [
        ("drained msg/s", "drained_per_s", 0),
        ("elapsed s", "elapsed_s", 2),
        ("received (unique)", "received", 0),
        ("lost", "lost", 0),
        ("duplicates", "duplicates_raw", 0),
        ("re-pushes", "repushes", 0),
        ("batches", "batches", 0),
        ("ack → next batch p50 ms", "batch_gap.p50_ms", 1),
        ("ack → next batch p99 ms", "batch_gap.p99_ms", 1),
        ("server CPU %", "server_cpu_percent", 0),
        ("other CPU % (the client included)", "other_cpu_percent", 0),
        ("left pending in database", "left_pending_in_database", 0),
    ],
}


def _derived(run: dict[str, Any]) -> dict[str, Any]:
    out = dict(run)
    for key in ("server_rss_end", "server_rss_before", "server_rss_connected"):
        if isinstance(run.get(f"{key}_bytes"), int | float):
            out[f"{key}_mib"] = run[f"{key}_bytes"] / MIB
    if isinstance(run.get("server_rss_per_connection_bytes"), int | float):
        out["server_rss_per_connection_kib"] = run["server_rss_per_connection_bytes"] / 1024
    spread = run.get("acked_per_connection")
    if spread:
        out["acked_spread"] = f"{spread['min']:,} / {spread['median']:,} / {spread['max']:,}"
    if "connections" in run:
        closed = sum(run.get("closed_by_server", {}).values())
        out["connections_closed"] = f"{run['connections']:,} / {closed:,}"
    return out


def render(report: dict[str, Any]) -> str:
    scenario = report["scenario"]
    opts = report["options"]
    kind = {"b": "idle", "c": "drain"}.get(scenario, "load")
    titles = {
        "a": f"(a) throughput — {opts['users']} users × window {opts['window']}, {opts['body_bytes']}-byte bodies, "
        f"{opts['duration']:g} s ({opts['warmup']:g} s warm-up)",
        "b": f"(b) idle — {opts['connections']:,} authenticated connections, idle CPU over {opts['idle_seconds']:g} s",
        "c": f"(c) offline drain — one user, {opts['pending']:,} pending messages, acknowledged per batch",
        "d": f"(d) throughput on PostgreSQL — {opts['users']} users × window {opts['window']}, "
        f"{opts['body_bytes']}-byte bodies, {opts['duration']:g} s",
    }
    runs = report["runs"]
    names = [r["target"] for r in runs]
    code = report.get("code", {})
    changed = (
        f" + {len(code.get('changed_since_commit', []))} changed files" if code.get("changed_since_commit") else ""
    )
    machine = report["machine"]
    width = max(14, *(len(n) + 2 for n in names))
    lines = [
        titles[scenario],
        f"code {str(code.get('commit', '?'))[:12]}{changed} · {machine['nproc']} × {machine['cpu_model']}, "
        f"{machine['memory_gib']} GiB, Python {machine['python']}",
        "",
    ]
    for run in runs:
        lines.append(f"  {run['target']:<18} {run['server']}")
        if "error" in run:
            lines.append(f"  {'':<18} !! {run['error'].splitlines()[0]}")
    lines.append("")
    header = f"{'':<36}" + "".join(f"{n:>{width}}" for n in names)
    lines.append(header)
    derived = [_derived(r) for r in runs]
    for title, key, digits in _ROWS[kind]:
        cells = []
        for run in derived:
            value: Any = run
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            cells.append(_fmt(value, digits))
        lines.append(f"{title:<36}" + "".join(f"{c:>{width}}" for c in cells))
    table = report.get("ratios") or {}
    if table:
        reference = "bare" if scenario == "b" else "ceiling"
        lines += ["", f"ratios against {reference} (real ÷ {reference}):"]
        for name, values in table.items():
            parts = []
            for metric, value in values.items():
                parts.append(f"{metric} {_fmt(value, 3)}")
            lines.append(f"  {name:<18} " + " · ".join(parts))
    for run in runs:
        if run.get("lost") or run.get("duplicates_unexpected") or run.get("errors"):
            lines.append(
                f"\n  !! {run['target']}: lost {run.get('lost')}, unexpected duplicates "
                f"{run.get('duplicates_unexpected')}, errors {_fmt(run.get('errors'))}"
            )
        if run.get("connection_failures"):
            reasons = _fmt(run.get("connect_failure_reasons"))
            lines.append(f"  !! {run['target']}: {run['connection_failures']} connections failed to open: {reasons}")
        if run.get("closed_by_server"):
            lines.append(f"  !! {run['target']}: connections closed by the server: {_fmt(run['closed_by_server'])}")
    return "\n".join(lines)
