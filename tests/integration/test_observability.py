"""Logs and metrics as an operator sees them: a real ``p2p-chat serve`` process with
``CHAT_LOG_FORMAT=json`` and ``CHAT_LOG_LEVEL=debug`` serves a whole session (register, login, a
failed login, sockets with the bearer subprotocol, messages both ways, an offline batch, searches
over HTTP and the socket, a rejected frame, logout), scraping ``/metrics`` meanwhile.

- The log: every line is a JSON object; HTTP lines carry the request id, socket lines the
  connection and user ids; no token, password, body, email, phone number or search term appears.
- ``/metrics``: every series docs/operations.md lists is there, and every metric the Grafana
  dashboard (deploy/grafana-dashboard.json) queries is one the service exports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from entrypoints.logs import JsonFormatter
from tests.integration.chat import read_until_closed, running_chat
from tests.integration.support import TEST_SECRET, free_port, wait_until_up
from tests.integration.test_cli import CLI, cli_env, run

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
PASSWORDS = ("Correct horse 41", "Battery staple 77")
WRONG_PASSWORD = "Not the password 9"
BODIES = ("Meet me under the clock tower", "Bring the blue umbrella please", "Written while you slept")
SEARCH_TERMS = ("Zanzibarian", "Quetzalcoatl")
OUR_REQUEST_ID = "trace-4f1c.abc"


@dataclass
class Session:
    log: list[str]
    scrape: str
    content_type: str
    secrets: list[str]
    request_ids: list[str]


async def _frame(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        if frame["type"] == kind:
            return frame


async def _session(base: str) -> tuple[httpx.Response, list[str], list[str]]:
    """The session; returns a scrape of ``/metrics`` taken before the end, the secrets it used
    and the request ids the server answered."""
    ws_url = base.replace("http://", "ws://") + "/ws"
    people = [
        ("Ann Example", "ann.obs@example.com", "+14155550123"),
        ("Bob Example", "bob.obs@example.org", "+442071838750"),
    ]
    secrets: list[str] = [*PASSWORDS, WRONG_PASSWORD, *BODIES, *SEARCH_TERMS]
    request_ids: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        accounts = []
        for (name, email, phone), password in zip(people, PASSWORDS, strict=True):
            made = await http.post(
                "/auth/register", json={"name": name, "email": email, "phoneNumber": phone, "password": password}
            )
            assert made.status_code == 201, made.text
            request_ids.append(made.headers["x-request-id"])
            secrets += [email, phone, made.json()["access_token"], made.json()["refresh_token"]]
            accounts.append(made.json())
        ann, bob = accounts
        # A failed login (logged, without the email), then a login with our own request id.
        failed = await http.post("/auth/login", json={"email": people[0][1], "password": WRONG_PASSWORD})
        assert failed.status_code == 401
        assert failed.json()["requestId"] == failed.headers["x-request-id"]
        login = await http.post(
            "/auth/login",
            json={"email": people[0][1], "password": PASSWORDS[0]},
            headers={"X-Request-ID": OUR_REQUEST_ID},
        )
        assert login.headers["x-request-id"] == OUR_REQUEST_ID
        ann = {**ann, **login.json()}
        secrets += [ann["access_token"], ann["refresh_token"]]
        # Bob is offline: Ann's first message waits for him in the store (an offline batch).
        async with connect(ws_url, subprotocols=["bearer", ann["access_token"]]) as ann_ws:  # type: ignore[list-item]
            await _frame(ann_ws, "ready")
            await ann_ws.send(
                json.dumps({"type": "sendMessage", "to": bob["id"], "message": BODIES[2], "clientMsgId": "o1"})
            )
            await _frame(ann_ws, "messageAck")
            async with connect(ws_url, subprotocols=["bearer", bob["access_token"]]) as bob_ws:  # type: ignore[list-item]
                await _frame(bob_ws, "ready")
                offline = await _frame(bob_ws, "offlineMessages")
                await bob_ws.send(json.dumps({"type": "ackMessages", "ids": [m["id"] for m in offline["messages"]]}))
                await ann_ws.send(
                    json.dumps({"type": "sendMessage", "to": bob["id"], "message": BODIES[0], "clientMsgId": "a1"})
                )
                received = await _frame(bob_ws, "messageReceived")
                await bob_ws.send(json.dumps({"type": "ackMessages", "ids": [received["id"]]}))
                await bob_ws.send(
                    json.dumps({"type": "sendMessage", "to": ann["id"], "message": BODIES[1], "clientMsgId": "b1"})
                )
                await _frame(ann_ws, "messageReceived")
                await ann_ws.send(json.dumps({"type": "searchUsers", "query": SEARCH_TERMS[0], "ref": "s"}))
                await _frame(ann_ws, "searchResults")
                await ann_ws.send(json.dumps({"type": "markRead", "peerId": 99999, "upToSeq": 1}))  # error not_found
                await _frame(ann_ws, "error")
                searched = await http.get(
                    "/users", params={"q": SEARCH_TERMS[1]}, headers={"Authorization": f"Bearer {ann['access_token']}"}
                )
                assert searched.status_code == 200
                request_ids.append(searched.headers["x-request-id"])
                assert (await http.get("/no/such/route")).status_code == 404
                scrape = await http.get("/metrics")
        out = await http.post("/auth/logout", headers={"Authorization": f"Bearer {ann['access_token']}"})
        assert out.status_code == 204
    return scrape, secrets, request_ids


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    tmp_path = tmp_path_factory.mktemp("observability")
    env = cli_env(
        tmp_path,
        CHAT_PORT=str(free_port()),
        CHAT_LOG_FORMAT="json",
        CHAT_LOG_LEVEL="debug",
        CHAT_JWT_SECRET=TEST_SECRET,
    )
    assert run(["migrate"], env, tmp_path).returncode == 0
    log_path = tmp_path / "server.log"
    base = f"http://127.0.0.1:{env['CHAT_PORT']}"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([*CLI, "serve"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            wait_until_up(process, base, "/health", within=30)
            scrape, secrets, request_ids = asyncio.run(_session(base))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            finally:
                if process.poll() is None:
                    process.kill()
    return Session(log_path.read_text().splitlines(), scrape.text, scrape.headers["content-type"], secrets, request_ids)


def _entries(session: Session) -> list[dict[str, Any]]:
    return [json.loads(line) for line in session.log if line.strip()]


def test_every_log_line_is_a_json_object_with_time_level_logger_and_message(session: Session) -> None:
    entries = _entries(session)
    assert len(entries) > 20
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry


def test_http_lines_carry_the_request_id(session: Session) -> None:
    entries = _entries(session)
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert len(access) >= 8
    assert all(re.fullmatch(r"[A-Za-z0-9._:+=/-]{1,64}", e.get("requestId", "")) for e in access), access
    ours = [e for e in access if e["requestId"] == OUR_REQUEST_ID]
    assert len(ours) == 1
    assert "/auth/login" in ours[0]["message"]
    for request_id in session.request_ids:  # the id sent back is the one logged
        assert any(e.get("requestId") == request_id for e in access)
    refused = [e for e in entries if e["message"].startswith("refused POST /auth/login")]
    assert len(refused) == 1
    assert (refused[0]["level"], refused[0]["status"], refused[0]["client"]) == ("INFO", 401, "127.0.0.1")
    assert "requestId" in refused[0]
    # A user's request names the user once the token was checked.
    assert any(e.get("userId") is not None for e in access)


def test_socket_lines_carry_the_connection_and_user_ids(session: Session) -> None:
    socket_lines = [e for e in _entries(session) if e["logger"] == "p2p_chat.ws"]
    assert socket_lines
    for entry in socket_lines:
        assert entry.get("connectionId"), entry
        assert isinstance(entry.get("userId"), int), entry
    closes = [e for e in socket_lines if e["message"].startswith("socket closed")]
    assert len(closes) == 2
    for close in closes:
        assert close["level"] == "INFO"
        assert (close["code"], close["by"]) == (1000, "client")
        assert min(close["framesIn"], close["framesOut"]) >= 2
        assert close["durationS"] >= 0
    assert len({e["connectionId"] for e in closes}) == 2
    assert not [e for e in _entries(session) if "[accepted]" in e["message"]]  # said by "socket opened"


def test_no_secret_body_or_personal_data_reaches_the_log(session: Session) -> None:
    text = "\n".join(session.log)
    for secret in session.secrets:
        assert secret not in text, secret
        assert json.dumps(secret)[1:-1] not in text, secret
    assert "bearer, " not in text.lower()
    assert "sec-websocket-protocol" not in text.lower()
    assert "?…" in text  # the search's query string was hidden, not dropped with its line


def _families(scrape: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(scrape)}


def documented_series() -> list[str]:
    """The series docs/operations.md lists (the first column of its "Metrics" table)."""
    text = OPERATIONS.read_text()
    section = text[text.index("\n## Metrics\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"^\| `([a-z_:]+)` \|", section, flags=re.MULTILINE)


def exported_names(scrape: str) -> set[str]:
    """Every metric name a query may use: the samples' names, and each family's with the
    suffixes of its type (a labelled series without samples yet still counts)."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    for family in text_string_to_metric_families(scrape):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_metrics_show_every_series_docs_operations_lists(session: Session) -> None:
    documented = documented_series()
    assert len(documented) >= 25
    exported = exported_names(session.scrape)
    missing = [name for name in documented if name not in exported]
    assert not missing, f"documented but not exported: {missing}"
    families = _families(session.scrape)
    undocumented = [
        name
        for name, family in families.items()
        if name.startswith("chat_")
        and name not in documented
        and f"{name}_total" not in documented
        and family.type != "counter"
    ]
    assert not undocumented, f"exported but not in docs/operations.md: {undocumented}"


