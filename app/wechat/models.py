"""Identities from outside providers linked to an account (WeChat for now).

The provider's ids are personal data: sealed under the account's data key and
found by blind index, like the email and the phone. One row per (app, openid);
``unionid_index`` ties the rows of one person across the platform's WeChat
apps (website, official account, mobile app) to one account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, new_id


class LinkedIdentity(Base):
    __tablename__ = "linked_identities"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(16))  # "wechat"
    # The platform's own app id at the provider (not personal data).
    app_id: Mapped[str] = mapped_column(String(64))
    # Blind index of (provider, app id, openid): one account per openid.
    openid_index: Mapped[str] = mapped_column(String(64), unique=True)
    # Blind index of (provider, unionid), when the provider gave one.
    unionid_index: Mapped[str | None] = mapped_column(String(64), index=True)
    openid_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    unionid_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Kept only with the wechat_login purpose granted and PRIVID_WECHAT_KEEP_NICKNAME.
    nickname_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
