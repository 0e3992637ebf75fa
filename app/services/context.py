"""What a service may know about the request that reached it, already minimised."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, replace

IPV4_PREFIX = 24
IPV6_PREFIX = 48
# Where an attempt comes from, for counting failures per source: one IPv4 /24
# or one IPv6 /64 (what one customer line usually holds).
SOURCE_IPV4_PREFIX = 24
SOURCE_IPV6_PREFIX = 64


@dataclass(frozen=True)
class DeviceHints:
    """What may tell us which device is asking; matched against device records
    only while the user grants the security purpose."""

    cookie_hash: str | None = None  # hash of the browser's device cookie
    dpop_jkt: str | None = None  # thumbprint of a verified DPoP proof's key
    credential_ref: str | None = None  # the passkey that just signed in


@dataclass(frozen=True)
class RequestContext:
    ip_prefix: str  # the client address truncated to /24 or /48
    device_summary: str  # e.g. "Chrome on Android"; never the raw user agent
    user_agent_hash: str
    device: DeviceHints = DeviceHints()
    # A keyed hash of the client's network (see network_source); never the address.
    source: str = "unknown"

    @classmethod
    def from_raw(
        cls,
        remote_addr: str | None,
        user_agent: str | None,
        key: bytes,
        device: DeviceHints | None = None,
    ) -> RequestContext:
        """``key`` keys the user-agent hash: a plain hash of a guessable string
        could be reversed with a list of common user agents."""
        ua = user_agent or ""
        return cls(
            ip_prefix=truncate_ip(remote_addr),
            device_summary=summarise_user_agent(ua),
            user_agent_hash=hmac.new(
                key, ua.encode("utf-8", "replace"), hashlib.sha256
            ).hexdigest(),
            device=device or DeviceHints(),
            source=network_source(remote_addr, key),
        )

    def without_device_details(self) -> RequestContext:
        """What a session may keep when the user has not granted the security
        purpose: no device model, no network address."""
        return replace(self, ip_prefix=WITHHELD, device_summary=UNKNOWN_DEVICE)


WITHHELD = "withheld"
UNKNOWN_DEVICE = "unknown device"


def network_source(address: str | None, key: bytes) -> str:
    """The client's network as a keyed hash: what failures are counted per
    (app/services/throttle.py) and what per-network rate limits are keyed on.
    Keyed, so a stored value cannot be matched against a list of networks."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return "unknown"
    prefix = SOURCE_IPV4_PREFIX if ip.version == 4 else SOURCE_IPV6_PREFIX
    network = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    return hmac.new(key, b"network:" + network.encode(), hashlib.sha256).hexdigest()[:32]


def truncate_ip(address: str | None) -> str:
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return "unknown"
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


_BROWSERS = [
    ("Edg/", "Edge"),
    ("MicroMessenger", "WeChat"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("privid-", "privid app"),
    ("okhttp", "Android app"),
    ("CFNetwork", "iOS app"),
    ("python-requests", "python-requests"),
    ("curl/", "curl"),
]
_SYSTEMS = [
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
]


def summarise_user_agent(user_agent: str) -> str:
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return str(browser or system)
    # Unknown clients: keep a short, printable prefix only.
    return re.sub(r"[^\w ./-]", "", user_agent)[:40] or "unknown device"
