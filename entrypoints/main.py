"""ASGI entry: ``uvicorn entrypoints.main:create --factory`` builds the app from the environment.

``p2p-chat serve`` runs it in each worker after checking the configuration, the database, Redis
and the address (entrypoints/cli.py) and printing the warnings about unknown variables; here an
invalid configuration raises and an un-migrated database stops the lifespan.
"""

from __future__ import annotations

import gc

from litestar import Litestar

from entrypoints.app import create_app
from entrypoints.container import Container
from entrypoints.logs import configure_logging
from entrypoints.settings import load_settings

GC_YOUNG_THRESHOLD = 7_000


def create() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(Container(settings=settings))
    # What start-up made (modules, classes, the app) lives as long as the process. Frozen out of
    # the collector's generations, it is not walked again by every full collection, which then
    # only visits what connections and messages made (decision 20).
    gc.collect()
    gc.freeze()
    # A batch of sends keeps a few thousand objects alive at once, so at Python's default of 700
    # net allocations the young generation was collected many times a second under load (figures
    # in docs/performance.md). Objects here die by reference counting; cycles are rare, and still
    # collected (decision 25).
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return app
