"""Checks run before any handler (the app's ``before_request`` hook).

- A request to a handler that takes a JSON body (a ``data`` parameter) must have one, sent as
  JSON: a body of another media type — a form, plain text — is 415 ``unsupported_media_type``; no
  body at all is 400 on ``body``. A request without a ``Content-Type`` is read as JSON. JSON
  nested deeper than the decoder goes is 400 on ``body`` too (the framework would answer 500).
- ``OPTIONS`` (other than a CORS preflight, which the CORS middleware answers) is answered here
  with every method of the path in ``Allow``: Litestar's own answer lists only the methods of the
  first handler registered on a path (litestar 2.25: the route that made its OPTIONS handler is
  replaced when a second handler joins the path, but the handler keeps reading the old one).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from domain.errors import InvalidInputError
from entrypoints.wire import TOO_DEEP


def is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type (``application/merge-patch+json`` …), any parameters."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def before_request(request: Request[Any, Any, Any]) -> Response[None] | None:
    if request.method == "OPTIONS":
        return allowed_methods(request)
    await require_json_body(request)
    return None


def allowed_methods(request: Request[Any, Any, Any]) -> Response[None]:
    template = request.scope["path_template"]
    routes = (r for r in request.app.routes if isinstance(r, HTTPRoute) and r.path_format == template)
    allow = ", ".join(sorted(next(routes).methods))
    return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": allow})


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
    try:  # decoded once here (the handler's parameter reuses it), to catch what the framework would not
        await request.json()
    except SerializationException:  # not JSON: the framework answers 400 on ``body`` as always
        return
    except RecursionError:
        raise InvalidInputError.of("body", f"is {TOO_DEEP}") from None
