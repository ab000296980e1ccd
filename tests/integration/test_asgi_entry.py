"""The ASGI factory ``uvicorn`` runs: the app, and the process's garbage collector set for serving."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from litestar import Litestar

from entrypoints import main

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_create_freezes_start_up_and_collects_the_young_generation_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a dev secret is written under ./data
    monkeypatch.setenv("CHAT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    threshold = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        app = main.create()
        assert isinstance(app, Litestar)
        assert gc.get_threshold() == (main.GC_YOUNG_THRESHOLD, 10, 10)
        assert main.GC_YOUNG_THRESHOLD == 7_000
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