def _value(scrape: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_count_the_session(session: Session) -> None:
    scrape = session.scrape
    assert _value(scrape, "chat_messages_in_total") == 3
    assert _value(scrape, "chat_messages_drained_total") == 1
    assert _value(scrape, "chat_messages_out_total") == 2  # live pushes
    assert _value(scrape, "chat_ws_opens_total") == 2
    assert _value(scrape, "chat_http_requests_total", route="/auth/register", status="201") == 2
    assert _value(scrape, "chat_http_requests_total", route="/auth/login", status="401") == 1
    assert _value(scrape, "chat_http_requests_total", route="unmatched", status="404") == 1
    assert _value(scrape, "chat_http_request_duration_seconds_count", route="/users") == 1
    assert _value(scrape, "chat_write_batch_size_sum") >= 3 + 2  # the sends and the acknowledgements
    assert _value(scrape, "chat_write_batch_seconds_count") >= 1
    assert _value(scrape, "chat_rejected_frames_total", code="not_found") == 1
    assert _value(scrape, "process_resident_memory_bytes") > 0
    assert _value(scrape, "python_gc_collections_total") >= 0


def test_metrics_content_type_names_its_charset_once(session: Session) -> None:
    assert session.content_type == "text/plain; version=0.0.4; charset=utf-8"


# -- the dashboard ----------------------------------------------------------------------------------

PROMQL_WORDS = {
    # functions and aggregations
    *("rate", "irate", "increase", "sum", "avg", "max", "min", "count", "histogram_quantile", "topk", "bottomk"),
    *("clamp_min", "clamp_max", "abs", "delta", "deriv", "avg_over_time", "max_over_time", "label_replace", "vector"),
    *("scalar", "time", "round", "sort", "sort_desc", "quantile"),
    # keywords
    *("by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"),
}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression uses: what is left once label matchers, grouping
    clauses, ranges, strings, numbers and Grafana variables are taken out, functions and keywords
    too."""
    stripped = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # ranges
    stripped = re.sub(r'"[^"]*"', " ", stripped)
    stripped = re.sub(r"\$\w+", " ", stripped)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped))
    return {word for word in words if word not in PROMQL_WORDS and not re.fullmatch(r"[0-9.e]+", word)}


def test_metric_names_are_parsed_out_of_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route) "
        '(rate(chat_http_request_duration_seconds_bucket{route!="/metrics"}[$__rate_interval])))'
    )
    assert metric_names(expr) == {"chat_http_request_duration_seconds_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / clamp_min(sum(rate(b_total[5m])), 1)") == {"a_total", "b_total"}


def test_every_dashboard_query_names_only_exported_metrics(session: Session) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 12
    exported = exported_names(session.scrape)
    used = set().union(*(metric_names(expr) for expr in expressions))
    assert used, expressions
    unknown = sorted(used - exported)
    assert not unknown, f"the dashboard queries metrics the service does not export: {unknown}"


# -- refusals and limit closes, in-process ---------------------------------------------------------


class JsonLines(logging.Handler):
    """Formats each record where it is logged (the ids are context variables of that place)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler, root = JsonLines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_authentication_failures_and_limit_closes_are_logged_without_the_token(
    migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork], json_lines: JsonLines
) -> None:
    async with running_chat(migrated_url, uow_factory) as chat:
        ann = await chat.account("Ann")
        forged = ann.access_token[:-4] + "AAAA"
        refused = await chat.open(subprotocols=["bearer", forged])
        assert await read_until_closed(refused) == 4401
        client = await chat.connect(ann)
        await client.send_raw("x" * 1_048_577)
        assert await client.closed_with() == 1009
        early = await chat.open()
        await early.send("x" * 1_048_577)  # before any auth frame
        assert await read_until_closed(early) == 1009
        scrape = (await chat.http.get("/metrics")).text

    closes = [e for e in json_lines.entries if e["message"].startswith("socket closed")]
    by_code = {(e["code"], "userId" in e): e for e in closes}
    unauthenticated = by_code[(4401, False)]
    assert (unauthenticated["level"], unauthenticated["by"], unauthenticated["client"]) == (
        "INFO",
        "server",
        "127.0.0.1",
    )
    too_large = by_code[(1009, True)]
    assert (too_large["level"], too_large["by"], too_large["userId"]) == ("WARNING", "server", ann.id)
    assert too_large["connectionId"]
    assert by_code[(1009, False)]["level"] == "WARNING"  # the one before authentication: not a 4401
    assert not any(e["code"] == 4401 and e is not unauthenticated for e in closes)
    text = json.dumps(json_lines.entries)
    assert forged not in text
    assert ann.access_token not in text
    assert _value(scrape, "chat_ws_closes_total", code="4401") == 1
    assert _value(scrape, "chat_ws_closes_total", code="1009") == 2
