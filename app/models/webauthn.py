"""WebAuthn (passkeys): registered credentials and pending ceremony challenges.

Only a public key and its metadata are kept. A biometric check happens on the
user's device and never reaches us: the authenticator reports one bit (UV)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The authenticator's credential id (at most 1023 bytes, WebAuthn L3 §5.8.3).
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON)
    aaguid: Mapped[str] = mapped_column(String(36))
    backup_eligible: Mapped[bool]
    backup_state: Mapped[bool]
    user_verified_at_registration: Mapped[bool]
    nickname: Mapped[str] = mapped_column(String(64))
    attestation_format: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # A sign count went backwards: two copies of the key may exist. Refused since.
    flagged_cloned_at: Mapped[datetime | None]


class WebAuthnChallenge(Base):
    """One ceremony's challenge, in the database so any worker can finish it."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    challenge: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    ceremony: Mapped[str] = mapped_column(String(16))  # registration | authentication
    # None for a username-less sign-in: nobody is known until the assertion arrives.
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Set for a step-up: only the session that asked may answer it.
    session_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE")
    )
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]
