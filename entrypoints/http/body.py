"""Requests that carry a JSON body: it must be there, and be sent as JSON.

Run before the framework decodes the body (an app-wide ``before_request`` hook), for every
handler that takes one (a ``data`` parameter): a body of another media type — a form, plain
text — is 415 ``unsupported_media_type``; no body at all is 400 on ``body``. A request without a
``Content-Type`` is read as JSON, as it was before this check.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

from domain.errors import InvalidInputError


def is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type (``application/merge-patch+json`` …), any parameters."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    if "data" not in request.route_handler.parsed_fn_signature.parameters:
        return
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"send the body as application/json, not {content_type.partition(';')[0].strip()!r}",
        )
    if not await request.body():
        raise InvalidInputError.of("body", "a JSON object is required")
