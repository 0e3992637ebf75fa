"""Server-side sessions: only the token's hash is stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    transport: Mapped[str] = mapped_column(String(16))  # cookie | bearer
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    auth_time: Mapped[datetime]
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON)
    ip_prefix: Mapped[str] = mapped_column(String(64))
    device_summary: Mapped[str] = mapped_column(String(120))
    # Set while the user still owes consent decisions: only the consent step works.
    consent_pending: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The device it was opened on (kept only with the security purpose granted).
    device_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    # RFC 9449: when set, the token is sender-constrained to this key's holder.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
