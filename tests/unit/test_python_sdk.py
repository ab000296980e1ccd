"""The Python SDK's pure parts (clients/python, ``p2p_chat_client``): the close-code policy, the
back-off with an injected random, the refresh schedule, the de-duplication, the outboxes; and that the
SDK imports nothing from the server."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

import p2p_chat_client
from p2p_chat_client import (
    ABNORMAL,
    Backoff,
    CloseAction,
    Deduper,
    FileOutbox,
    MemoryOutbox,
    Outbox,
    PendingSend,
    Timings,
    close_action,
    refresh_delay,
)

TIMINGS = Timings(backoff_base_s=1.0, backoff_cap_s=8.0, backoff_floor_s=5.0)


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (4403, CloseAction.SIGNED_OUT),
        (4401, CloseAction.REFRESH),
        (4429, CloseAction.BACK_OFF),
        (4430, CloseAction.BACK_OFF),
        (4008, CloseAction.BACK_OFF),
        (1013, CloseAction.BACK_OFF),
        (1008, CloseAction.BACK_OFF),
        (1009, CloseAction.BACK_OFF),
        (1001, CloseAction.RECONNECT),
        (1012, CloseAction.RECONNECT),
        (1011, CloseAction.RECONNECT),
        (4408, CloseAction.RECONNECT),
        (1000, CloseAction.RECONNECT),
        (ABNORMAL, CloseAction.RECONNECT),
        (4999, CloseAction.RECONNECT),
    ],
)
def test_close_codes_map_to_what_the_protocol_asks(code: int, action: CloseAction) -> None:
    assert close_action(code) is action


def test_backoff_doubles_up_to_the_cap_with_jitter_between_half_and_all() -> None:
    lowest = Backoff(TIMINGS, random=lambda: 0.0)
    highest = Backoff(TIMINGS, random=lambda: 1.0)
    assert [lowest.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [highest.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_keeps_the_floor_and_starts_over_after_reset() -> None:
    backoff = Backoff(TIMINGS, random=lambda: 0.0)
    assert backoff.next_delay(floor=5.0) == 5.0
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == 0.5


def test_a_floor_above_the_cap_still_holds() -> None:
    backoff = Backoff(Timings(backoff_base_s=1.0, backoff_cap_s=2.0), random=lambda: 1.0)
    assert backoff.next_delay(floor=10.0) == 10.0


def test_jitter_spreads_clients_apart() -> None:
    draws = iter([0.1, 0.9])
    backoff = Backoff(TIMINGS, random=lambda: next(draws))
    first, second = Backoff(TIMINGS, random=lambda: 0.1).next_delay(), backoff.next_delay()
    assert first == second == pytest.approx(0.55)
    assert backoff.next_delay() == pytest.approx(1.9)


def test_refresh_comes_a_margin_before_expiry_or_at_a_fraction_of_a_short_lifetime() -> None:
    timings = Timings(refresh_margin_s=60.0, refresh_fraction=0.8)
    assert refresh_delay(900, timings) == 840
    assert refresh_delay(10, timings) == 8  # not at once, over and over
    assert refresh_delay(100, timings) == 80
    assert refresh_delay(0, timings) == 0


def test_dedupe_says_first_time_once_per_id_and_forgets_the_oldest() -> None:
    seen = Deduper(capacity=2)
    assert [seen.first_time(i) for i in ["a", "b", "a", "b"]] == [True, True, False, False]
    assert seen.first_time("c")  # "a" is forgotten (least recently seen)
    assert seen.first_time("a")
    assert not seen.first_time("c")


async def check_outbox(outbox: Outbox) -> None:
    one, two = PendingSend("c-1", 2, "hi"), PendingSend("c-2", 3, "there")
    await outbox.put(one)
    await outbox.put(two)
    await outbox.put(PendingSend("c-1", 9, "a different text, the same id"))
    assert await outbox.items() == [one, two]
    await outbox.remove("c-1")
    await outbox.remove("unknown")
    assert await outbox.items() == [two]


async def test_the_memory_outbox_keeps_order_and_ids_once() -> None:
    await check_outbox(MemoryOutbox())


async def test_the_file_outbox_keeps_order_and_survives_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "pending.json"
    await check_outbox(FileOutbox(path))
    assert await FileOutbox(path).items() == [PendingSend("c-2", 3, "there")]
    assert json.loads(path.read_text()) == [{"client_msg_id": "c-2", "to": 3, "text": "there"}]
    assert not path.with_name("pending.json.tmp").exists()
    assert await FileOutbox(tmp_path / "missing.json").items() == []


SERVER_PACKAGES = {"domain", "application", "adapters", "entrypoints", "tests"}
ALLOWED_THIRD_PARTY = {"httpx", "websockets"}


def test_the_sdk_imports_only_the_standard_library_httpx_and_websockets() -> None:
    """The SDK is a client of the public protocol: no server package, nothing beyond its two
    declared dependencies (import-linter checks the server packages as well)."""
    package = Path(p2p_chat_client.__file__).parent
    imported: set[str] = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names) - {"p2p_chat_client"}
    assert outside == ALLOWED_THIRD_PARTY
    assert not imported & SERVER_PACKAGES
