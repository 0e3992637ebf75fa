"""Per-account sign-in throttle state, shared by every worker through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class LoginThrottle(Base):
    __tablename__ = "login_throttles"

    # What is counted: an identifier typed (its blind index) or an account,
    # possibly per source; see app/services/throttle.py for the key shapes.
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    # The blind index or user id the key is about, so every row of an account
    # can be found (cancellation, export) even when the key is a hash.
    subject: Mapped[str | None] = mapped_column(String(80), index=True)
    failures: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
