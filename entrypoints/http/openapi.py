"""The OpenAPI document at ``/schema/openapi.json`` and its offline docs UI at ``/schema``.

Litestar writes the paths — operation ids, parameters with the constraints it also validates,
request and success bodies, security, and each operation's refusals (:mod:`.refusals`). Then
:func:`finish` makes the rest true to the wire:

- the component schemas are msgspec's own JSON Schema of the types the edge decodes and encodes
  (so ``maxLength``, ``pattern``, ``format: date-time``, ``additionalProperties: false`` … are
  those of the decoder and the domain), and a response type's fields are required unless they
  may be left out (``UNSET``): its encoder always writes the others, defaults included;
- problem responses carry the headers sent with them (``WWW-Authenticate`` on 401,
  ``Retry-After`` on 429 and 503), and every response its ``X-Request-ID``.

The UI is Swagger UI from the pinned ``swagger-ui-py`` package, served by the app: no CDN.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.router import Router
from litestar.static_files import create_static_files_router

from entrypoints.http.conversations import ConversationOut, ConversationPage, MessagePage
from entrypoints.http.refusals import PROBLEM_JSON
from entrypoints.http.schemas import (
    AccountExport,
    BlockedPage,
    DeleteAccountIn,
    DeviceIn,
    DeviceOut,
    DevicePage,
    ExportConversation,
    ExportDevice,
    ExportLogin,
    ExportPerson,
    ExportProfile,
    FieldError,
    Health,
    LoginIn,
    PasswordIn,
    Problem,
    ProfileOut,
    RefreshIn,
    RegisterIn,
    RenameIn,
    SessionOut,
    SessionPage,
    TokenOut,
    UserPage,
)
from entrypoints.wire import UserPublic, WireMessage

REQUEST_TYPES: tuple[type[msgspec.Struct], ...] = (
    RegisterIn,
    LoginIn,
    RefreshIn,
    PasswordIn,
    RenameIn,
    DeleteAccountIn,
    DeviceIn,
)
RESPONSE_TYPES: tuple[type[msgspec.Struct], ...] = (
    TokenOut,
    DeviceOut,
    DevicePage,
    ProfileOut,
    UserPage,
    UserPublic,
    BlockedPage,
    SessionPage,
    SessionOut,
    AccountExport,
    ExportProfile,
    ExportLogin,
    ExportDevice,
    ExportPerson,
    ExportConversation,
    ConversationPage,
    ConversationOut,
    MessagePage,
    WireMessage,
    Health,
    Problem,
    FieldError,
)
STATIC_PATH = "/schema/static"
BEARER = "bearer"
METRICS_TOKEN = "metricsToken"  # noqa: S105 - a security scheme name

DESCRIPTION = """\
One-to-one chat: accounts, tokens, users, blocking, conversations and history over HTTP; live
messaging over the WebSocket `/ws` (see `docs/protocol.md`).

Every error is an RFC 9457 problem (`application/problem+json`): `type` is a stable machine code
(each response below lists the ones it can carry), `title` its summary, `status` the HTTP status,
`detail` what went wrong, and for 400 `errors`: every malformed field as `{field, message}`
(`field` is `body` for the body as a whole). A 429 or 503 says in `Retry-After` how many seconds
to wait; a 401 carries `WWW-Authenticate`. Any operation may answer 500 `internal` on a bug.
"""

_PROBLEM_HEADERS: dict[str, dict[str, Any]] = {
    "401": {
        "WWW-Authenticate": {
            "description": "the bearer scheme to authenticate with",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    "429": {
        "Retry-After": {
            "description": "seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "503": {
        "Retry-After": {
            "description": "seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


# Every answer carries it (entrypoints/http/context.py).
_REQUEST_ID_HEADER = {
    "description": "the request's id: the request's own X-Request-ID when it is a token of 1 to 64 of "
    "A-Z a-z 0-9 . _ : + = / -, else one the server made; also in the server's log lines and in problem documents "
    "(absent only from the 408 and 429 a connection gets before its request was read)",
    "required": False,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:+=/-]{1,64}$"},
}


def component_schemas() -> dict[str, Any]:
    """msgspec's JSON Schema of every request and response type, by name."""
    _, components = msgspec.json.schema_components(
        REQUEST_TYPES + RESPONSE_TYPES, ref_template="#/components/schemas/{name}"
    )
    for kind in RESPONSE_TYPES:
        if not kind.__struct_config__.omit_defaults:  # the encoder writes every field but UNSET ones
            fields = msgspec.structs.fields(kind)
            components[kind.__name__]["required"] = [f.encode_name for f in fields if f.default is not msgspec.UNSET]
    return components


