"""A registration in progress: what was typed, waiting for both codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class RegistrationFlow(Base):
    __tablename__ = "registration_flows"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    email_index: Mapped[str] = mapped_column(String(64), index=True)
    phone_index: Mapped[str] = mapped_column(String(64), index=True)
    # The flow's own data key, wrapped; the typed data sealed under it.
    key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    payload_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    password_hash: Mapped[str] = mapped_column(String(255))
    # True when an account already holds the address: the flow can never finish,
    # but answers exactly like one that can.
    email_taken: Mapped[bool] = mapped_column(default=False)
    phone_taken: Mapped[bool] = mapped_column(default=False)
    email_verified_at: Mapped[datetime | None]
    phone_verified_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # Consent decisions made while registering: {"policy_version", "decisions": [...]}.
    consent: Mapped[dict[str, object] | None] = mapped_column(JSON)
