"""Rate-limit keys and values. Keys are blind indexes or keyed hashes, so the
limiter's storage never holds an email, phone or client address in clear
(client addresses: app/extensions.py)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from flask import request

from app.api.context import request_context, runtime
from app.errors import ServiceError
from app.extensions import current_settings, limiter_hash_key
from app.services.directory import Directory


def json_body() -> object:
    """The JSON body if it parses; rate-limit keys never fail a request
    (parse_body answers malformed or absurdly nested bodies itself)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def setting(name: str) -> Callable[[], str]:
    return lambda: str(getattr(current_settings(), name))


def body_field_key(field: str, kind: str = "identifier") -> Callable[[], str]:
    """The blind index of an address in the JSON body; malformed input still gets a key."""

    def key() -> str:
        data = json_body()
        raw = data.get(field) if isinstance(data, dict) else None
        if not isinstance(raw, str):
            return f"{field}:absent"
        rt = runtime()
        directory = Directory(None, rt.blind_index, rt.settings.default_phone_region)  # type: ignore[arg-type]
        parse = {"email": directory.email, "phone": directory.phone}.get(kind, directory.identifier)
        try:
            return f"{field}:{parse(raw).index}"
        except (ServiceError, UnicodeError):
            # Keyed: a plain hash of an almost-valid address could be guessed back.
            typed = raw.strip().lower().encode("utf-8", "replace")
            digest = hmac.new(limiter_hash_key(), typed, hashlib.sha256).hexdigest()
            return f"{field}:raw:{digest}"

    return key


def caller_key() -> str:
    """The signed-in account (its random id). Authenticates the request first:
    without a session there is nothing to count, and the answer is a 401."""
    from app.api.context import current_caller

    return f"account:{current_caller().user.id}"


def source_key() -> str:
    """Where the request comes from, for limits per (identifier, source): the
    device cookie it shows (its hash), else a keyed hash of its network. A
    recognised device thus keeps its own budget however busy its network is;
    a made-up cookie only buys what the database back-off still counts."""
    hints = request_context()
    if hints.device.cookie_hash:
        return f"device:{hints.device.cookie_hash}"
    return f"net:{hints.source}"


def identifier_source_key(field: str, kind: str = "identifier") -> Callable[[], str]:
    """Per identifier typed and source: one network's guesses cannot use up
    the owner's requests (NIST SP 800-63B-4 §3.2.2)."""
    identifier = body_field_key(field, kind)

    def key() -> str:
        combined = f"{identifier()}|{source_key()}"
        return f"{field}-source:{hashlib.sha256(combined.encode()).hexdigest()}"

    return key


def owner_device_shown(field: str, kind: str = "identifier") -> Callable[[], bool]:
    """For ``exempt_when``: the request carries the device cookie of a device
    the account behind the typed address has recognised. A per-destination
    limit protects the owner from floods; strangers can fill it, so it must
    not stop the owner asking from their own browser for their own code."""

    def exempt() -> bool:
        from app.api.context import services

        hints = request_context().device
        data = json_body()
        raw = data.get(field) if isinstance(data, dict) else None
        if not hints.cookie_hash or not isinstance(raw, str):
            return False
        svc = services()
        parse = {"email": svc.directory.email, "phone": svc.directory.phone}.get(
            kind, svc.directory.identifier
        )
        try:
            user = svc.directory.find(parse(raw))
        except (ServiceError, UnicodeError):
            return False
        return user is not None and svc.devices.identify(user.id, hints) is not None

    return exempt


def flow_destination_key() -> str:
    """A registration resend counts against the address it goes to, not the flow:
    opening more flows must not buy more messages to one person."""
    from app.api.context import services
    from app.models import RegistrationFlow

    flow_id = (request.view_args or {}).get("flow_id", "")
    data = json_body()
    channel = data.get("channel") if isinstance(data, dict) else None
    flow = services().db.get(RegistrationFlow, flow_id)
    if flow is None or channel not in ("email", "phone"):
        return f"flow:{flow_id}"
    return f"destination:{flow.email_index if channel == 'email' else flow.phone_index}"
