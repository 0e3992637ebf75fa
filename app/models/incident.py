"""Security incidents and who was told about them (the notices go through the
outbox, app/models/outbox.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class Incident(Base):
    """A personal-information security incident and the notice users get about it:
    the facts, the possible impact, the measures taken, advice and remedies."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(200))
    facts: Mapped[str] = mapped_column(Text)
    impact: Mapped[str] = mapped_column(Text)
    measures: Mapped[str] = mapped_column(Text)
    advice: Mapped[str] = mapped_column(Text)
    remedies: Mapped[str] = mapped_column(Text)
    occurred_from: Mapped[datetime | None]
    occurred_to: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(36))
    # When the notices were queued (and became visible to the users).
    notified_at: Mapped[datetime | None]


class IncidentRecipient(Base):
    """One affected user of one incident: what GET /api/v1/me/notices reads."""

    __tablename__ = "incident_recipients"

    incident_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("incidents.id"), primary_key=True
    )
    # No foreign key to users: the record that a user was told outlives a
    # cancelled account (as data_subject_requests does), with the random id only.
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
