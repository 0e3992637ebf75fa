"""Rate-limit keys for client addresses: a keyed hash, never the address.

Limiter storage (Redis in production) keeps keys for up to the longest window;
an HMAC under a key the store does not hold lets counts be shared by every
worker without the store learning who asked. IPv4's 2^32 addresses would fall
to a plain hash in minutes, hence the key."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

# One IPv6 host usually holds a whole /64, so that is its "address"; networks
# are the prefixes the service already truncates to (/24, /48).
IPV6_HOST_PREFIX = 64
IPV4_NETWORK_PREFIX = 24
IPV6_NETWORK_PREFIX = 48


def _parse(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _digest(key: bytes, label: str, value: str) -> str:
    return hmac.new(key, f"{label}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def address_key(key: bytes, address: str | None) -> str:
    """Per-client key: the IPv4 address, or the IPv6 /64 it lies in."""
    ip = _parse(address)
    if ip is None:
        return "addr:unknown"
    value = (
        str(ip)
        if ip.version == 4
        else str(ipaddress.ip_network(f"{ip}/{IPV6_HOST_PREFIX}", strict=False))
    )
    return "addr:" + _digest(key, "addr", value)


def network_key(key: bytes, address: str | None) -> str:
    """Per-network key: the /24 (IPv4) or /48 (IPv6) the address lies in."""
    ip = _parse(address)
    if ip is None:
        return "net:unknown"
    prefix = IPV4_NETWORK_PREFIX if ip.version == 4 else IPV6_NETWORK_PREFIX
    return "net:" + _digest(key, "net", str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False)))