def finish(document: dict[str, Any]) -> dict[str, Any]:
    """Litestar's document, made true to the wire (see the module's docstring)."""
    finished = copy.deepcopy(document)
    schemas: dict[str, Any] = finished.setdefault("components", {}).setdefault("schemas", {})
    ours = component_schemas()
    unknown = set(schemas) - set(ours)
    if unknown:  # a new type on the wire: it must be listed, so that msgspec describes it
        raise RuntimeError(f"add {sorted(unknown)} to REQUEST_TYPES or RESPONSE_TYPES in {__name__}")
    schemas.clear()
    schemas.update(dict(sorted(ours.items())))
    for path_item in finished.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _parameter_schema(parameter["schema"])
            for status, response in operation.get("responses", {}).items():
                if PROBLEM_JSON in response.get("content", {}) and status in _PROBLEM_HEADERS:
                    response["headers"] = copy.deepcopy(_PROBLEM_HEADERS[status])
                response.setdefault("headers", {})["X-Request-ID"] = copy.deepcopy(_REQUEST_ID_HEADER)
    return finished


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema with integral bounds written as integers (Litestar writes ``1.0``).
    An optional integer stays ``oneOf: [integer, null]``: the text ``null`` is taken as absent."""
    for bound in ("minimum", "maximum"):
        if isinstance(schema.get(bound), float) and schema[bound].is_integer():
            schema[bound] = int(schema[bound])
    return schema


class _Finished:
    """The finished document of one app, made once from the one Litestar builds once."""

    def __init__(self) -> None:
        self._document: dict[str, Any] | None = None

    def of(self, litestar_document: dict[str, Any]) -> dict[str, Any]:
        if self._document is None:
            self._document = finish(litestar_document)
        return self._document


class _JsonDocument(JsonRenderPlugin):
    def __init__(self, finished: _Finished) -> None:
        super().__init__()
        self._finished = finished

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, self._finished.of(openapi_schema))


def swagger_ui_directory() -> Path:
    """The Swagger UI distribution inside the installed ``swagger-ui-py`` package (found without
    importing it: only its files are used)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (it is in requirements.lock)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class _OfflineSwagger(SwaggerRenderPlugin):
    def __init__(self, finished: _Finished) -> None:
        super().__init__(
            js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
            css_url=f"{STATIC_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{STATIC_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{STATIC_PATH}/favicon-32x32.png'>",
            path=["/", "/swagger"],
        )
        self._finished = finished

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self._finished.of(openapi_schema))

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(
            create_static_files_router(
                path=STATIC_PATH.removeprefix(router.path),
                directories=[swagger_ui_directory()],
                include_in_schema=False,
            )
        )


def openapi_config() -> OpenAPIConfig:
    finished = _Finished()
    return OpenAPIConfig(
        title="p2p-chat",
        version="1",
        description=DESCRIPTION,
        path="/schema",
        render_plugins=[_OfflineSwagger(finished), _JsonDocument(finished)],
        create_examples=False,
        tags=[
            Tag(name="auth", description="Accounts and tokens"),
            Tag(name="users", description="Profiles, contacts, search and blocking"),
            Tag(name="conversations", description="Conversation list and history"),
            Tag(name="ops", description="Health, readiness and metrics"),
        ],
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="the access_token of a token response (`Authorization: Bearer <token>`)",
                ),
                METRICS_TOKEN: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="CHAT_METRICS_TOKEN, when the server sets it",
                ),
            }
        ),
    )
