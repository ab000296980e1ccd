"""Argon2id password hashing with pwdlib, off the event loop, with a bounded number of slots."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from application.ports import PasswordHasher
from domain.errors import BusyError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class Argon2PasswordHasher(PasswordHasher):
    """Runs each hash in a worker thread; at most ``concurrency`` at once. A caller waits up to
    ``wait_s`` for a slot, then gets :class:`BusyError` (503 ``busy`` at the edge).

    ``hasher`` defaults to pwdlib's recommended Argon2id parameters; tests may pass cheaper ones.
    """

    def __init__(self, concurrency: int, wait_s: float = 1.0, hasher: Argon2Hasher | None = None) -> None:
        self._hash = PasswordHash((hasher or Argon2Hasher(),))
        self._slots = asyncio.Semaphore(concurrency)
        self._wait_s = wait_s
        self._dummy = self._hash.hash("dummy password for unknown accounts")

    async def _in_slot(self, fn: Callable[[], T]) -> T:
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self._wait_s)
        except TimeoutError:
            raise BusyError(1, "all password-hashing slots are busy, retry shortly") from None
        try:
            return await asyncio.to_thread(fn)
        finally:
            self._slots.release()

    async def hash(self, raw: str) -> str:
        return await self._in_slot(lambda: self._hash.hash(raw))

    async def verify(self, raw: str, hashed: str | None) -> bool:
        target = self._dummy if hashed is None else hashed
        valid = await self._in_slot(lambda: self._hash.verify(raw, target))
        return valid and hashed is not None
