"""The audit trail: append-only, each event sealed with the hash of the one before."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import AuditEvent, ChainHead

AUDIT_CHAIN = "audit"
GENESIS_HASH = "0" * 64

# Keys that would put secrets or personal data into the trail; refused outright.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"password", "code", "token", "email", "phone", "full_name", "name", "identifier"}
)


def event_hash(event: AuditEvent) -> str:
    canonical = json.dumps(
        {
            "occurred_at": event.occurred_at.isoformat(),
            "event_type": event.event_type,
            "outcome": event.outcome,
            "user_id": event.user_id,
            "actor_id": event.actor_id,
            "ip_prefix": event.ip_prefix,
            "details": event.details,
            "prev_hash": event.prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


class AuditTrail:
    def __init__(self, db: DbSession, clock: Clock) -> None:
        self._db = db
        self._clock = clock

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
        # Locking the chain head serialises appends, so the chain never forks.
        head = self._db.execute(
            select(ChainHead).where(ChainHead.name == AUDIT_CHAIN).with_for_update()
        ).scalar_one()
        event = AuditEvent(
            occurred_at=self._clock.now().replace(microsecond=0),
            event_type=event_type,
            outcome=outcome,
            user_id=user_id,
            actor_id=actor_id,
            ip_prefix=ip_prefix,
            details=details,
            prev_hash=head.last_hash,
        )
        event.hash = event_hash(event)
        head.last_hash = event.hash
        self._db.add(event)
        self._db.flush()
        return event

    def events(self) -> Iterator[AuditEvent]:
        yield from self._db.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()

    def verify(self) -> ChainBreak | None:
        """The first event that does not fit the chain, or None when it is whole."""
        expected_prev = GENESIS_HASH
        for event in self.events():
            if event.prev_hash != expected_prev:
                return ChainBreak(event.id, "does not follow the event before it")
            if event_hash(event) != event.hash:
                return ChainBreak(event.id, "its content does not match its hash")
            expected_prev = event.hash
        head = self._db.get(ChainHead, AUDIT_CHAIN)
        if head is not None and head.last_hash != expected_prev:
            return ChainBreak(-1, "events are missing at the end of the chain")
        return None
