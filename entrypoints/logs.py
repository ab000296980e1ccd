"""Process-wide logging set-up (the CLI and each server worker call it once).

One handler on the root logger formats every record, uvicorn's included (uvicorn is run with
``log_config=None``, so it installs none of its own): ``CHAT_LOG_FORMAT=text`` (one line,
``time level logger: message key=value …``) or ``json`` (one object per line: ``time``,
``level``, ``logger``, ``message`` and the context fields).

Context. :data:`request_id` is set for each HTTP request and WebSocket handshake (from a sane
``X-Request-ID`` or made, entrypoints/http/context.py), :data:`connection_id` and :data:`user_id`
for an authenticated socket (entrypoints/ws/connection.py); every record logged in that context
carries them (``requestId``, ``connectionId``, ``userId``). A record may add fields of its own
with ``extra={"ctx": {...}}``.

What never reaches the log, at any level:

* query strings: uvicorn logs every request (``uvicorn.access``) and WebSocket handshake
  (``uvicorn.error``) with its path *and query string* — ``GET /users?q=ann@example.com`` would
  put a searched email or phone number in the log; :class:`HideQueryStrings` keeps the path and
  replaces the query string by ``?…``;
* third-party debug output (:data:`QUIET_LIBRARIES`, and any DEBUG record of a logger that is not
  p2p-chat's or uvicorn's): ``websockets`` logs whole frames (message bodies) and handshake
  headers (``sec-websocket-protocol: bearer, eyJ…``, an access token), aiosqlite and the drivers
  log statements with their parameters. Those loggers are held at WARNING whatever
  ``CHAT_LOG_LEVEL`` says, and :class:`OnlyOurDebug` drops what would still come through.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error")  # where uvicorn logs request paths
HIDDEN_QUERY = "?…"
OUR_LOGGERS = ("p2p_chat", "uvicorn", "entrypoints", "adapters", "application")  # may log at DEBUG
# Libraries that log secrets or bodies at DEBUG or INFO (frames, headers, SQL with parameters): held at WARNING.
QUIET_LIBRARIES = (
    "websockets",
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "redis",
    "asyncio",
    "httpx",
    "httpcore",
    "hpack",
    "multipart",
    "litestar",
)

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
connection_id: ContextVar[str | None] = ContextVar("connection_id", default=None)
user_id: ContextVar[int | None] = ContextVar("user_id", default=None)
# An HTTP request's user, once its token is checked: a holder set when the request starts and
# filled later, because the framework may resolve the dependency that checks the token in a task
# of its own, whose context changes would not come back to the request's.
request_user: ContextVar[list[int] | None] = ContextVar("request_user", default=None)


def name_user(uid: int) -> None:
    """The request being served is ``uid``'s: its log lines say so from here on."""
    holder = request_user.get()
    if holder is not None:
        holder.append(uid)
    user_id.set(uid)


_CONTEXT = (("requestId", request_id), ("connectionId", connection_id), ("userId", user_id))
# uvicorn's own per-socket line, said again (with the user) by the app's "socket opened" line.
_DROPPED_UVICORN = ('%s - "WebSocket %s" [accepted]',)


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context: the ids in effect where it was logged, then its own ``ctx``."""
    fields: dict[str, Any] = {}
    for name, var in _CONTEXT:
        value = var.get()
        if value is not None:
            fields[name] = value
    if "userId" not in fields and (holder := request_user.get()):
        fields["userId"] = holder[-1]
    extra = getattr(record, "ctx", None)
    if isinstance(extra, dict):
        fields.update(extra)
    return fields


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …`` (the context fields last)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context_fields(record)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the first line
        tail = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} {tail}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class HideQueryStrings(logging.Filter):
    """Replace the query string of every path argument (``/…?…``) of a record by ``?…``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(without_query(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def _package_directories(names: tuple[str, ...]) -> tuple[str, ...]:
    directories = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            directories += [str(location) for location in spec.submodule_search_locations]
    return tuple(directories)


class OnlyOurDebug(logging.Filter):
    """Drop DEBUG records of other libraries' loggers; anything below WARNING written by the code
    of :data:`QUIET_LIBRARIES`, whatever logger it was given (uvicorn hands ``websockets`` its
    ``uvicorn.error`` logger, which then logs every frame and handshake header at DEBUG); and
    uvicorn's per-socket ``[accepted]`` line (the app logs ``socket opened`` with the connection
    and user ids instead)."""

    def __init__(self) -> None:
        super().__init__()
        self._quiet = _package_directories(QUIET_LIBRARIES)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            if record.levelno < logging.INFO and not record.name.startswith(OUR_LOGGERS):
                return False
            if record.pathname.startswith(self._quiet):
                return False
        return not (record.name == "uvicorn.error" and record.msg in _DROPPED_UVICORN)


class OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (and replaces when called again)."""


def without_query(value: str) -> str:
    """A path with its query string hidden; any other text unchanged."""
    path, mark, _ = value.partition("?")
    return path + HIDDEN_QUERY if mark and path.startswith("/") else value


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Route every logger to one stderr handler in ``log_format``, at ``level``. Idempotent: the
    handler of an earlier call is replaced (handlers others installed, as pytest's, are kept)."""
    handler = OurHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(OnlyOurDebug())
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, OurHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).propagate = True  # to the root's handler (uvicorn's config would not)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    hide_query_strings()


def hide_query_strings() -> None:
    """Install :class:`HideQueryStrings` on uvicorn's request loggers (once; logging config by
    ``dictConfig`` keeps a logger's filters)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideQueryStrings) for f in logger.filters):
            logger.addFilter(HideQueryStrings())
