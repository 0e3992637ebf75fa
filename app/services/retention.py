"""Purging what has outlived its purpose. Idempotent: run it from cron as often
as you like; a second run finds nothing more to delete."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import affected_rows
from app.models import (
    Device,
    LegalArchiveRecord,
    LoginThrottle,
    OneTimeCode,
    OutboxMessage,
    RegistrationFlow,
    Session,
    SpentTicket,
    WebAuthnChallenge,
)
from app.services.throttle import FAILURE_MEMORY

# Ended sessions stay listed for a while so people can see what happened.
ENDED_SESSION_KEPT = timedelta(days=30)
# Delivered or abandoned messages are kept as proof of notification, then go.
FINISHED_MESSAGE_KEPT = timedelta(days=365)
# A capability's own purge of its tables: rows deleted per table, given ``now``.
Purge = Callable[[DbSession, datetime], dict[str, int]]


@dataclass(frozen=True)
class RetentionRules:
    revoked_device_days: int
    idle_device_days: int


class RetentionService:
    def __init__(
        self, db: DbSession, clock: Clock, rules: RetentionRules, purges: Sequence[Purge] = ()
    ) -> None:
        self._db, self._clock, self._rules, self._purges = db, clock, rules, purges

    def run(self) -> dict[str, int]:
        now = self._clock.now()
        counts = {
            "one_time_codes": self._delete(OneTimeCode, OneTimeCode.expires_at < now),
            "registration_flows": self._delete(RegistrationFlow, RegistrationFlow.expires_at < now),
            "sessions": self._delete(
                Session,
                or_(
                    Session.expires_at < now - ENDED_SESSION_KEPT,
                    Session.revoked_at < now - ENDED_SESSION_KEPT,
                ),
            ),
            "login_throttles": self._delete(
                LoginThrottle, LoginThrottle.updated_at < now - FAILURE_MEMORY
            ),
            "outbox_messages": self._delete(
                OutboxMessage,
                or_(
                    OutboxMessage.sent_at < now - FINISHED_MESSAGE_KEPT,
                    OutboxMessage.abandoned_at < now - FINISHED_MESSAGE_KEPT,
                ),
            ),
            "spent_tickets": self._delete(SpentTicket, SpentTicket.expires_at < now),
            "webauthn_challenges": self._delete(
                WebAuthnChallenge, WebAuthnChallenge.expires_at < now
            ),
            # Devices outlive sessions: the next sign-in from one should not be "new".
            "devices": self._delete(
                Device,
                or_(
                    Device.revoked_at < now - timedelta(days=self._rules.revoked_device_days),
                    Device.last_seen_at < now - timedelta(days=self._rules.idle_device_days),
                ),
            ),
            "legal_archive_records": self._delete(
                LegalArchiveRecord, LegalArchiveRecord.retain_until < now
            ),
        }
        for purge in self._purges:
            counts.update(purge(self._db, now))
        return counts

    def _delete(self, model: type, condition: object) -> int:
        result = self._db.execute(delete(model).where(condition))  # type: ignore[arg-type]
        return affected_rows(result)
