"""What is kept of a verification: the result, never the document.

No column can hold a number, a name, an image, a video or a biometric
template: the only strings are short codes, the provider's reference, a keyed
hash and the masked number (tests/test_verification_package.py holds every
column to that)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, new_id
from app.models.identifying import identifies_user


class IdentityVerification(Base):
    """One account's verified identity (``role`` self), or for an account of a
    child under 14 its guardian's (``role`` guardian)."""

    __tablename__ = "identity_verifications"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(2))
    provider: Mapped[str] = mapped_column(String(64))
    provider_reference: Mapped[str] = mapped_column(String(128))
    document_type: Mapped[str] = mapped_column(String(40))
    # HMAC of the document type and normalised number under the blind-index
    # key: one identity binds to one account without the number being kept.
    document_hash: Mapped[str] = mapped_column(
        String(64), index=True, info=identifies_user("keyed hash of an identity document number")
    )
    # ``110105**********1X``: enough for the person to recognise the document.
    document_masked: Mapped[str] = mapped_column(String(24))
    verified_at: Mapped[datetime]
    retain_until: Mapped[datetime] = mapped_column(index=True)
