"""What a service may know about the request that reached it, already minimised."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, replace

from app.security.addresses import network_source
from app.services.user_agents import UNKNOWN_DEVICE, summarise

IPV4_PREFIX = 24
IPV6_PREFIX = 48


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
    # A keyed hash of the client's network (app/security/addresses.py); never the address.
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
            source=network_source(key, remote_addr),
        )

    def without_device_details(self) -> RequestContext:
        """What a session may keep when the user has not granted the security
        purpose: no device model, no network address."""
        return replace(self, ip_prefix=WITHHELD, device_summary=UNKNOWN_DEVICE)


WITHHELD = "withheld"


def truncate_ip(address: str | None) -> str:
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return "unknown"
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def summarise_user_agent(user_agent: str) -> str:
    """Browser and OS families from a maintained parser; never the raw header."""
    return summarise(user_agent).text
