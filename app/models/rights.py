"""Data-subject requests and the legal archive that outlives an account."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, LargeBinary, String, Text
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, new_id


class RequestKind(StrEnum):
    ACCESS_EXPORT = "access_export"
    RECTIFICATION = "rectification"
    DELETION = "deletion"
    CONSENT_WITHDRAWAL = "consent_withdrawal"
    ACCOUNT_CANCELLATION = "account_cancellation"


class RequestStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    REFUSED = "refused"


class DataSubjectRequest(Base):
    """One request about one's own data. The user id is kept as a plain string
    (no foreign key) so the record of how we answered survives cancellation."""

    __tablename__ = "data_subject_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    received_at: Mapped[datetime]
    due_at: Mapped[datetime] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    handled_by: Mapped[str | None] = mapped_column(String(36))
    # What the request is about, without personal data (e.g. a purpose code).
    details: Mapped[dict[str, object]] = mapped_column(JSON)

    @hybrid_method
    def overdue_at(self, now: datetime) -> Any:
        """Still open after its due date: the one rule, for a row (a bool) and
        in a query (a SQL condition, ``DataSubjectRequest.overdue_at(now)``)."""
        return (self.status == RequestStatus.OPEN) & (self.due_at < now)


class LegalArchiveRecord(Base):
    """What the law makes us keep after an account ends: sealed under its own
    data key, linked to nobody but through a keyed pseudonym, purged at
    ``retain_until``."""

    __tablename__ = "legal_archive_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subject_pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    category: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    retain_until: Mapped[datetime] = mapped_column(index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    payload_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
