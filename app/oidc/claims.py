"""What a client learns about a user: scopes map to claims (OIDC Core 5.4),
and the claims parameter (5.5) may ask for single ones. Each claim is read
from the encrypted profile only when a granted scope or request names it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from app.capabilities import capability_claims
from app.models import User
from app.services.container import Services

# Scope → the claims it releases. ``identity``'s claims (the verification level
# and its date, nothing of the document) are answered by the identity
# verification capability (``Capability.user_claims``).
SCOPE_CLAIMS: Mapping[str, tuple[str, ...]] = {
    "openid": (),
    "profile": ("name",),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "offline_access": (),
    "identity": ("identity_level", "identity_verified_on"),
}
# The claims read from the encrypted profile; the others come from capabilities.
PROFILE_CLAIMS = frozenset(
    {"name", "email", "email_verified", "phone_number", "phone_number_verified"}
)
USER_CLAIMS = frozenset(c for claims in SCOPE_CLAIMS.values() for c in claims)
# Claims the ID token carries about the sign-in itself, never from the profile.
SIGN_IN_CLAIMS = frozenset({"auth_time", "acr", "amr"})
SUPPORTED_CLAIMS = sorted(
    USER_CLAIMS | SIGN_IN_CLAIMS | {"sub", "iss", "aud", "exp", "iat", "nonce", "sid", "at_hash"}
)


# Each user claim's scope: asking for the claim is asking for what the scope
# releases, and needs the same registration and the same approval.
CLAIM_SCOPES: Mapping[str, str] = {
    claim: scope for scope, claims in SCOPE_CLAIMS.items() for claim in claims
}


def claims_of_scopes(scopes: Iterable[str]) -> set[str]:
    return {claim for scope in scopes for claim in SCOPE_CLAIMS.get(scope, ())}


def scopes_of_claims(claims: Mapping[str, Any] | None) -> set[str]:
    """The scopes whose claims the claims parameter asks for (either target)."""
    names = set(requested_claims(claims, "userinfo")) | set(requested_claims(claims, "id_token"))
    return {CLAIM_SCOPES[name] for name in names if name in CLAIM_SCOPES}


def claims_within(claims: dict[str, Any] | None, scopes: Iterable[str]) -> dict[str, Any] | None:
    """The claims parameter without the user claims of scopes the client is
    not registered for: a claim is never a way around its scope."""
    if not claims:
        return claims
    allowed = set(scopes)
    kept: dict[str, Any] = {}
    for target, wanted in claims.items():
        if isinstance(wanted, dict):
            wanted = {
                name: spec
                for name, spec in wanted.items()
                if name not in CLAIM_SCOPES or CLAIM_SCOPES[name] in allowed
            }
        kept[target] = wanted
    return kept


def requested_claims(claims: Mapping[str, Any] | None, target: str) -> dict[str, Any]:
    """The claims parameter's requests for ``userinfo`` or ``id_token``,
    limited to user claims this service has."""
    if not claims:
        return {}
    wanted = claims.get(target)
    if not isinstance(wanted, dict):
        return {}
    return {name: spec for name, spec in wanted.items() if name in USER_CLAIMS | SIGN_IN_CLAIMS}


def user_claims(svc: Services, user: User, names: Iterable[str], client_id: str) -> dict[str, Any]:
    """The values of the named user claims for ``client_id``; the profile is
    decrypted only if one of them needs it. A claim no one answers for (an
    unverified identity) is left out."""
    wanted = set(names) & USER_CLAIMS
    if not wanted:
        return {}
    values: dict[str, Any] = {}
    if wanted & PROFILE_CLAIMS:
        profile = svc.vault.profile(user)
        values = {
            "name": profile.full_name,
            "email": profile.email,
            "email_verified": _verified(user.email_verified_at),
            "phone_number": profile.phone,
            "phone_number_verified": _verified(user.phone_verified_at),
        }
    others = frozenset(wanted - PROFILE_CLAIMS)
    if others:
        for answer in capability_claims():
            values.update(answer(svc, user, client_id, others))
    return {name: values[name] for name in sorted(wanted) if name in values}


def _verified(at: datetime | None) -> bool:
    return at is not None
