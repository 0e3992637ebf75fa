"""Per-account sign-in throttle with exponential back-off.

An attempt is counted *before* the password is checked, under a row lock, so
parallel guesses cannot slip past the count. The delay is capped, and any
successful proof of ownership (password, SMS code, reset) clears it, so the
real owner is never locked out for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.errors import too_many_attempts
from app.models import LoginThrottle

# Failures older than this are forgotten.
FAILURE_MEMORY = timedelta(hours=24)


@dataclass(frozen=True)
class ThrottleRules:
    free_attempts: int
    max_delay_seconds: int

    def delay_after(self, failures: int) -> timedelta:
        excess = failures - self.free_attempts
        if excess < 0:
            return timedelta(0)
        return timedelta(seconds=min(2**excess, self.max_delay_seconds))


class AccountThrottle:
    def __init__(self, db: DbSession, clock: Clock, rules: ThrottleRules) -> None:
        self._db, self._clock, self._rules = db, clock, rules

    def _locked_row(self, key: str, now: datetime) -> LoginThrottle:
        insert = pg_insert if self._db.get_bind().dialect.name == "postgresql" else sqlite_insert
        self._db.execute(
            insert(LoginThrottle)
            .values(key=key, failures=0, next_attempt_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        return self._db.execute(
            select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
        ).scalar_one()

    def reserve_attempt(self, key: str) -> None:
        """Count one attempt now, or refuse while the account is backing off."""
        now = self._clock.now()
        row = self._locked_row(key, now)
        if now - row.updated_at > FAILURE_MEMORY:
            row.failures = 0
        if row.next_attempt_at > now:
            wait = int((row.next_attempt_at - now).total_seconds()) + 1
            raise too_many_attempts(
                wait,
                "Too many failed sign-ins for this account. Try again later, or sign in "
                "with a code or reset your password.",
            )
        row.failures += 1
        row.next_attempt_at = now + self._rules.delay_after(row.failures)
        row.updated_at = now
        self._db.flush()

    def clear(self, key: str) -> None:
        row = self._db.get(LoginThrottle, key)
        if row is not None:
            self._db.delete(row)
            self._db.flush()
