"""Security incidents, who was told about them, and the outbox that tells them.

The outbox holds no address and no text: the address is decrypted from the
user's record and the text rendered from the incident when the message is sent,
so a queued message is never a second copy of personal data.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class OutboxChannel(StrEnum):
    EMAIL = "email"
    PUSH = "push"


class OutboxKind(StrEnum):
    INCIDENT = "incident"


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


class OutboxMessage(Base):
    """A message to send to a user, retried with back-off until sent or abandoned."""

    __tablename__ = "outbox_messages"
    # Queuing the same message twice is impossible, so a retried request cannot double it.
    __table_args__ = (UniqueConstraint("kind", "reference_id", "user_id", "channel"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # No foreign key: a cancelled user's message stays, marked abandoned, so the
    # incident's counts still add up.
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    # The id of what the message is about (an incident); the text is rendered from it.
    reference_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    sent_at: Mapped[datetime | None]
    # The exception class only: an error's text can quote the recipient.
    last_error_class: Mapped[str | None] = mapped_column(String(64))
    abandoned_at: Mapped[datetime | None]
