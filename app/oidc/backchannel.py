"""OIDC Back-Channel Logout 1.0: when a browser session ends, or a partner's
grants are revoked, each client that registered a ``backchannel_logout_uri``
and held a grant from it is sent a Logout Token.

The message is queued in the outbox (channel ``http``) in the transaction
that ends the session, so a rolled-back sign-out sends nothing, and it is
retried with the outbox's back-off. The token is signed when the message is
sent, not when it is queued: it lives two minutes, and a retry after a long
back-off must not carry an expired one.

What happens to the ended session's grants: those without ``offline_access``
are revoked with it (their tokens stood for that sign-in); offline ones
survive, as OIDC Core 11 allows, because the person asked for access while
they are away. The client is told either way; it ends its own session."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from sqlalchemy import select

from app.adapters.http_post import OutgoingPost
from app.oidc.client_models import ClientView, OAuthClient
from app.oidc.grant_models import TokenGrant
from app.oidc.keys import SigningKeys
from app.oidc.signed_tokens import epoch, id_token_alg, issuer, session_id_for
from app.oidc.subjects import subject_for
from app.oidc.token_store import TokenStore
from app.services.container import Services
from app.services.outbox import NothingToSend
from app.services.sealed_messages import Deferred

RENDERER = "oidc.backchannel_logout"
LOGOUT_TOKEN_TYPE = "logout+jwt"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
LIFETIME_SECONDS = 120
OFFLINE = "offline_access"


class BackChannelLogout:
    def __init__(self, svc: Services) -> None:
        self._svc = svc

    @classmethod
    def of(cls, svc: Services) -> BackChannelLogout:
        return cls(svc)

    def sessions_ended(self, session_ids: Sequence[str]) -> None:
        """The grants given in these sessions: end the online ones, tell the clients."""
        now = self._svc.runtime.clock.now()
        grants = list(
            self._svc.db.scalars(
                select(TokenGrant).where(
                    TokenGrant.session_id.in_(list(session_ids)),
                    TokenGrant.revoked_at.is_(None),
                    TokenGrant.expires_at > now,
                )
            )
        )
        tokens = TokenStore.of(self._svc)
        for grant in grants:
            if OFFLINE not in grant.scopes:
                tokens.revoke_grant(grant, "session_ended")
        self.notify(grants, only_enabled=True)

    def notify(self, grants: Iterable[TokenGrant], *, only_enabled: bool = False) -> int:
        """Queue one logout token per client and session (per client and user
        for a grant from no known session). Returns how many were queued."""
        queued: set[tuple[str, str, str | None]] = set()
        for grant in grants:
            if grant.user_id is None:
                continue  # client_credentials: nobody's session
            key = (grant.client_id, grant.user_id, grant.session_id)
            if key in queued:
                continue
            client = self._svc.db.get(OAuthClient, grant.client_id)
            if client is None or not client.backchannel_logout_uri:
                continue
            if only_enabled and client.disabled:
                continue
            data = {
                "client_id": client.client_id,
                "sub": subject_for(self._svc, client, grant.user_id),
            }
            if grant.session_id is not None:
                data["sid"] = session_id_for(self._svc, client, grant.session_id)
            self._svc.notifier.post_later(Deferred(RENDERER, data), user_id=grant.user_id)
            queued.add(key)
        return len(queued)


def logout_token_claims(
    svc: Services, client: ClientView, sub: str, sid: str | None
) -> dict[str, object]:
    now = epoch(svc.runtime.clock.now())
    claims: dict[str, object] = {
        "iss": issuer(svc),
        "aud": client.client_id,
        "iat": now,
        "exp": now + LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(16),
        "sub": sub,
        "events": {EVENT: {}},
    }
    if sid is not None:
        claims["sid"] = sid
    return claims


def render(svc: Services, message: Deferred) -> OutgoingPost:
    """The POST, with a freshly signed token, at each try. A client since
    deleted, or that dropped its back-channel URI, gets nothing."""
    client = svc.db.get(OAuthClient, message.data.get("client_id", ""))
    if client is None or not client.backchannel_logout_uri or "sub" not in message.data:
        raise NothingToSend
    claims = logout_token_claims(svc, client, message.data["sub"], message.data.get("sid"))
    token = SigningKeys.of(svc).sign(claims, id_token_alg(client), LOGOUT_TOKEN_TYPE)
    return OutgoingPost(client.backchannel_logout_uri, (("logout_token", token),))


def on_sessions_ended(svc: Services, session_ids: Sequence[str]) -> None:
    BackChannelLogout.of(svc).sessions_ended(session_ids)
