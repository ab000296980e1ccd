"""The web app at ``/app/``: a fixed set of static files (``entrypoints/web/``), served when
``CHAT_WEB_APP`` says so (on in ``dev`` by default), with ``/`` sent there.

Plain HTML, CSS and ES modules, no build step and nothing from elsewhere: the Content-Security-Policy
allows only this origin (scripts, styles, ``fetch`` and the WebSocket). The JavaScript SDK is
served as ``/app/chat.js``; ``entrypoints/web/chat.js`` is a symbolic link to
``clients/js/src/chat.js``, its one source (a wheel built from the tree carries a copy of it;
decision 47). Each answer is revalidated (``Cache-Control: no-cache`` with an ``ETag``), so an
upgraded server is picked up on the next load and an unchanged file costs a 304. A file is read
again when it changes on disk, so editing it in a checkout needs no restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect
from litestar.status_codes import HTTP_302_FOUND, HTTP_304_NOT_MODIFIED

FILES_DIRECTORY = Path(__file__).resolve().parents[1] / "web"
PATH = "/app"
MEDIA_TYPES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "chat.js": "text/javascript",
    "app.css": "text/css",
}
# 'self' covers ws:// and wss:// to this host in CSP level 3 (every current browser).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[int, int]  # (mtime_ns, size) of what was read
    body: bytes
    etag: str


class WebAppFiles:
    """The app's files by name, read on first use and again when they change on disk."""

    def __init__(self, directory: Path = FILES_DIRECTORY) -> None:
        self._directory = directory
        self._loaded: dict[str, _Loaded] = {}

    def get(self, name: str) -> _Loaded:
        """The file ``name``. Raises :class:`NotFoundException` for a name that is not the app's."""
        if name not in MEDIA_TYPES:
            raise NotFoundException(f"no file {name!r} in the web app")
        path = self._directory / name
        status = path.stat()  # follows the SDK's link
        stamp = (status.st_mtime_ns, status.st_size)
        loaded = self._loaded.get(name)
        if loaded is None or loaded.stamp != stamp:
            body = path.read_bytes()
            loaded = _Loaded(stamp, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
            self._loaded[name] = loaded
        return loaded

    def answer(self, name: str, request: Request[Any, Any, Any]) -> Response[bytes]:
        loaded = self.get(name)
        headers = {**HEADERS, "ETag": loaded.etag}
        if loaded.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(loaded.body, media_type=MEDIA_TYPES[name], headers=headers)


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",")]


def web_app_router(files: WebAppFiles | None = None) -> Router:
    """``GET /app`` and ``/app/`` (the page: its links are absolute, so both work), ``GET
    /app/{name}`` (its files) and ``/`` redirected to the page; none of them in the OpenAPI document."""
    served = files or WebAppFiles()

    @get("/", include_in_schema=False, sync_to_thread=False)
    def root() -> Redirect:
        return Redirect(f"{PATH}/", status_code=HTTP_302_FOUND)

    @get(PATH, include_in_schema=False, sync_to_thread=False)
    def page(request: Request[Any, Any, Any]) -> Response[bytes]:
        return served.answer("index.html", request)

    @get(f"{PATH}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
    def file(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        return served.answer(name, request)

    return Router(path="/", route_handlers=[root, page, file], include_in_schema=False)
