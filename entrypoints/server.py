"""How uvicorn runs the app: one place for the CLI and the tests, so both serve alike."""

from __future__ import annotations

from typing import Any

from entrypoints.guard import guarded_http
from entrypoints.keepalive import KeepaliveProtocol
from entrypoints.settings import Settings

WS_MAX_FRAME_BYTES = 1_048_576  # larger frames are closed with 1009 by the protocol layer


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "ws_max_size": WS_MAX_FRAME_BYTES,
        "ws_per_message_deflate": True,  # accepted when a client offers it (docs/protocol.md)
        # WebSocket pings every heartbeat; no pong within another heartbeat closes with 1011. One
        # timer per server (per worker process) serves every connection's pings
        # (entrypoints/keepalive.py).
        "ws": KeepaliveProtocol,
        # A deadline to read each request and a cap of connections per client address
        # (entrypoints/guard.py): uvicorn has neither.
        "http": guarded_http(settings),
        "ws_ping_interval": settings.heartbeat_s,
        "ws_ping_timeout": settings.heartbeat_s,
        # The client address comes from CHAT_TRUSTED_PROXIES only (entrypoints/http/client.py).
        "proxy_headers": False,
        "log_level": settings.log_level,
        # uvicorn installs no handler or format of its own: its records go to the root handler
        # of entrypoints/logs.py, in the app's one format (CHAT_LOG_FORMAT).
        "log_config": None,
        "timeout_graceful_shutdown": 10,
    }
