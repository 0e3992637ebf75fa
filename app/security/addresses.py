"""Rate-limit keys for client addresses: a keyed hash, never the address.

Limiter storage (Redis in production) keeps keys for up to the longest window;
an HMAC under a key the store does not hold lets counts be shared by every
worker without the store learning who asked. IPv4's 2^32 addresses would fall
to a plain hash in minutes, hence the key."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

# One IPv6 host usually holds a whole /64, so that is its "address". A source
# (what sign-in failures are counted per) is the /24 an IPv4 client sits in, or
# its /64: one subscriber's line, without letting one host rotate addresses.
IPV6_HOST_PREFIX = 64
IPV4_SOURCE_PREFIX = 24
IPV6_SOURCE_PREFIX = 64


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


def network_source(key: bytes, address: str | None) -> str:
    """The client's network as a keyed hash (the /24, or the IPv6 /64): sign-in
    failures are counted per source (app/services/throttle.py), and stored
    values cannot be matched against a list of networks."""
    ip = _parse(address)
    if ip is None:
        return "unknown"
    prefix = IPV4_SOURCE_PREFIX if ip.version == 4 else IPV6_SOURCE_PREFIX
    return _digest(key, "network", str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False)))
