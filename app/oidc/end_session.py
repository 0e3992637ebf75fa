"""OIDC RP-Initiated Logout 1.0: what a client's logout request asks for,
checked. The views (app/oidc/logout_views.py) decide what to show.

authlib 1.9's EndSessionEndpoint was considered: it drops an unregistered
post_logout_redirect_uri silently (the spec and this service want an error
page), checks no issuer, and verifies against its own key set rather than
SigningKeys. The rules are few, so they are written out here.

Expired hints are accepted (spec section 2: the RP may hold an old ID token);
the issuer must be this one and the audience a registered, enabled client.
A redirect happens only to a URI registered for that client, exactly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from app.models import Session
from app.oidc.client_models import OAuthClient
from app.oidc.clients import could_be_client_id
from app.oidc.keys import SigningKeys
from app.oidc.signed_tokens import issuer, session_id_for
from app.oidc.subjects import subject_for
from app.security.signing import SignatureInvalid
from app.services.container import Services

# The request's parameters this endpoint reads (spec section 2).
PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales")
MAX_PARAMETER = 8192


class BadLogoutRequest(Exception):
    """The request cannot be honoured; the person sees why, and is not redirected."""


@dataclass(frozen=True)
class LogoutRequest:
    client: OAuthClient | None
    # The registered post_logout_redirect_uri with state, or None.
    redirect_to: str | None
    hint: Mapping[str, Any] | None

    def names(self, svc: Services, session: Session) -> bool:
        """Does the hint name this browser session (its sid and its user's sub)?"""
        if self.hint is None or self.client is None:
            return False
        sid = session_id_for(svc, self.client, session.id)
        sub = subject_for(svc, self.client, session.user_id)
        return self.hint.get("sid") == sid and self.hint.get("sub") == sub

    def form_fields(self, params: Mapping[str, str]) -> list[tuple[str, str]]:
        """The parameters to carry through the confirmation page."""
        return [(name, params[name]) for name in PARAMETERS if params.get(name)]


def read(svc: Services, params: Mapping[str, str]) -> LogoutRequest:
    for name in PARAMETERS:
        if len(params.get(name) or "") > MAX_PARAMETER:
            raise BadLogoutRequest(f"{name} is too long")
    hint = _verified_hint(svc, params.get("id_token_hint") or "")
    client = None
    if hint is not None:
        client = _enabled_client(svc, _audience(hint))
    client_id = params.get("client_id") or ""
    if client_id:
        named = _enabled_client(svc, client_id)
        if client is not None and named.client_id != client.client_id:
            raise BadLogoutRequest("client_id is not the audience of id_token_hint")
        client = named
    uri = params.get("post_logout_redirect_uri") or ""
    redirect_to = None
    if uri:
        if client is None:
            raise BadLogoutRequest("post_logout_redirect_uri needs id_token_hint or client_id")
        if uri not in client.post_logout_redirect_uris:
            raise BadLogoutRequest("post_logout_redirect_uri is not registered for this client")
        redirect_to = _with_state(uri, params.get("state") or "")
    return LogoutRequest(client, redirect_to, hint)


def _verified_hint(svc: Services, token: str) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        claims = SigningKeys.of(svc).verify(token)
    except SignatureInvalid:
        raise BadLogoutRequest("id_token_hint is not a token this provider signed") from None
    if claims.get("iss") != issuer(svc):
        raise BadLogoutRequest("id_token_hint was issued by someone else")
    if "events" in claims:
        # A logout token has iss, aud, sub and sid too; it is not an ID token.
        raise BadLogoutRequest("id_token_hint is not an ID token")
    return claims


def _audience(claims: Mapping[str, Any]) -> str:
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    if not isinstance(aud, str) or not aud:
        raise BadLogoutRequest("id_token_hint names no single client")
    return aud


def _enabled_client(svc: Services, client_id: str) -> OAuthClient:
    client = svc.db.get(OAuthClient, client_id) if could_be_client_id(client_id) else None
    if client is None or client.disabled:
        raise BadLogoutRequest("the client is unknown or disabled")
    return client


def _with_state(uri: str, state: str) -> str:
    if not state:
        return uri
    separator = "&" if urlsplit(uri).query else "?"
    return f"{uri}{separator}{urlencode({'state': state})}"
