"""Issuing and checking one-time codes: keyed hash, expiry, tries, single use, cooldown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import insert_if_absent
from app.errors import invalid_code, too_many_attempts
from app.models import OneTimeCode
from app.models.base import new_id
from app.security.tokens import CodeHasher, hash_token, new_code, new_token


def new_flow() -> str:
    """A handle for one code request, returned to the requester: the code is
    checked against the flow, so only whoever asked for it can spend its tries."""
    return new_token()


def flow_subject(flow: str) -> str:
    # Stored hashed, like a session token: a database leak must not let anyone
    # guess at a live code.
    return f"flow:{hash_token(flow)}"


@dataclass(frozen=True)
class CodeRules:
    ttl_seconds: int
    max_attempts: int
    resend_cooldown_seconds: int


class CodeService:
    def __init__(self, db: DbSession, hasher: CodeHasher, clock: Clock, rules: CodeRules):
        self._db, self._hasher, self._clock, self._rules = db, hasher, clock, rules

    @property
    def ttl_minutes(self) -> int:
        return self._rules.ttl_seconds // 60

    def _find(self, purpose: str, subject: str) -> OneTimeCode | None:
        return self._db.execute(
            select(OneTimeCode)
            .where(OneTimeCode.purpose == purpose, OneTimeCode.subject == subject)
            .with_for_update()
        ).scalar_one_or_none()

    def issue(
        self,
        purpose: str,
        subject: str,
        destination_index: str,
        pending_value_encrypted: bytes | None = None,
        *,
        user_id: str | None,
    ) -> str:
        """A fresh code replacing any earlier one; refused during the resend cooldown.

        ``user_id`` is the account the code is for (None while there is none:
        a registration, or an address nobody holds); ``check`` demands the same."""
        now = self._clock.now()
        # The row is created first (if absent) so concurrent requests for a new
        # subject queue on its lock instead of colliding on the unique key.
        insert_if_absent(
            self._db,
            OneTimeCode,
            {
                "id": new_id(),
                "purpose": purpose,
                "subject": subject,
                # Set here too, so a known and an unknown address write the same columns.
                "user_id": user_id,
                "code_hash": "",
                "destination_index": destination_index,
                "sent_at": now - timedelta(days=1),
                "expires_at": now - timedelta(days=1),
                "failed_attempts": 0,
            },
            ["purpose", "subject"],
        )
        row = self._find(purpose, subject)
        assert row is not None
        if row.code_hash and row.consumed_at is None:
            wait = row.sent_at + timedelta(seconds=self._rules.resend_cooldown_seconds) - now
            if wait > timedelta(0):
                raise too_many_attempts(
                    int(wait.total_seconds()) + 1,
                    "A code was sent a moment ago. Wait before asking for another.",
                )
        code = new_code()
        row.code_hash = self._hasher(f"{purpose}:{subject}", code)
        row.destination_index = destination_index
        row.user_id = user_id
        row.pending_value_encrypted = pending_value_encrypted
        # A new code gets its own tries; how many codes a destination can get
        # is capped by the per-destination rate limits on every sending endpoint.
        row.failed_attempts = 0
        row.sent_at = now
        row.expires_at = now + timedelta(seconds=self._rules.ttl_seconds)
        row.consumed_at = None
        self._db.flush()
        return code

    def check(self, purpose: str, subject: str, code: str, *, user_id: str | None) -> OneTimeCode:
        """The live code row if ``code`` matches and was issued for ``user_id``
        (None: no account yet); a wrong guess is counted."""
        row = self._find(purpose, subject)
        now = self._clock.now()
        if (
            row is None
            # Issued for another account (or for none): the address it is keyed
            # by has changed hands since.
            or row.user_id != user_id
            or row.consumed_at is not None
            or row.expires_at <= now
            or row.failed_attempts >= self._rules.max_attempts
        ):
            raise invalid_code()
        if not self._hasher.matches(f"{purpose}:{subject}", code, row.code_hash):
            row.failed_attempts += 1
            self._db.flush()
            raise invalid_code()
        return row

    def issue_for_flow(
        self, purpose: str, destination_index: str, *, user_id: str | None
    ) -> tuple[str, str]:
        """A code bound to a new flow handle: (flow, code). The handle goes back
        to the requester and must come back with the code, so nobody else can
        spend the code's tries; it is issued whether or not an account exists."""
        flow = new_flow()
        code = self.issue(purpose, flow_subject(flow), destination_index, user_id=user_id)
        return flow, code

    def check_flow(
        self,
        purpose: str,
        subject: str,
        destination_index: str,
        code: str,
        *,
        user_id: str | None,
    ) -> OneTimeCode:
        """``check`` for a flow-bound code, which must also have gone to the
        address typed now; a mismatch counts as a wrong guess."""
        row = self.check(purpose, subject, code, user_id=user_id)
        if row.destination_index != destination_index:
            row.failed_attempts += 1
            self._db.flush()
            raise invalid_code()
        return row

    def consume(self, row: OneTimeCode) -> None:
        row.consumed_at = self._clock.now()
        self._db.flush()
