"""Per-account sign-in throttle with exponential back-off.

An attempt is counted *before* the password is checked, under a row lock, so
parallel guesses cannot slip past the count. The delay is capped, and any
successful proof of ownership (password, SMS code, reset) clears it, so the
real owner is never locked out for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import insert_if_absent
from app.errors import too_many_attempts
from app.models import LoginThrottle, User

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


def identifier_key(index: str) -> str:
    """Sign-in attempts count per identifier typed (email or phone): keyed by
    account, an email's failures would show on the phone and link the two."""
    return f"id:{index}"


def account_key(user_id: str) -> str:
    """Checks of a signed-in user's own password (changes, step-up)."""
    return f"user:{user_id}"


def second_factor_key(user_id: str) -> str:
    return f"mfa:{user_id}"


def passkey_key(user_id: str) -> str:
    """Failed passkey assertions for a known credential: their own budget, so
    junk assertions cannot lock the account's password checks."""
    return f"passkey:{user_id}"


def keys_of(user: User) -> list[str]:
    """Every key that a proof of ownership clears."""
    return [
        identifier_key(user.email_index),
        identifier_key(user.phone_index),
        account_key(user.id),
    ]


class AccountThrottle:
    def __init__(self, db: DbSession, clock: Clock, rules: ThrottleRules) -> None:
        self._db, self._clock, self._rules = db, clock, rules

    def _locked_row(self, key: str, now: datetime) -> LoginThrottle:
        insert_if_absent(
            self._db,
            LoginThrottle,
            {"key": key, "failures": 0, "next_attempt_at": now, "updated_at": now},
            ["key"],
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

    def clear(self, *keys: str) -> None:
        self._db.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))
        self._db.flush()
