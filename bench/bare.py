"""The bare handler: Litestar + uvicorn (the server's uvicorn options) accepting WebSockets and
receiving until they close, nothing else. The floor for memory and idle CPU per connection.

``python -m bench.bare --port 8124``
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from litestar import Litestar, WebSocket, get, websocket

from bench.servers import BENCH_MAX_CONNECTIONS_PER_ADDRESS
from entrypoints.server import uvicorn_options
from entrypoints.settings import Settings


def create_app() -> Litestar:
    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @websocket("/ws")
    async def ws(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return

    return Litestar(route_handlers=[health, ws], logging_config=None, openapi_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8124)
    args = parser.parse_args()
    # The load generator's connections all come from one address: no per-address cap here either.
    settings = Settings(log_level="warning", max_connections_per_address=BENCH_MAX_CONNECTIONS_PER_ADDRESS)
    uvicorn.run(create_app(), host=args.host, port=args.port, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
