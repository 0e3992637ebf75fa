"""OAuth clients registered by operators (no dynamic registration).

A client's secret is never stored: only the SHA-256 of it. Secrets are 32
random bytes, so a fast hash is enough to make a leaked row useless."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, String, bindparam, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.models.base import Base
from app.plain_reads import PlainRead


class ClientType(StrEnum):
    CONFIDENTIAL = "confidential"
    PUBLIC = "public"


class AuthMethod(StrEnum):
    """How a client authenticates at the token endpoint."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"
    NONE = "none"


class GrantType(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"
    REFRESH_TOKEN = "refresh_token"
    CLIENT_CREDENTIALS = "client_credentials"


class SigningAlg(StrEnum):
    RS256 = "RS256"
    ES256 = "ES256"


class TokenFormat(StrEnum):
    JWT = "jwt"
    OPAQUE = "opaque"


class SubjectType(StrEnum):
    """What ``sub`` a client sees (OIDC Core §8): one value per sector, or the
    user id itself."""

    PAIRWISE = "pairwise"
    PUBLIC = "public"


class OAuthClient(Base):
    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    client_type: Mapped[str] = mapped_column(String(16))
    # Null for public and private_key_jwt clients: they hold no secret.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    # The client's public keys, for private_key_jwt; none_as_null keeps SQL NULL.
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2048))
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    require_pkce: Mapped[bool]
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(8))
    access_token_format: Mapped[str] = mapped_column(String(8))
    dpop_bound: Mapped[bool]
    # The platform's own apps; partners are the others.
    first_party: Mapped[bool]
    subject_type: Mapped[str] = mapped_column(String(8))
    # The host pairwise subjects are computed for; fixed at registration so a
    # user's sub never changes. None only where no user signs in to the client.
    sector_identifier: Mapped[str | None] = mapped_column(String(253))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True)
class ClientRecord:
    """A client as a request reads it: every column, plain values. The token
    endpoint, introspection and UserInfo read one per request (``read_client``,
    or with the token in ``TokenStore``); changing a client goes through the
    mapped ``OAuthClient`` in the registry."""

    client_id: str
    name: str
    client_type: str
    secret_hash: str | None
    token_endpoint_auth_method: str
    jwks: dict[str, Any] | None
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None
    grant_types: list[str]
    scopes: list[str]
    require_pkce: bool
    id_token_signed_response_alg: str
    access_token_format: str
    dpop_bound: bool
    first_party: bool
    subject_type: str
    sector_identifier: str | None
    created_at: datetime
    disabled_at: datetime | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    @classmethod
    def of(cls, row: OAuthClient) -> ClientRecord:
        return cls(*(getattr(row, name) for name in CLIENT_FIELDS))


CLIENT_FIELDS = tuple(field.name for field in fields(ClientRecord))
# The client's columns in the record's order, for reads that select them
# beside others (the token lookup).
CLIENT_COLUMNS = tuple(OAuthClient.__table__.c[name] for name in CLIENT_FIELDS)
# Either form, where code only reads a client.
ClientView = OAuthClient | ClientRecord

_CLIENT_READ = PlainRead(
    select(*CLIENT_COLUMNS).where(OAuthClient.client_id == bindparam("client_id"))
)


def read_client(db: Session, client_id: str) -> ClientRecord | None:
    """The client as it is now, disabled or not, without the ORM."""
    found = _CLIENT_READ.first(db, client_id=client_id)
    return ClientRecord(*found) if found is not None else None
