"""The ``p2p-chat`` command as an operator runs it: real processes, real ports."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from adapters.sqlalchemy.migrate import upgrade
from tests.integration.support import TEST_SECRET, clean_env, free_port, wait_until_up

CLI = [sys.executable, "-m", "entrypoints.cli"]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update({"CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/data/chat.db", **extra})
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def refusal_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start prints: exit status 2, no traceback, ``p2p-chat: …``."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("p2p-chat: ")
    return lines[0]


@pytest.fixture
def migrated_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI run on a migrated SQLite database under ``tmp_path``."""
    env = cli_env(tmp_path, CHAT_JWT_SECRET=TEST_SECRET)
    asyncio.run(upgrade(env["CHAT_DATABASE_URL"]))
    return env


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    line = refusal_line(run(["serve"], cli_env(tmp_path, CHAT_JWT_SECRET=TEST_SECRET), tmp_path))
    assert line.startswith("p2p-chat: CHAT_DATABASE_URL: the database schema is not migrated")
    assert "run `p2p-chat migrate`" in line
    assert "`make run`" in line


def test_serve_on_a_database_never_migrated_creates_nothing_before_refusing(tmp_path: Path) -> None:
    """The default database (./data/chat.db) and no JWT secret: neither the SQLite file, nor its
    directory, nor the development secret appear."""
    env = clean_env()
    line = refusal_line(run(["serve"], env, tmp_path))
    assert "not migrated" in line
    assert "sqlite+aiosqlite:///./data/chat.db" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHAT_PORT": "eighty"}, "CHAT_PORT='eighty' is not valid: expected a whole number from 0 to 65535"),
        ({"CHAT_ENV": "prod"}, "CHAT_ENV=prod needs CHAT_JWT_SECRET"),
        ({"CHAT_JWT_SECRET": "short"}, "CHAT_JWT_SECRET is too short: expected any string of at least 32 bytes"),
        ({"CHAT_WORKERS": "2", "CHAT_JWT_SECRET": TEST_SECRET}, "CHAT_WORKERS > 1 needs CHAT_REDIS_URL"),
        ({"CHAT_SQLITE_SYNCHRONOUS": "OFF"}, "CHAT_SQLITE_SYNCHRONOUS='OFF' is not valid: expected one of"),
        ({"CHAT_MAX_FRAME_BYTES": "2000000"}, "CHAT_MAX_FRAME_BYTES='2000000' is not valid: expected"),
        ({"CHAT_TRUSTED_PROXIES": "proxy.internal"}, "CHAT_TRUSTED_PROXIES='proxy.internal' is not an IP address"),
        ({"CHAT_CORS_ORIGINS": "https://app.example.com/"}, "CHAT_CORS_ORIGINS='https://app.example.com/' is not"),
        ({"CHAT_DATABASE_URL": "sqlite:///chat.db"}, "CHAT_DATABASE_URL='sqlite:///chat.db' names sqlite, not an"),
        (
            {"CHAT_REDIS_URL": "localhost:6379", "CHAT_JWT_SECRET": TEST_SECRET},
            "CHAT_REDIS_URL='localhost:6379' is not a Redis URL",
        ),
        (
            {"CHAT_ENV": "prod", "CHAT_JWT_SECRET": TEST_SECRET, "CHAT_PROT": "80"},
            "CHAT_PROT is not a p2p-chat setting (did you mean CHAT_PORT?): CHAT_ENV=prod refuses unknown",
        ),
    ],
)
def test_invalid_configuration_stops_the_start_with_one_line_naming_the_variable_and_the_fix(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    line = refusal_line(run(["serve"], cli_env(tmp_path, **env), tmp_path))
    assert line.startswith(f"p2p-chat: {message}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_an_unreachable_database_is_one_line_with_the_fix(tmp_path: Path, command: str) -> None:
    url = f"postgresql+asyncpg://chat:hunter2@127.0.0.1:{free_port()}/chat"
    line = refusal_line(run([command], cli_env(tmp_path, CHAT_DATABASE_URL=url), tmp_path))
    assert line.startswith(f"p2p-chat: CHAT_DATABASE_URL: cannot open the database {url.replace('hunter2', '***')}: ")
    assert "check that the server runs" in line
    assert "hunter2" not in line


def test_migrate_where_the_database_file_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the directory should be")
    line = refusal_line(run(["migrate"], cli_env(tmp_path), tmp_path))
    assert line.startswith("p2p-chat: CHAT_DATABASE_URL: cannot open the database sqlite+aiosqlite:///")


def test_serve_refuses_a_redis_that_does_not_answer(tmp_path: Path, migrated_env: dict[str, str]) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    line = refusal_line(run(["serve"], {**migrated_env, "CHAT_REDIS_URL": url}, tmp_path))
    assert line.startswith(f"p2p-chat: CHAT_REDIS_URL: Redis at redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert "does not answer" in line
    assert "hunter2" not in line


def test_serve_refuses_a_port_in_use_and_a_host_not_of_this_machine(
    tmp_path: Path, migrated_env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        line = refusal_line(run(["serve"], {**migrated_env, "CHAT_PORT": port}, tmp_path))
    assert line.startswith(f"p2p-chat: cannot listen on CHAT_HOST='127.0.0.1' CHAT_PORT={port} (")
    assert "CHAT_PORT to a free port" in line
    line = refusal_line(run(["serve"], {**migrated_env, "CHAT_HOST": "no-such-host.invalid"}, tmp_path))
    assert line.startswith("p2p-chat: cannot listen on CHAT_HOST='no-such-host.invalid'")


def test_an_unknown_variable_in_dev_is_a_warning_naming_the_closest_setting(tmp_path: Path) -> None:
    result = run(["migrate"], cli_env(tmp_path, CHAT_REDIS_PREIFX="x"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "p2p-chat: warning: CHAT_REDIS_PREIFX is not a p2p-chat setting (did you mean CHAT_REDIS_PREFIX?); "
        "it is ignored (CHAT_ENV=prod would refuse to start)"
    )


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = run(["--version"], cli_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"p2p-chat {version('p2p-chat')}\n"


def test_migrate_is_idempotent_and_reports_progress(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    first = run(["migrate"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "migrating" in first.stdout
    assert "done" in first.stdout
    again = run(["migrate"], env, tmp_path)
    assert again.returncode == 0
    assert "up to date" in again.stdout
    assert (tmp_path / "data" / "chat.db").exists()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = cli_env(tmp_path, CHAT_PORT=str(free_port()))
    assert run(["migrate"], env, tmp_path).returncode == 0
    process = subprocess.Popen([*CLI, "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['CHAT_PORT']}"
    try:
        wait_until_up(process, base, "/health", within=30)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()


def test_served_process_registers_logs_in_and_shows_the_profile(server: str, tmp_path: Path) -> None:
    body = {"name": "Ann", "email": "ann@example.com", "phoneNumber": "+14155550100", "password": "correct horse"}
    assert httpx.post(f"{server}/auth/register", json=body).status_code == 201
    login = httpx.post(f"{server}/auth/login", json={"email": body["email"], "password": body["password"]})
    assert login.status_code == 200
    me = httpx.get(f"{server}/users/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert me.json()["email"] == "ann@example.com"
    secret = tmp_path / "data" / "jwt_secret"
    assert secret.exists()
    assert secret.stat().st_mode & 0o777 == 0o600


def test_sigterm_during_traffic_keeps_every_acked_message_and_closes_sockets(tmp_path: Path) -> None:
    """A real server process under load gets SIGTERM: acked messages are all stored, the sockets
    are closed 1001/1012 and the process exits within a few seconds."""
    import json
    import sqlite3

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    env = cli_env(tmp_path, CHAT_PORT=str(free_port()), CHAT_RATE_MSG_PER_S="100000", CHAT_RATE_MSG_BURST="100000")
    assert run(["migrate"], env, tmp_path).returncode == 0
    process = subprocess.Popen([*CLI, "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['CHAT_PORT']}"
    try:
        wait_until_up(process, base, "/health", within=30)

        def account(n: int) -> dict[str, str]:
            body = {
                "name": f"U{n}",
                "email": f"u{n}@example.com",
                "phoneNumber": f"+4420794600{n:02d}",
                "password": "p" * 10,
            }
            response = httpx.post(f"{base}/auth/register", json=body)
            assert response.status_code == 201
            data: dict[str, str] = response.json()
            return data

        sender, receiver = account(1), account(2)
        acked: list[str] = []
        close_codes: list[int] = []

        async def traffic() -> None:
            async with connect(base.replace("http", "ws") + "/ws") as ws:
                await ws.send(json.dumps({"type": "auth", "token": sender["access_token"]}))
                try:
                    for i in range(100_000):
                        await ws.send(
                            json.dumps(
                                {"type": "sendMessage", "to": receiver["id"], "message": "m", "clientMsgId": f"c{i}"}
                            )
                        )
                        while True:
                            frame = json.loads(await ws.recv())
                            if frame["type"] == "messageAck":
                                acked.append(frame["id"])
                                break
                        if len(acked) == 50:
                            process.send_signal(signal.SIGTERM)
                except ConnectionClosed as exc:
                    close_codes.append(exc.rcvd.code if exc.rcvd else -1)

        started = time.monotonic()
        asyncio.run(traffic())
        process.wait(timeout=15)
        assert time.monotonic() - started < 15
        assert close_codes in ([1001], [1012])
        assert len(acked) >= 50
        with sqlite3.connect(tmp_path / "data" / "chat.db") as db:
            stored = {row[0] for row in db.execute("SELECT id FROM messages")}
        assert set(acked) <= stored
    finally:
        if process.poll() is None:
            process.kill()
