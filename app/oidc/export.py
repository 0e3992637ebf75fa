"""The provider's part of a person's export: the partners they approved and
the grants and tokens issued for them. Metadata only: a token's value is
never stored, and its hash would let nobody do anything but stays out too."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.oidc.client_models import OAuthClient
from app.oidc.grant_models import ClientAuthorization, IssuedToken, TokenGrant
from app.services.export import ExportContext, Section


def _approvals(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = ctx.db.execute(
        select(ClientAuthorization, OAuthClient.name)
        .join(OAuthClient, OAuthClient.client_id == ClientAuthorization.client_id)
        .where(ClientAuthorization.user_id == ctx.user.id)
        .order_by(ClientAuthorization.granted_at)
    ).all()
    return [
        {
            "client_id": auth.client_id,
            "client_name": name,
            "scopes": list(auth.scopes),
            "granted_at": auth.granted_at.isoformat(),
        }
        for auth, name in rows
    ]


def _tokens_of(ctx: ExportContext, grant: TokenGrant) -> list[dict[str, Any]]:
    rows = ctx.db.scalars(
        select(IssuedToken).where(IssuedToken.grant_id == grant.id).order_by(IssuedToken.issued_at)
    )
    return [
        {
            "kind": token.kind,
            "scopes": list(token.scopes),
            "issued_at": token.issued_at.isoformat(),
            "expires_at": token.expires_at.isoformat(),
            "used_at": token.used_at.isoformat() if token.used_at else None,
            "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
            "bound_to_a_key": token.dpop_jkt is not None,
        }
        for token in rows
    ]


def _grants(ctx: ExportContext) -> list[dict[str, Any]]:
    rows = ctx.db.execute(
        select(TokenGrant, OAuthClient.name)
        .join(OAuthClient, OAuthClient.client_id == TokenGrant.client_id)
        .where(TokenGrant.user_id == ctx.user.id)
        .order_by(TokenGrant.created_at)
    ).all()
    return [
        {
            "client_id": grant.client_id,
            "client_name": name,
            "scopes": list(grant.scopes),
            "granted_at": grant.created_at.isoformat(),
            "expires_at": grant.expires_at.isoformat(),
            "revoked_at": grant.revoked_at.isoformat() if grant.revoked_at else None,
            "revoke_reason": grant.revoke_reason,
            "tokens": _tokens_of(ctx, grant),
        }
        for grant, name in rows
    ]


def _partners(ctx: ExportContext) -> dict[str, Any]:
    return {
        "about": "Partners you approved, and the sign-ins to apps with this account "
        "(grants) with the tokens issued for them; never the tokens themselves.",
        "approvals": _approvals(ctx),
        "grants": _grants(ctx),
    }


SECTION = Section("partners", ("client_authorizations", "oauth_grants", "oauth_tokens"), _partners)
