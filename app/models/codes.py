"""One-time codes, stored only as keyed hashes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id
from .identifying import identifies_user


class CodePurpose(StrEnum):
    REGISTER_EMAIL = "register_email"
    REGISTER_PHONE = "register_phone"
    LOGIN_SMS = "login_sms"
    PASSWORD_RESET = "password_reset"
    CHANGE_EMAIL = "change_email"
    CHANGE_PHONE = "change_phone"
    # The second proof asked of a sign-in from an unbound device.
    LOGIN_EMAIL = "login_email"
    # The same, by SMS, for an account without an email address.
    LOGIN_DEVICE_SMS = "login_device_sms"


class OneTimeCode(Base):
    """At most one live code per (purpose, subject); a resend replaces it."""

    __tablename__ = "one_time_codes"
    __table_args__ = (UniqueConstraint("purpose", "subject"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    purpose: Mapped[str] = mapped_column(String(32))
    # What the code proves something about: a flow id, a user id or a blind index.
    subject: Mapped[str] = mapped_column(
        String(128), info=identifies_user("a user id or an email/phone blind index")
    )
    # The account the code was issued for; checked on use, so a code keyed by an
    # address never works for whoever holds that address later. NULL only where
    # no account exists yet: registration codes (bound to their flow, the
    # subject) and codes asked for an address nobody holds (they fit no account).
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    # Blind index of where the code went, so a change flow proves that address.
    destination_index: Mapped[str] = mapped_column(String(64))
    # A new email or phone waiting for proof, sealed with the user's data key.
    pending_value_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    sent_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    failed_attempts: Mapped[int] = mapped_column(default=0)
    consumed_at: Mapped[datetime | None]
