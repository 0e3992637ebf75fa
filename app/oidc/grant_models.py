"""What the provider remembers about authorisations: the user's approval of a
partner (``ClientAuthorization``), each code's chain of tokens (``TokenGrant``),
the codes themselves and every token issued. Codes and tokens are stored as
SHA-256 hashes only: a database dump holds nothing a client could present."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, new_id


class ClientAuthorization(Base):
    """What a user approved for one partner, remembered so the page is not
    shown again for the same scopes. The decision itself is in the consent
    ledger (``partner_sharing`` for this client)."""

    __tablename__ = "client_authorizations"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON)
    granted_at: Mapped[datetime]


class TokenGrant(Base):
    """One authorisation code and everything issued from it: the refresh
    token family. Revoking the grant ends every token in it at once."""

    __tablename__ = "oauth_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Null for client_credentials: a client acting for itself.
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # The browser session it was granted in (the ID token's sid); kept after
    # that session ends, for back-channel logout and the partner list.
    session_id: Mapped[str | None] = mapped_column(String(36), index=True)
    auth_time: Mapped[datetime | None]
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    # RFC 9449: refresh tokens of a public client are bound to this key.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    # The refresh tokens' absolute lifetime: rotation never goes past it.
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(32))


class AuthorizationCode(Base):
    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    # The claims parameter's requests (OIDC Core 5.5), for the ID token and
    # userinfo; None when the client asked for none.
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class IssuedToken(Base):
    __tablename__ = "oauth_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    grant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))  # access | refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # Refresh tokens: set when rotated (used); presenting it again is reuse.
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # RFC 9449: the key the token is bound to (the cnf.jkt claim).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
