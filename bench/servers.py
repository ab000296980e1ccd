"""The servers under test, each a subprocess on its own loopback port: the real ``p2p-chat serve``
(optionally profiled: ``py-spy`` attached for the measured window, or the whole run under
``cProfile``), the in-memory ceiling (:mod:`bench.ceiling`) and the bare WebSocket handler
(:mod:`bench.bare`)."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from bench import procstat
from bench.common import REPO_ROOT, VENV_BIN, free_port

if TYPE_CHECKING:
    from pathlib import Path

REAL, CEILING, BARE = "real", "ceiling", "bare"
HEALTH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

# High enough that the benchmark never meets them; the limits stay in the code.
BENCH_RATE_MSG_PER_S = "1000000"
BENCH_RATE_MSG_BURST = "1000000"
# Every load-generator connection comes from 127.0.0.1: the per-address cap would stop (b) at 256.
BENCH_MAX_CONNECTIONS_PER_ADDRESS = 1_000_000


class ServerFailedError(Exception):
    """The server exited or never answered ``/health``; the message holds its last output."""


@dataclass(kw_only=True)
class ServerSpec:
    kind: str  # REAL, CEILING or BARE
    label: str
    secret: str = ""
    database_url: str | None = None
    workers: int = 1
    redis_url: str | None = None
    max_connections: int = 20_000
    max_connections_per_user: int = 100
    env: dict[str, str] = field(default_factory=dict)
    # "none"; "py-spy": attached for the measured window only (profile_window); "cprofile": the
    # whole life of the server, written when it stops.
    profile: str = "none"
    profile_out: Path | None = None


class Server:
    def __init__(self, spec: ServerSpec, workdir: Path, log_path: Path | None = None) -> None:
        self.spec = spec
        self.port = free_port()
        self._workdir = workdir
        self.log_path = log_path or workdir / f"server-{spec.label}.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._profiler: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError("server not started")
        return self._popen.pid

    def _command(self) -> list[str]:
        spec = self.spec
        if spec.kind == CEILING:
            return [sys.executable, "-m", "bench.ceiling", "--port", str(self.port)]
        if spec.kind == BARE:
            return [sys.executable, "-m", "bench.bare", "--port", str(self.port)]
        serve = [str(VENV_BIN / "p2p-chat"), "serve"]
        if spec.profile == "cprofile":
            if spec.profile_out is None:
                raise ValueError("cProfile needs profile_out")
            return [sys.executable, "-m", "cProfile", "-o", str(spec.profile_out), "-m", "entrypoints.cli", "serve"]
        return serve

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        spec = self.spec
        if spec.kind == REAL:
            if spec.database_url is None:
                raise ValueError("the real server needs a database")
            env.update(
                {
                    "CHAT_HOST": "127.0.0.1",
                    "CHAT_PORT": str(self.port),
                    "CHAT_DATABASE_URL": spec.database_url,
                    "CHAT_JWT_SECRET": spec.secret,
                    "CHAT_WORKERS": str(spec.workers),
                    "CHAT_RATE_MSG_PER_S": BENCH_RATE_MSG_PER_S,
                    "CHAT_RATE_MSG_BURST": BENCH_RATE_MSG_BURST,
                    "CHAT_MAX_CONNECTIONS_PER_USER": str(spec.max_connections_per_user),
                    "CHAT_MAX_CONNECTIONS": str(spec.max_connections),
                    "CHAT_MAX_CONNECTIONS_PER_ADDRESS": str(BENCH_MAX_CONNECTIONS_PER_ADDRESS),
                    "CHAT_LOG_LEVEL": "warning",
                }
            )
            if spec.redis_url:
                env["CHAT_REDIS_URL"] = spec.redis_url
        env.update(spec.env)
        return env

    def start(self) -> None:
        """Start the process and wait until ``/health`` answers 200; raise :class:`ServerFailedError`
        if it exits first or takes longer than :data:`HEALTH_TIMEOUT_S`."""
        with self.log_path.open("wb") as log:
            # The command is built from our own paths and flags, never from outside input.
            self._popen = subprocess.Popen(  # noqa: S603
                self._command(),
                cwd=self._workdir,  # a dev server would write ./data/ here, not into the checkout
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._popen.poll() is not None:
                    raise ServerFailedError(
                        f"{self.spec.label} exited with status {self._popen.returncode} before answering "
                        f"/health:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise ServerFailedError(f"{self.spec.label} did not answer /health in {HEALTH_TIMEOUT_S:.0f} s")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stats(self) -> procstat.Sample:
        return procstat.sample(self.pid)

    def profile_window(self, seconds: float) -> None:
        """With ``profile="py-spy"``: attach py-spy to the server (and its worker processes) for
        ``seconds``, so the profile holds the measured window only. Sampling pauses the server
        100 times a second: take throughput figures from runs without ``--profile``."""
        if self.spec.profile != "py-spy" or self._profiler is not None:
            return
        if self.spec.profile_out is None:
            raise ValueError("py-spy needs profile_out")
        command = [
            str(VENV_BIN / "py-spy"),
            "record",
            "--pid",
            str(self.pid),
            "--duration",
            str(max(1, math.ceil(seconds))),
            "--rate",
            "100",
            "--format",
            "raw",
            "--threads",
            "--gil",  # only samples where a thread holds the GIL: where the Python CPU time goes
            "--subprocesses",
            "--output",
            str(self.spec.profile_out),
        ]
        with self.log_path.with_suffix(".py-spy.log").open("wb") as log:
            self._profiler = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603

    def finish_profile(self) -> None:
        """Stop py-spy if it still runs (it writes its output on SIGINT) and wait for the file."""
        profiler, self._profiler = self._profiler, None
        if profiler is None:
            return
        if profiler.poll() is None:
            time.sleep(0.5)
            _signal(profiler.pid, signal.SIGINT)
        try:
            profiler.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> int | None:
        """Ask for a graceful stop (SIGINT, as Ctrl-C), then kill after :data:`STOP_TIMEOUT_S`."""
        self.finish_profile()
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return None if popen is None else popen.returncode
        _signal(popen.pid, signal.SIGINT)
        try:
            return popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            return popen.wait(timeout=STOP_TIMEOUT_S)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
