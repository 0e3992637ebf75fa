"""Spent second-factor tickets: a ticket finishes one sign-in, once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class SpentTicket(Base):
    __tablename__ = "spent_tickets"

    # The ticket's random id; the primary key settles two finishes at once.
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    # After this the ticket is refused by its signature check anyway.
    expires_at: Mapped[datetime] = mapped_column(index=True)
