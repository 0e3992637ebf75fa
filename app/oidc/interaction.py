"""What an authorisation request still needs from the person before a code
can be issued: a sign-in, a stronger or fresher one, the service's own
consent step, or the partner's approval. Decided here from the request and
the browser's session; the view turns the answer into a redirect, a page, or
(with prompt=none) an error for the client."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from werkzeug.datastructures import MultiDict

from app.json_object import json_object
from app.models import Session
from app.services.sessions import ACR_ORDER, Acr, acr_at_least

# A signed note the provider adds when it sends someone to sign in because
# of prompt=login or max_age: the sign-in that follows satisfies the request
# (else a max_age shorter than the sign-in itself would loop for ever).
LOGIN_AFTER = "privid_login_after"
# The note stands for the request it was made for (its MAC covers every
# parameter, state and nonce too), and only for a while: from a browser's
# history, added to another request or opened again later, it must not pass
# for the fresh sign-in a new prompt=login or max_age asks for.
LOGIN_AFTER_LIFETIME = timedelta(minutes=10)
PROMPTS = frozenset({"none", "login", "consent", "select_account"})


class Need(StrEnum):
    NOTHING = "nothing"
    SIGN_IN = "sign_in"
    STEP_UP = "step_up"
    CONSENT_STEP = "consent_step"
    PARTNER_APPROVAL = "partner_approval"
    # An essential acr the account has no factor for: the client is refused.
    UNREACHABLE_ACR = "unreachable_acr"


# With prompt=none, each need is this error for the client (OIDC Core 3.1.2.6).
SILENT_ERRORS = {
    Need.SIGN_IN: "login_required",
    Need.STEP_UP: "interaction_required",
    Need.CONSENT_STEP: "interaction_required",
    Need.PARTNER_APPROVAL: "consent_required",
}


class BadRequest(ValueError):
    """A parameter the request cannot be served with (invalid_request)."""


@dataclass(frozen=True)
class Verdict:
    need: Need
    # For a step-up: the level to reach.
    acr: Acr | None = None


@dataclass(frozen=True)
class Request:
    prompts: frozenset[str]
    max_age: int | None
    acr_values: tuple[Acr, ...]
    essential_acr: bool
    claims: dict[str, Any] | None
    login_after: datetime | None


def parse(params: Mapping[str, str], login_after: datetime | None) -> Request:
    prompts = frozenset((params.get("prompt") or "").split())
    if "none" in prompts and len(prompts) > 1:
        raise BadRequest("prompt=none cannot be combined with other values.")
    max_age = None
    if params.get("max_age"):
        raw = params["max_age"]
        if not raw.isdigit() or len(raw) > 9:
            raise BadRequest("max_age must be a whole number of seconds.")
        max_age = int(raw)
    claims = parse_claims(params.get("claims"))
    acr_values, essential = requested_acr(params.get("acr_values"), claims)
    return Request(prompts, max_age, acr_values, essential, claims, login_after)


def parse_claims(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    claims = json_object(raw) if len(raw) <= 4096 else None
    if claims is None:
        raise BadRequest("claims must be a JSON object.")
    for target in ("id_token", "userinfo"):
        if target in claims and not isinstance(claims[target], dict | None):
            raise BadRequest(f"claims.{target} must be an object.")
    return claims


def requested_acr(
    raw: str | None, claims: Mapping[str, Any] | None
) -> tuple[tuple[Acr, ...], bool]:
    """The levels asked for, known ones only, from acr_values or the claims
    parameter's acr request (essential or not)."""
    known = {a.value: a for a in ACR_ORDER}
    values = [known[v] for v in (raw or "").split() if v in known]
    essential = False
    spec = ((claims or {}).get("id_token") or {}).get("acr")
    if isinstance(spec, dict):
        listed = spec.get("values") or ([spec["value"]] if "value" in spec else [])
        if isinstance(listed, list):
            values += [known[v] for v in listed if isinstance(v, str) and v in known]
        essential = spec.get("essential") is True
    return tuple(dict.fromkeys(values)), essential


def decide(
    request: Request,
    session: Session | None,
    now: datetime,
    *,
    consent_owed: bool,
    partner_approved: bool,
    approved_now: bool = False,
    someone_else_hinted: bool = False,
    reachable_acr: Callable[[], Acr] | None = None,
) -> Verdict:
    """``approved_now``: this request is the person's answer on the approval
    page, which is what prompt=consent asked for (else the page would come
    back for ever). ``reachable_acr``: the strongest level the account's
    factors reach, asked only when a step-up would be needed."""
    # id_token_hint naming another person than the one signed in: the client
    # expects that person, so whoever is here signs in again (OIDC Core 3.1.2.2).
    if session is None or someone_else_hinted:
        return Verdict(Need.SIGN_IN)
    fresh_sign_in = request.login_after is not None and session.auth_time >= request.login_after
    if not fresh_sign_in:
        if "login" in request.prompts:
            return Verdict(Need.SIGN_IN)
        if (
            request.max_age is not None
            and (now - session.auth_time).total_seconds() > request.max_age
        ):
            return Verdict(Need.SIGN_IN)
    if request.acr_values:
        # Any of the listed levels will do; the lowest is the one to ask for.
        lowest = min(request.acr_values, key=ACR_ORDER.index)
        if not acr_at_least(session.acr, lowest):
            reachable = reachable_acr() if reachable_acr is not None else lowest
            if acr_at_least(reachable, lowest):
                return Verdict(Need.STEP_UP, lowest)
            if request.essential_acr:
                return Verdict(Need.UNREACHABLE_ACR)
            # acr_values are preferences: go on at the level the account has.
    if consent_owed:
        return Verdict(Need.CONSENT_STEP)
    if ("consent" in request.prompts and not approved_now) or not partner_approved:
        return Verdict(Need.PARTNER_APPROVAL)
    return Verdict(Need.NOTHING)


def login_after_note(
    key: bytes, client_id: str, params: MultiDict[str, str], moment: datetime
) -> str:
    # Milliseconds: a sign-in in the same second as the redirect still counts.
    stamp = str(int(moment.timestamp() * 1000) + 1)
    return f"{stamp}.{_mac(key, client_id, params, stamp)}"


def read_login_after(
    key: bytes, client_id: str, params: MultiDict[str, str], note: str | None, now: datetime
) -> datetime | None:
    """When the sign-in the note asks for had to happen after, if the note
    was made for this very request and is not too old."""
    if not note or "." not in note or len(note) > 100:
        return None
    stamp, mac = note.split(".", 1)
    if not stamp.isdigit() or len(stamp) > 15:
        return None
    if not hmac.compare_digest(mac, _mac(key, client_id, params, stamp)):
        return None
    after = datetime.fromtimestamp(int(stamp) / 1000, UTC)
    if not now - LOGIN_AFTER_LIFETIME <= after <= now + timedelta(seconds=1):
        return None
    return after


def _mac(key: bytes, client_id: str, params: MultiDict[str, str], stamp: str) -> str:
    # The request's parameters in a canonical order, the note itself left out.
    request = sorted((k, v) for k, v in params.items(multi=True) if k != LOGIN_AFTER)
    message = json.dumps([client_id, stamp, request], ensure_ascii=True, separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]
