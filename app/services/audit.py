"""The audit trail: append-only; each event carries a keyed hash over its fields
and its id, and is sealed into the audit chain in batches (app/services/chain.py),
so recording an event takes no lock shared with other requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import AuditEvent
from app.services.chain import ChainKeeper, Ledger, Verdict
from app.services.checkpoints import CheckpointStore
from app.services.device_details import NO_ACCOUNT, keeps_device_details

AUDIT_CHAIN = "audit"
# Keys that would put secrets or personal data into the trail; refused outright.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"password", "code", "token", "email", "phone", "full_name", "name", "identifier"}
)


def sealed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "occurred_at": event.occurred_at.isoformat(),
        "event_type": event.event_type,
        "outcome": event.outcome,
        "user_id": event.user_id,
        "actor_id": event.actor_id,
        "ip_prefix": event.ip_prefix,
        "details": event.details,
    }


def hashed_fields(event: AuditEvent) -> dict[str, Any]:
    # The id is covered too: a copied event under a new id does not verify.
    return {**sealed_fields(event), "id": event.id}


AUDIT_LEDGER = Ledger(AUDIT_CHAIN, AuditEvent, "event", "events", hashed_fields)


class AuditTrail:
    def __init__(
        self, db: DbSession, clock: Clock, chain_key: bytes, checkpoints: CheckpointStore
    ) -> None:
        self._db = db
        self._clock = clock
        self._key, self._checkpoints = chain_key, checkpoints

    def record(
        self,
        event_type: str,
        *,
        outcome: str = "success",
        user_id: str | None = None,
        actor_id: str | None = None,
        ip_prefix: str | None = None,
        **details: Any,
    ) -> AuditEvent:
        leaked = FORBIDDEN_DETAIL_KEYS & details.keys()
        if leaked:
            raise ValueError(f"audit details may not carry {sorted(leaked)}")
        # The network prefix is the requester's: the actor's when an operator
        # acts, else the account's. Kept only while that account allows it.
        requester = actor_id or user_id
        if ip_prefix is not None:
            # Asked about nobody too (a failed sign-in at an unknown address):
            # the same work either way, so its time does not tell who exists.
            allowed = keeps_device_details(self._db, requester or NO_ACCOUNT)
            if requester and not allowed:
                ip_prefix = None
        event = AuditEvent(
            id=self._next_id(),
            occurred_at=self._clock.now().replace(microsecond=0),
            event_type=event_type,
            outcome=outcome,
            user_id=user_id,
            actor_id=actor_id,
            ip_prefix=ip_prefix,
            details=details,
        )
        event.hash = AUDIT_LEDGER.row_hash(self._key, event)
        self._db.add(event)
        self._db.flush()
        return event

    def _next_id(self) -> int:
        """The id before the insert, so the hash can cover it. A PostgreSQL
        sequence hands ids out without a lock; SQLite already holds its write
        lock (BEGIN IMMEDIATE), so the next id is the largest one plus one."""
        if self._db.get_bind().dialect.name == "postgresql":
            query = text("SELECT nextval(pg_get_serial_sequence('audit_events', 'id'))")
            return int(self._db.execute(query).scalar_one())
        return int(
            self._db.execute(select(func.coalesce(func.max(AuditEvent.id), 0) + 1)).scalar_one()
        )

    def events(self) -> Iterator[AuditEvent]:
        yield from self._db.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()

    def chain(self) -> ChainKeeper:
        """Seals and verifies the trail."""
        return ChainKeeper(self._db, AUDIT_LEDGER, self._key, self._checkpoints, self._clock)

    def verify(self) -> Verdict:
        return self.chain().verify()
