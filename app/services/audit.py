"""The audit trail: append-only, each event sealed with the hash of the one before."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import AuditEvent
from app.services.chain import ChainBreak, HashChain

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


class AuditTrail:
    def __init__(self, db: DbSession, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._chain = HashChain(db, AUDIT_CHAIN, sealed_fields)

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
        event = AuditEvent(
            occurred_at=self._clock.now().replace(microsecond=0),
            event_type=event_type,
            outcome=outcome,
            user_id=user_id,
            actor_id=actor_id,
            ip_prefix=ip_prefix,
            details=details,
        )
        self._chain.seal(event)
        return event

    def events(self) -> Iterator[AuditEvent]:
        yield from self._db.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()

    def verify(self) -> ChainBreak | None:
        """The first event that does not fit the chain, or None when it is whole."""
        return self._chain.verify(self.events())
