"""Where unacknowledged sends wait: every send is stored here (with its ``clientMsgId``) before it
goes out and leaves only when its ``messageAck`` came (or the server refused it for good), so after
a reconnect — or, with :class:`FileOutbox`, a restart of the program — it is sent again with the same
id and the server stores it once."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PendingSend:
    client_msg_id: str
    to: int
    text: str


class Outbox(Protocol):
    """Ordered storage of pending sends. ``put`` of an id already there changes nothing; ``remove`` of
    an unknown id is no error. Implementations must keep insertion order."""

    async def put(self, item: PendingSend) -> None: ...

    async def remove(self, client_msg_id: str) -> None: ...

    async def items(self) -> list[PendingSend]: ...


class MemoryOutbox:
    """Pending sends in memory: they survive reconnects, not a restart of the program."""

    def __init__(self) -> None:
        self._items: dict[str, PendingSend] = {}

    async def put(self, item: PendingSend) -> None:
        self._items.setdefault(item.client_msg_id, item)

    async def remove(self, client_msg_id: str) -> None:
        self._items.pop(client_msg_id, None)

    async def items(self) -> list[PendingSend]:
        return list(self._items.values())


class FileOutbox:
    """Pending sends in a JSON file, rewritten atomically (a temporary file, then ``os.replace``)
    after every change, so they survive a restart. One client per file at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._items: dict[str, PendingSend] | None = None
        self._lock = asyncio.Lock()

    async def put(self, item: PendingSend) -> None:
        async with self._lock:
            items = await self._loaded()
            if item.client_msg_id not in items:
                items[item.client_msg_id] = item
                await asyncio.to_thread(self._write, list(items.values()))

    async def remove(self, client_msg_id: str) -> None:
        async with self._lock:
            items = await self._loaded()
            if items.pop(client_msg_id, None) is not None:
                await asyncio.to_thread(self._write, list(items.values()))

    async def items(self) -> list[PendingSend]:
        async with self._lock:
            return list((await self._loaded()).values())

    async def _loaded(self) -> dict[str, PendingSend]:
        if self._items is None:
            self._items = {item.client_msg_id: item for item in await asyncio.to_thread(self._read)}
        return self._items

    def _read(self) -> list[PendingSend]:
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [PendingSend(str(entry["client_msg_id"]), int(entry["to"]), str(entry["text"])) for entry in raw]

    def _write(self, items: list[PendingSend]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_name(self._path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump([asdict(item) for item in items], file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path)
