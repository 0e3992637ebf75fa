"""The keys the OpenID provider signs tokens with. The public half is kept as
a JWK, ready to publish; the private half only sealed under a data key of its
own, wrapped by the service's key-encryption key, and erased once the key is
retired (a retired key signs nothing more; its public half stays published
until what it signed has expired)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

ACTIVE = "retired_at IS NULL"


class SigningKey(Base):
    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint("alg IN ('RS256', 'ES256')", name="alg"),
        # One active key per algorithm: two workers creating the first key at
        # once, or two rotations racing, cannot leave two signing side by side.
        Index(
            "ix_signing_keys_one_active",
            "alg",
            unique=True,
            postgresql_where=text(ACTIVE),
            sqlite_where=text(ACTIVE),
        ),
    )

    # The RFC 7638 thumbprint of the public key (SHA-256, base64url).
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    # As published: key parameters plus kid, use and alg; never a private part.
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The private key (PKCS#8 PEM) sealed under a data key bound to the kid;
    # all three None once the key is retired.
    kek_id: Mapped[str | None] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    private_key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    # Retired keys stay in the JWKS until then.
    published_until: Mapped[datetime | None]
