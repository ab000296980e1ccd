"""ASGI entry: ``uvicorn entrypoints.main:create --factory`` builds the app from the environment."""

from __future__ import annotations

import gc

from litestar import Litestar

from entrypoints.app import create_app
from entrypoints.container import Container
from entrypoints.logs import configure_logging
from entrypoints.settings import load_settings


def create() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log_level)
    app = create_app(Container(settings=settings))
    # What start-up made (modules, classes, the app) lives as long as the process. Frozen out of
    # the collector's generations, it is not walked again by every full collection, which then
    # only visits what connections and messages made (decision 20).
    gc.collect()
    gc.freeze()
    return app
