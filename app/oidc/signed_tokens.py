"""The JWTs the provider signs: ID tokens (OIDC Core 2) and, for clients
that want them, access tokens in the RFC 9068 profile. Every one names its
key by ``kid`` (app/oidc/keys.py signs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.oidc.client_models import ClientView, SigningAlg
from app.oidc.grant_models import TokenGrant
from app.oidc.keys import Algorithm, SigningKeys
from app.oidc.subjects import subject_for
from app.security.tokens import derive_key
from app.services.container import Services

ACCESS_TOKEN_TYPE = "at+jwt"


def issuer(svc: Services) -> str:
    """The issuer identifier: the public URL, exactly as discovery names it."""
    return svc.runtime.settings.public_url.rstrip("/")


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def half_hash(value: str) -> str:
    """OIDC Core 3.1.3.6: the left half of the SHA-256 of the value (both
    algorithms offered hash with SHA-256), base64url without padding."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def session_id_for(svc: Services, client: ClientView, session_id: str) -> str:
    """The ID token's sid, derived per sector like the subject: two partners
    cannot join their users through a shared session identifier."""
    key = derive_key(svc.runtime.settings.secret_key_bytes, "oidc-sid")
    sector = client.sector_identifier or client.client_id
    mac = hmac.new(key, f"{sector}\x00{session_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


@dataclass(frozen=True)
class Minted:
    token: str
    expires_in: int


def id_token_alg(client: ClientView) -> Algorithm:
    """What the client's ID tokens (and logout tokens) are signed with."""
    return "ES256" if client.id_token_signed_response_alg == SigningAlg.ES256 else "RS256"


class TokenMinter:
    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._keys = SigningKeys.of(svc)

    def access_token(
        self,
        client: ClientView,
        grant: TokenGrant,
        scopes: Sequence[str],
        *,
        dpop_jkt: str | None,
    ) -> Minted:
        settings = self._svc.runtime.settings
        lifetime = settings.oidc_access_token_lifetime_seconds
        if client.access_token_format != "jwt":
            return Minted(secrets.token_urlsafe(32), lifetime)
        now = self._svc.runtime.clock.now()
        claims: dict[str, Any] = {
            "iss": issuer(self._svc),
            "aud": issuer(self._svc),
            "client_id": client.client_id,
            "iat": epoch(now),
            "exp": epoch(now) + lifetime,
            "jti": secrets.token_urlsafe(16),
            "scope": " ".join(scopes),
        }
        if grant.user_id is not None:
            claims["sub"] = subject_for(self._svc, client, grant.user_id)
            if grant.auth_time is not None:
                claims["auth_time"] = epoch(grant.auth_time)
            if grant.acr:
                claims["acr"] = grant.acr
        else:
            claims["sub"] = client.client_id
        if dpop_jkt is not None:
            claims["cnf"] = {"jkt": dpop_jkt}
        token = self._keys.sign(claims, id_token_alg(client), ACCESS_TOKEN_TYPE)
        return Minted(token, lifetime)

    def id_token(
        self,
        client: ClientView,
        grant: TokenGrant,
        *,
        access_token: str | None,
        nonce: str | None,
        extra: Mapping[str, Any],
    ) -> str:
        assert grant.user_id is not None
        settings = self._svc.runtime.settings
        now = self._svc.runtime.clock.now()
        claims: dict[str, Any] = {
            "iss": issuer(self._svc),
            "sub": subject_for(self._svc, client, grant.user_id),
            "aud": client.client_id,
            "iat": epoch(now),
            "exp": epoch(now) + settings.oidc_id_token_lifetime_seconds,
        }
        if grant.auth_time is not None:
            claims["auth_time"] = epoch(grant.auth_time)
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.amr:
            claims["amr"] = list(grant.amr)
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            claims["at_hash"] = half_hash(access_token)
        if grant.session_id:
            claims["sid"] = session_id_for(self._svc, client, grant.session_id)
        claims.update(extra)
        return self._keys.sign(claims, id_token_alg(client))
