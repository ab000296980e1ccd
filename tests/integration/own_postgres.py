"""A throwaway PostgreSQL 15 cluster of one test: ``initdb`` in a temporary directory, its own
free port and socket directory, stopped (``pg_ctl stop -m immediate``), hung (SIGSTOP of the
postmaster and every backend) and brought back at will, and removed afterwards whatever
happened. The machine's shared PostgreSQL on 5432 is never touched.

``initdb`` and ``postgres`` refuse to run as root: run as root, the cluster belongs to the
``postgres`` user (the processes are started with ``user=``). The binaries are looked up in
``CHAT_TEST_POSTGRES_BIN`` (a directory), then ``/usr/lib/postgresql/15/bin``, then ``PATH``."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.integration.support import free_port

DEFAULT_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 20.0


def postgres_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; ``None`` when there is none."""
    for candidate in (os.environ.get("CHAT_TEST_POSTGRES_BIN"), str(DEFAULT_BIN)):
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def unusable_reason() -> str | None:
    """Why no cluster can be made here (``None``: one can)."""
    if postgres_bin() is None:
        return "needs PostgreSQL's server binaries (initdb, pg_ctl): set CHAT_TEST_POSTGRES_BIN to their directory"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "run as root, needs a postgres user to own the cluster (initdb refuses root)"
    return None


def _run_as() -> dict[str, Any]:
    """Popen options: as root, become ``postgres`` (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return {}
    owner = pwd.getpwnam("postgres")
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


class OwnPostgres:
    """One cluster in ``root``: :meth:`start`, :meth:`crash` (immediate stop), :meth:`hang` and
    :meth:`resume`, :meth:`end`."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self._bin = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self._as = _run_as()
        self._log = root / "postgres.log"

    def _call(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        done = subprocess.run(args, capture_output=True, timeout=timeout, check=False, **self._as)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')[-800:]}")

    def init(self) -> None:
        self._call(
            str(self._bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
        )

    def start(self) -> None:
        """Start (again) on the same port; returns once it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=on -c full_page_writes=off -c max_connections=50"
        )
        self._call(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self._log),
            "-o",
            options,
            "-w",
            "-t",
            "20",
            "start",
        )

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, WAL writer …)."""
        postmaster = self.postmaster_pid()
        found = [postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat[stat.rindex(")") + 2 :].split()[1]) == postmaster:
                        found.append(int(entry.name))
        return found

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every process exits at once, no checkpoint (recovery at
        the next start replays the log); connections are reset, new ones refused."""
        self._call(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def hang(self) -> list[int]:
        """SIGSTOP the postmaster and every backend: connects queue in the listen backlog, nothing
        answers. Returns the stopped processes for :meth:`resume`."""
        stopped = self.processes()
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return stopped

    def resume(self, stopped: list[int]) -> None:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def end(self) -> None:
        """Stop whatever runs (resumed first: a stopped process would ignore the stop) and remove
        the directory."""
        with suppress(OSError, ValueError, IndexError):
            self.resume(self.processes())
        with suppress(OSError, ValueError, IndexError, RuntimeError, subprocess.TimeoutExpired):
            self._call(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=10)
        with suppress(OSError, ValueError, IndexError):  # pg_ctl failed: kill the postmaster itself
            os.kill(self.postmaster_pid(), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def own_postgres(bin_dir: Path) -> Iterator[OwnPostgres]:
    """A started cluster, ended (processes and files) whatever happens."""
    root = Path(tempfile.mkdtemp(prefix="chat-pg-"))  # not pytest's tmp_path: its parents are private to root
    if os.geteuid() == 0:
        os.chown(root, _run_as()["user"], _run_as()["group"])
    cluster = OwnPostgres(bin_dir, root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.end()


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.02)
