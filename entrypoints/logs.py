"""Process-wide logging set-up (the CLI and each server worker call it once).

uvicorn logs every request (``uvicorn.access``) and WebSocket handshake (``uvicorn.error``) with
its path *and query string*: ``GET /users?q=ann@example.com`` would put a searched email or phone
number in the log. :class:`HideQueryStrings` keeps the path and replaces the query string by
``?…`` in those lines, so no search term or other personal data reaches a log.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error")  # where uvicorn logs request paths
HIDDEN_QUERY = "?…"


class HideQueryStrings(logging.Filter):
    """Replace the query string of every path argument (``/…?…``) of a record by ``?…``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(without_query(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def without_query(value: str) -> str:
    """A path with its query string hidden; any other text unchanged."""
    path, mark, _ = value.partition("?")
    return path + HIDDEN_QUERY if mark and path.startswith("/") else value


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    hide_query_strings()


def hide_query_strings() -> None:
    """Install :class:`HideQueryStrings` on uvicorn's request loggers (once; logging config by
    ``dictConfig`` keeps a logger's filters)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideQueryStrings) for f in logger.filters):
            logger.addFilter(HideQueryStrings())
