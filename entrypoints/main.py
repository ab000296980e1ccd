"""ASGI entry: ``uvicorn entrypoints.main:create --factory`` builds the app from the environment."""

from __future__ import annotations

from litestar import Litestar

from entrypoints.app import create_app
from entrypoints.container import Container
from entrypoints.logs import configure_logging
from entrypoints.settings import load_settings


def create() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(Container(settings=settings))
