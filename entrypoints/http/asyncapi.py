"""``GET /schema/asyncapi.json``: the AsyncAPI document of the WebSocket protocol, next to the
OpenAPI document of the HTTP API (no authentication). The same bytes as ``docs/asyncapi.json``."""

from __future__ import annotations

from litestar import Response, get

from entrypoints.ws.asyncapi import document_bytes


@get("/schema/asyncapi.json", include_in_schema=False, sync_to_thread=False)
def asyncapi_document() -> Response[bytes]:
    return Response(document_bytes(), media_type="application/json")
