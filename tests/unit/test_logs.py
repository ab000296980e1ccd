"""The log's format and context, and what never reaches it: search terms in query strings (uvicorn
logs paths with their query), other libraries' debug output (frames, headers, SQL parameters)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from entrypoints import logs
from entrypoints.logs import configure_logging


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """configure_logging changes the process's logging: give the next tests back what they had."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic", *logs.QUIET_LIBRARIES)
    levels = {name: logging.getLogger(name).level for name in names}
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def test_the_access_log_keeps_the_path_but_not_the_query_string(captured: Captured) -> None:
    configure_logging("info")
    access = logging.getLogger("uvicorn.access")

    # exactly as uvicorn's HTTP protocol logs a response
    access.info('%s - "%s %s HTTP/%s" %d', "203.0.113.7:5123", "GET", "/users?q=ann%40example.com", "1.1", 200)
    access.info('%s - "%s %s HTTP/%s" %d', "203.0.113.7:5123", "GET", "/users?q=%2B14155550100&limit=5", "1.1", 429)
    access.info('%s - "%s %s HTTP/%s" %d', "203.0.113.7:5123", "GET", "/users/7", "1.1", 200)

    assert captured.lines == [
        '203.0.113.7:5123 - "GET /users?… HTTP/1.1" 200',
        '203.0.113.7:5123 - "GET /users?… HTTP/1.1" 429',
        '203.0.113.7:5123 - "GET /users/7 HTTP/1.1" 200',
    ]


def test_websocket_handshakes_are_logged_without_their_query_string(captured: Captured) -> None:
    configure_logging("info")

    logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "203.0.113.7:5123", "/ws?token=secret")

    assert captured.lines == ['203.0.113.7:5123 - "WebSocket /ws?…" [accepted]']


def test_configuring_twice_installs_one_filter() -> None:
    configure_logging("info")
    configure_logging("info")

    assert len(logging.getLogger("uvicorn.access").filters) == 1


def _record(
    name: str, level: int, msg: str, *args: object, pathname: str = __file__, **ctx: object
) -> logging.LogRecord:
    record = logging.LogRecord(name, level, pathname, 1, msg, args, None)
    if ctx:
        record.ctx = ctx
    return record


def test_a_json_line_is_one_object_with_the_context_of_where_it_was_logged() -> None:
    tokens = (logs.request_id.set("r-1"), logs.connection_id.set("c-1"), logs.user_id.set(7))
    try:
        line = logs.JsonFormatter().format(_record("p2p_chat.ws", logging.WARNING, "socket closed %d", 4429, code=4429))
    finally:
        for var, token in zip((logs.request_id, logs.connection_id, logs.user_id), tokens, strict=True):
            var.reset(token)  # type: ignore[attr-defined]
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "WARNING",
        "logger": "p2p_chat.ws",
        "message": "socket closed 4429",
        "requestId": "r-1",
        "connectionId": "c-1",
        "userId": 7,
        "code": 4429,
    }


def test_an_exception_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("p2p_chat", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(logs.JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


def test_a_text_line_ends_with_its_context_fields() -> None:
    line = logs.TextFormatter().format(_record("p2p_chat.http", logging.INFO, "refused", status=401))
    assert line.endswith(" INFO p2p_chat.http: refused status=401")


def test_a_user_named_by_a_dependency_task_shows_in_the_requests_lines() -> None:
    token = logs.request_user.set([])
    try:
        contextvars.copy_context().run(logs.name_user, 9)  # as a task of its own would
        assert logs.context_fields(_record("uvicorn.access", logging.INFO, "GET /users/me")) == {"userId": 9}
    finally:
        logs.request_user.reset(token)


def test_other_libraries_debug_lines_and_websockets_frames_are_dropped() -> None:
    only = logs.OnlyOurDebug()
    websockets_code = str(Path(websockets.__file__).parent / "protocol.py")
    frame = _record("uvicorn.error", logging.DEBUG, "< TEXT %s", '{"message": "hi"}', pathname=websockets_code)
    assert not only.filter(frame)  # uvicorn hands websockets its own logger
    assert not only.filter(_record("aiosqlite", logging.DEBUG, "executing %s", "INSERT …"))
    assert not only.filter(_record("uvicorn.error", logging.INFO, '%s - "WebSocket %s" [accepted]', "a", "/ws"))
    assert only.filter(_record("p2p_chat.ws", logging.DEBUG, "writer stopped"))
    assert only.filter(_record("uvicorn.error", logging.INFO, "Started server process [%d]", 1))
    assert only.filter(_record("websockets", logging.WARNING, "something broke", pathname=websockets_code))
