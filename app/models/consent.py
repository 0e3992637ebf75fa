"""Privacy policy versions and the consent ledger."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Decision(StrEnum):
    GRANTED = "granted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class Channel(StrEnum):
    REGISTRATION = "registration"
    LOGIN = "login"
    OAUTH = "oauth"
    SETTINGS = "settings"
    API = "api"
    # A verified guardian deciding for a child's account (PIPL Art. 31).
    GUARDIAN = "guardian"


class PolicyVersion(Base):
    """A published privacy policy. Never edited: a change is a new version."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    effective_at: Mapped[datetime] = mapped_column(index=True)
    published_at: Mapped[datetime]
    published_by: Mapped[str] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    material: Mapped[bool]
    changes: Mapped[str] = mapped_column(Text)
    # Purposes a material change asks about again; empty means all of them.
    affected_purposes: Mapped[list[str]] = mapped_column(JSON)


class ConsentRecord(Base):
    """One decision about one purpose. Append-only: on PostgreSQL a trigger
    refuses UPDATE (but setting ``seal`` once), DELETE and TRUNCATE. Each record
    links to the account's previous one (``prev_hash``) by a keyed hash."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    decision: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(32))
    policy_sha256: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    ip_prefix: Mapped[str] = mapped_column(String(64))
    user_agent_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # HMAC-SHA256 under the chain key over the fields and prev_hash.
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The seal that took this record into the ledger's chain; NULL until sealed.
    seal: Mapped[int | None] = mapped_column(Integer, index=True)
