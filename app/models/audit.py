"""Append-only audit trail with keyed hashes, the seals that chain both ledgers
(audit trail and consent records) in batches, and per-chain heads. No secrets
and no clear personal data."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base
from .identifying import identifies_user


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime]
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor_id: Mapped[str | None] = mapped_column(String(36))
    ip_prefix: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, object]] = mapped_column(JSON)
    # HMAC-SHA256 under the chain key over the fields and the id.
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The seal that took this event into the chain; NULL until the sealer runs.
    seal: Mapped[int | None] = mapped_column(Integer, index=True)


class ChainHead(Base):
    """The newest hash of one chain (today: one consent chain per account, named
    ``consent:<user id>``) and how many records it holds, under a keyed MAC. Its
    row lock serialises appends to that chain only."""

    __tablename__ = "chain_heads"

    name: Mapped[str] = mapped_column(
        String(64), primary_key=True, info=identifies_user("consent:<user id> heads a user's chain")
    )
    last_hash: Mapped[str] = mapped_column(String(64))
    records: Mapped[int] = mapped_column(Integer)
    # HMAC-SHA256 under the chain key over the name, records and last_hash.
    mac: Mapped[str] = mapped_column(String(64))


class ChainSeal(Base):
    """A batch of rows of one ledger taken into its chain: the ids it covers and
    an HMAC over their hashes and the seal before it. Append-only."""

    __tablename__ = "chain_seals"

    chain: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sealed_at: Mapped[datetime]
    row_ids: Mapped[list[int]] = mapped_column(JSON)
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))
