"""Per-account sign-in throttle state, shared by every worker through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .identifying import identifies_user


class LoginThrottle(Base):
    __tablename__ = "login_throttles"

    # What is counted: an identifier typed (its blind index) or an account,
    # possibly per source; see app/services/throttle.py for the key shapes.
    key: Mapped[str] = mapped_column(
        String(80), primary_key=True, info=identifies_user("made of a user id or blind index")
    )
    # The blind index or user id the key is about, so every row of an account
    # can be found (cancellation, export) even when the key is a hash.
    subject: Mapped[str | None] = mapped_column(
        String(80), index=True, info=identifies_user("a user id or blind index")
    )
    failures: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
