"""The client's address: the peer, or — only behind a trusted proxy — the last untrusted hop of
``X-Forwarded-For``."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from litestar.connection import ASGIConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``CHAT_TRUSTED_PROXIES`` entries: addresses or CIDR ranges. Raises ValueError for garbage."""
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(connection: ASGIConnection[Any, Any, Any, Any], trusted: tuple[Network, ...]) -> str:
    peer = connection.client.host if connection.client else "unknown"
    return forwarded_address(peer, connection.headers.get("x-forwarded-for", ""), trusted)


def forwarded_address(peer: str, forwarded_for: str, trusted: tuple[Network, ...]) -> str:
    """The client's address given the peer's and its ``X-Forwarded-For`` header: the peer unless
    it is a trusted proxy, else the last hop of the header that is not one."""
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    """Whether ``address`` is one of the trusted proxies (its requests carry the client's address)."""
    return bool(trusted) and _trusted(address, trusted)
