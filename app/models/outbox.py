"""The outbox: every message the service sends (codes, security notices, incident
notices), written in the transaction of the change that causes it and sent by a
worker (app/worker.py), retried with back-off until sent or abandoned.

A one-off message (a code, a notice) is stored rendered, sealed under a data key
of its own that is wrapped by the key-encryption key: the address and the code
are never in clear here. Payload and key are erased once the message is sent or
abandoned. An incident notice holds no payload: it is rendered from the incident
and the user's record at send time. Every row but a registration code's names
the account it concerns (user_id).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, LargeBinary, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id

PENDING = "sent_at IS NULL AND abandoned_at IS NULL"


class OutboxChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    HTTP = "http"  # a form POSTed to another server (back-channel logout)


class OutboxKind(StrEnum):
    INCIDENT = "incident"  # rendered at send time from reference_id
    SEALED = "sealed"  # rendered when queued; sealed in payload_encrypted


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        # Queuing the same incident notice twice is impossible, so a retried request
        # cannot double it (sealed messages have no reference: NULLs never collide).
        UniqueConstraint("kind", "reference_id", "user_id", "channel"),
        # Workers look for due messages among the pending ones only; finished
        # rows are kept for a year and must not be walked at every claim.
        Index(
            "ix_outbox_messages_due",
            "next_attempt_at",
            postgresql_where=text(PENDING),
            sqlite_where=text(PENDING),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The account the message concerns (every message but a registration's code,
    # sent before the account exists): cancellation abandons and erases its
    # pending messages by it, the export lists them by it. No foreign key: a
    # cancelled user's messages stay, marked abandoned, so an incident's counts
    # still add up.
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    # The id of what an incident notice is about; the text is rendered from it.
    reference_id: Mapped[str | None] = mapped_column(String(36))
    # Sealed messages: the KEK id, the message's data key wrapped by it, and the
    # message (recipient and text) under that data key. NULL once finished.
    key_id: Mapped[str | None] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a worker may take it: due now, after a back-off, or when the claim of
    # a worker that died mid-send runs out.
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # The exception class only: an error's text can quote the recipient.
    last_error_class: Mapped[str | None] = mapped_column(String(64))
    abandoned_at: Mapped[datetime | None]
