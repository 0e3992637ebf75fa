"""Rate-limit keys and values. Keys are blind indexes or keyed hashes, so the
limiter's storage never holds an email, phone or client address in clear
(client addresses: app/extensions.py)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from flask import request

from app.errors import ServiceError
from app.extensions import current_settings, limiter, limiter_hash_key
from app.http.scope import request_context, runtime
from app.services.directory import Directory, Identifier


def json_body() -> object:
    """The request's fields: the JSON body if it parses (the API), else the
    form (the pages). Rate-limit keys never fail a request (parse_body answers
    malformed or absurdly nested bodies itself)."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict()
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def setting(name: str) -> Callable[[], str]:
    return lambda: str(getattr(current_settings(), name))


def _typed_address(field: str, kind: str) -> tuple[str, Identifier | None]:
    """The blind index of an address in the JSON body, and the parsed address;
    malformed input still gets a key (and no address)."""
    data = json_body()
    raw = data.get(field) if isinstance(data, dict) else None
    if not isinstance(raw, str):
        return f"{field}:absent", None
    rt = runtime()
    directory = Directory(None, rt.blind_index, rt.settings.default_phone_region)  # type: ignore[arg-type]
    parse = {"email": directory.email, "phone": directory.phone}.get(kind, directory.identifier)
    try:
        ident = parse(raw)
    except (ServiceError, UnicodeError):
        # Keyed: a plain hash of an almost-valid address could be guessed back.
        typed = raw.strip().lower().encode("utf-8", "replace")
        digest = hmac.new(limiter_hash_key(), typed, hashlib.sha256).hexdigest()
        return f"{field}:raw:{digest}", None
    return f"{field}:{ident.index}", ident


def caller_key() -> str:
    """The signed-in account (its random id). Authenticates the request first:
    without a session there is nothing to count, and the answer is a 401."""
    from app.http.gate import authenticated_caller

    return f"account:{authenticated_caller().user.id}"


def _source_of(ident: Identifier | None) -> str:
    """Where the request comes from: the recognised device, of the account
    behind the typed address, that the request shows; else a keyed hash of its
    network. A made-up device cookie is no source of its own. The lookups are
    the same whether or not the address has an account."""
    from app.http.scope import services

    svc = services()
    user = svc.directory.find(ident) if ident is not None else None
    return svc.devices.source_of(user, request_context())


def _per_source(field: str, part: str, source: str) -> str:
    combined = f"{part}|{source}"
    return f"{field}-source:{hashlib.sha256(combined.encode()).hexdigest()}"


def identifier_source_key(field: str, kind: str = "identifier") -> Callable[[], str]:
    """Per address typed and source: one network's requests cannot use up the
    owner's (NIST SP 800-63B-4 §3.2.2)."""

    def key() -> str:
        part, ident = _typed_address(field, kind)
        return _per_source(field, part, _source_of(ident))

    return key


def per_destination_limit(field: str, kind: str = "identifier") -> Callable[[Any], Any]:
    """The one limit on codes sent to an address, for every endpoint that
    sends one. It counts per (destination, source), so strangers elsewhere can
    never use up the owner's requests for their own code (sign-in, reset).
    Trade-off: a recipient can be sent ``limit_code_send_per_destination``
    messages an hour by each network (or recognised device) that asks, each
    network also held to ``limit_code_send_per_ip``; flooding one person then
    takes many networks, and no total cap exists for strangers to fill."""
    return limiter.limit(
        setting("limit_code_send_per_destination"), key_func=identifier_source_key(field, kind)
    )


def flow_destination_key() -> str:
    """A registration resend counts against the address it goes to, not the flow:
    opening more flows must not buy more messages to one person."""
    from app.http.scope import services
    from app.models import RegistrationFlow

    flow_id = (request.view_args or {}).get("flow_id", "")
    data = json_body()
    channel = data.get("channel") if isinstance(data, dict) else None
    flow = services().db.get(RegistrationFlow, flow_id)
    if flow is None or channel not in ("email", "phone"):
        return f"flow:{flow_id}"
    index = flow.email_index if channel == "email" else flow.phone_index
    # Per (destination, source), as per_destination_limit counts.
    return _per_source("destination", index, _source_of(None))
