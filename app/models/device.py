"""Devices a user signs in from.

A device record exists only while the user grants the security purpose:
withdrawing it deletes the user's records. Revoking one device erases its
identifiers (the browser's device-cookie hash, the app key's thumbprint and
public key, the bound passkey); its label and dates stay visible to the user
until retention removes the row."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class BindingMethod(StrEnum):
    NONE = "none"  # recognised by its device cookie only
    WEBAUTHN = "webauthn"  # holds a platform passkey of the user's
    APP_KEY = "app_key"  # an app's key pair in secure hardware, proven by DPoP


class TrustState(StrEnum):
    RECOGNISED = "recognised"
    BOUND = "bound"
    REVOKED = "revoked"


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    binding_method: Mapped[str] = mapped_column(String(16))
    trust_state: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime]
    # The last sign-in or binding on it (not every request: that would make
    # every authenticated read a write to a second table).
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Keyed hash of the random device cookie a browser carries.
    cookie_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    # RFC 7638 thumbprint of an app key; its DPoP proofs must carry this key.
    key_thumbprint: Mapped[str | None] = mapped_column(String(64), index=True)
    # none_as_null: an erased key is SQL NULL, not the JSON text 'null'.
    public_jwk: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))
    credential_ref: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("webauthn_credentials.id", ondelete="SET NULL")
    )
