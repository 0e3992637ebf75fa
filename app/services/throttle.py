"""Failed sign-ins, counted in the database, with exponential back-off.

Following NIST SP 800-63B-4 §3.2.2, a stranger must not be able to deny the
owner, so password failures are counted in two kinds of bucket:

- per (identifier, source): the source is the recognised device the attempt
  proves (its device cookie or key) or else the client's network (a keyed hash
  of its /24 or /64). Guesses from one place slow down that place only;
- per identifier, account-wide, with more free attempts: it bounds guesses
  spread over many networks, and applies only to attempts from a network, so
  the owner's recognised device is never held up by it. After
  ``login_account_max_failures`` in a row it takes no more guesses for a day
  (NIST: at most 100 consecutive failures per account; two identifiers).

Second-factor guesses (TOTP, recovery and email codes) are counted the same
way, per (account, source) and account-wide from networks: a 6-digit code
gets a bounded number of guesses, the owner's recognised device is never held
up, and elsewhere a password reset (which nobody can block) clears the count.

A one-time code (SMS sign-in, reset) is bound to the flow that asked for it,
has its own few tries, and is never refused because of password guesses; a
proof of ownership ends the run of failures. Passkey assertions cannot be
guessed: a failed one is counted per (credential, source) after the signature
check, so junk never stands in the way of a valid signature.

A password or second-factor attempt is counted *before* it is checked, under
a row lock, so parallel guesses cannot slip past the count; every bucket an attempt
touches is locked in key order, so two requests never deadlock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import insert_if_absent
from app.errors import too_many_attempts
from app.models import LoginThrottle, User

# Failures older than this are forgotten.
FAILURE_MEMORY = timedelta(hours=24)
TOO_MANY = (
    "Too many failed sign-ins. Try again later, sign in from a device you have used "
    "before, sign in with a code, or reset your password."
)


@dataclass(frozen=True)
class ThrottleRules:
    free_attempts: int
    max_delay_seconds: int
    # After this many failures in a row the bucket stops taking attempts until
    # its failures are forgotten (or the owner proves it another way).
    max_failures: int | None = None

    def delay_after(self, failures: int) -> timedelta:
        if self.max_failures is not None and failures >= self.max_failures:
            return FAILURE_MEMORY + timedelta(seconds=1)
        excess = failures - self.free_attempts
        if excess < 0:
            return timedelta(0)
        return timedelta(seconds=min(2**excess, self.max_delay_seconds))


@dataclass(frozen=True)
class Bucket:
    key: str
    subject: str  # the blind index or user id the bucket is about
    rules: ThrottleRules


def identifier_key(index: str) -> str:
    """Password guesses at one identifier (email or phone) from anywhere: keyed
    by identifier, not account, so an email's failures do not show on the phone."""
    return f"id:{index}"


def _hashed(kind: str, subject: str, source: str) -> str:
    # Hashed to fit the key column.
    return f"{kind}:" + hashlib.sha256(f"{subject}|{source}".encode()).hexdigest()


def source_key(index: str, source: str) -> str:
    """Password guesses at one identifier from one source (``net:<hash>`` or
    ``device:<id>``)."""
    return _hashed("src", index, source)


def network(source_hash: str) -> str:
    return f"net:{source_hash}"


def device(device_id: str) -> str:
    return f"device:{device_id}"


def account_key(user_id: str) -> str:
    """Checks of a signed-in user's own password (changes, step-up)."""
    return f"user:{user_id}"


def second_factor_key(user_id: str) -> str:
    """Second-factor guesses at one account from any network."""
    return f"mfa:{user_id}"


def second_factor_source_key(user_id: str, source: str) -> str:
    """Second-factor guesses at one account from one source."""
    return _hashed("mfa-src", user_id, source)


def passkey_key(credential_ref: str, source: str) -> str:
    """Failed assertions naming one passkey from one source."""
    return _hashed("pk-src", credential_ref, source)


def signed_in(session_id: str) -> str:
    """A session that passed every factor (step-up): as strong a source as a
    recognised device."""
    return f"session:{session_id}"


def is_device(source: str) -> bool:
    """A source that proved something (a recognised device, a signed-in
    session): the account-wide buckets do not hold it up."""
    return source.startswith(("device:", "session:"))


def _indexes(user: User) -> list[str]:
    """The account's identifiers' blind indexes (it may have no email)."""
    return [index for index in (user.email_index, user.phone_index) if index is not None]


def keys_of(user: User) -> list[str]:
    """The fixed-name buckets of an account (source buckets are found by subject)."""
    return [
        *(identifier_key(index) for index in _indexes(user)),
        account_key(user.id),
        second_factor_key(user.id),
    ]


def rows_of(user: User) -> ColumnElement[bool]:
    """Every throttle row about this account, for cancellation and export."""
    subjects = [*_indexes(user), user.id]
    return or_(LoginThrottle.subject.in_(subjects), LoginThrottle.key.in_(keys_of(user)))


