"""The ``p2p-chat`` command as an operator runs it: real processes, real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.support import TEST_SECRET

CLI = [sys.executable, "-m", "entrypoints.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env.update({"CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/data/chat.db", **extra})
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = run(["serve"], cli_env(tmp_path, CHAT_JWT_SECRET=TEST_SECRET), tmp_path)
    assert result.returncode == 2
    assert "not migrated" in result.stderr
    assert "p2p-chat migrate" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHAT_PORT": "eighty"}, "CHAT_PORT"),
        ({"CHAT_ENV": "prod"}, "CHAT_JWT_SECRET"),
        ({"CHAT_JWT_SECRET": "short"}, "at least 32 bytes"),
        ({"CHAT_WORKERS": "2", "CHAT_JWT_SECRET": TEST_SECRET}, "CHAT_REDIS_URL"),
        ({"CHAT_SQLITE_SYNCHRONOUS": "OFF"}, "CHAT_SQLITE_SYNCHRONOUS"),
        ({"CHAT_MAX_FRAME_BYTES": "2000000"}, "CHAT_MAX_FRAME_BYTES"),
    ],
)
def test_invalid_configuration_stops_the_boot_with_a_clear_message(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run(["serve"], cli_env(tmp_path, **env), tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


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
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not come up") from None
                time.sleep(0.05)
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
    import asyncio
    import json
    import sqlite3

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    env = cli_env(tmp_path, CHAT_PORT=str(free_port()), CHAT_RATE_MSG_PER_S="100000", CHAT_RATE_MSG_BURST="100000")
    assert run(["migrate"], env, tmp_path).returncode == 0
    process = subprocess.Popen([*CLI, "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['CHAT_PORT']}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/health")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.05)

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
