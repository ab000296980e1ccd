"""UUIDv7 ids (RFC 9562): 48-bit millisecond timestamp, then randomness — sortable by creation."""

from __future__ import annotations

import os
import time
import uuid

from application.ports import IdGenerator


def uuid7() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | rand & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | (0x7 << 76)  # version 7
    value = value & ~(0x3 << 62) | (0x2 << 62)  # variant RFC 9562
    return uuid.UUID(int=value)


class Uuid7Ids(IdGenerator):
    def new_id(self) -> str:
        return str(uuid7())