class AccountThrottle:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        rules: ThrottleRules,
        account_rules: ThrottleRules | None = None,
    ) -> None:
        self._db, self._clock, self._rules = db, clock, rules
        self._account_rules = account_rules or rules

    # -- password sign-in ---------------------------------------------------------

    def _spread(self, own: str, account_wide: str, subject: str, source: str) -> list[Bucket]:
        """Where a guess from ``source`` counts: its source's bucket, and the
        account-wide one unless a recognised device made the attempt."""
        buckets = [Bucket(own, subject, self._rules)]
        if not is_device(source):
            buckets.append(Bucket(account_wide, subject, self._account_rules))
        return buckets

    def password_buckets(self, index: str, source: str) -> list[Bucket]:
        return self._spread(source_key(index, source), identifier_key(index), index, source)

    def reserve_password_attempt(self, index: str, source: str) -> None:
        self.reserve(self.password_buckets(index, source))

    def ownership_proven(self, user: User, source: str) -> None:
        """The owner proved it (right password, SMS code): the run of failures
        ends, account-wide and from this source, for both identifiers."""
        keys = [identifier_key(index) for index in _indexes(user)]
        keys += [source_key(index, source) for index in _indexes(user)]
        self.clear(*keys)

    def forget_account(self, user: User) -> None:
        """A new password makes every earlier guess moot: all buckets go."""
        keys = self._db.execute(
            select(LoginThrottle.key).where(rows_of(user)).order_by(LoginThrottle.key)
        ).scalars()
        self.clear(*keys)

    def forget_identifier(self, index: str) -> None:
        """An email or phone left its account: every count of guesses at it goes.

        Deleted rather than moved to the new address: the guesses were aimed at
        an address that no longer leads to the account, the new address starts
        unknown to whoever made them, and per-source keys are hashes that cannot
        be re-keyed. Only the signed-in owner, with the password and a code sent
        to the new address, can make this happen, so no stranger can use it to
        reset a count. Kept, the rows would be about nobody: missing from the
        account's export and cancellation, and shown to (and holding back) the
        next person who registers the address."""
        keys = self._db.execute(
            select(LoginThrottle.key)
            .where(or_(LoginThrottle.subject == index, LoginThrottle.key == identifier_key(index)))
            .order_by(LoginThrottle.key)
            # Locked in key order, as reserve() does, so the two never deadlock.
            .with_for_update()
        ).scalars()
        self.clear(*keys)

    # -- second factors and passkeys ---------------------------------------------

    def reserve_second_factor(self, user_id: str, source: str) -> None:
        """Counted before the check, as passwords are."""
        own = second_factor_source_key(user_id, source)
        self.reserve(self._spread(own, second_factor_key(user_id), user_id, source))

    def second_factor_proven(self, user_id: str, source: str) -> None:
        self.clear(second_factor_source_key(user_id, source), second_factor_key(user_id))

    def passkey_failed(self, user_id: str, credential_ref: str, source: str) -> None:
        """Counts a failed assertion after its check (it cannot be guessed, so
        nothing is held back before); raises while this source backs off."""
        self.reserve([Bucket(passkey_key(credential_ref, source), user_id, self._rules)])

    def passkey_proven(self, credential_ref: str, source: str) -> None:
        self.clear(passkey_key(credential_ref, source))

    # -- single buckets (own password checks) -----------------------------------

    def reserve_attempt(self, key: str, subject: str | None = None) -> None:
        """Count one attempt now, or refuse while the bucket is backing off.
        Keys look like ``kind:subject``."""
        self.reserve([Bucket(key, subject or key.partition(":")[2], self._rules)])

    def reserve(self, buckets: list[Bucket]) -> None:
        """One attempt in every bucket, or none if any of them is backing off."""
        now = self._clock.now()
        rows = [(self._locked_row(b, now), b) for b in sorted(buckets, key=lambda b: b.key)]
        for row, _ in rows:
            if now - row.updated_at > FAILURE_MEMORY:
                row.failures = 0
        waiting = [row.next_attempt_at - now for row, _ in rows if row.next_attempt_at > now]
        if waiting:
            self._db.flush()
            raise too_many_attempts(int(max(waiting).total_seconds()) + 1, TOO_MANY)
        for row, bucket in rows:
            row.failures += 1
            row.next_attempt_at = now + bucket.rules.delay_after(row.failures)
            row.updated_at = now
        self._db.flush()

    def clear(self, *keys: str) -> None:
        if keys:
            self._db.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(sorted(keys))))
            self._db.flush()

    def _locked_row(self, bucket: Bucket, now: datetime) -> LoginThrottle:
        values = {
            "key": bucket.key,
            "subject": bucket.subject,
            "failures": 0,
            "next_attempt_at": now,
            "updated_at": now,
        }
        query = (
            select(LoginThrottle)
            .where(LoginThrottle.key == bucket.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        # A success may delete the row while we wait for its lock; then it is
        # simply created again.
        for _ in range(5):
            insert_if_absent(self._db, LoginThrottle, values, ["key"])
            row = self._db.execute(query).scalar_one_or_none()
            if row is not None:
                return row
        raise RuntimeError("throttle row keeps disappearing")  # pragma: no cover
