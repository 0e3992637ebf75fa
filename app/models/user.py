"""Accounts. Personal data is stored only encrypted, looked up by blind index."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class Role(StrEnum):
    USER = "user"
    OPERATOR = "operator"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER, server_default=Role.USER)
    # Email and password are optional (an account made through WeChat has
    # neither until the person adds them); app/services/ways_in.py keeps at
    # least one way to sign in. The phone stays required and verified.
    email_index: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone_index: Mapped[str] = mapped_column(String(64), unique=True)
    email_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    full_name_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime | None]
    email_verified_at: Mapped[datetime | None]
    phone_verified_at: Mapped[datetime]

    @property
    def is_active(self) -> bool:
        return self.status == UserStatus.ACTIVE


class UserDataKey(Base):
    """The user's data key, wrapped by a key-encryption key. Deleting this row
    crypto-shreds every encrypted field of the user."""

    __tablename__ = "user_data_keys"

    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
