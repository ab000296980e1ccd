"""No search term or other personal data in the request logs (uvicorn logs paths with their query)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from entrypoints.logs import configure_logging


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


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
