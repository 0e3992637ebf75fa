"""Single-use server challenges for ceremonies that span two requests (passkey
registration and sign-in, binding an app key). Kept in the database, so any
worker can finish a ceremony another one started."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.db import affected_rows
from app.models import WebAuthnChallenge


class ChallengeStore:
    def __init__(self, db: DbSession, clock: Clock, ttl_seconds: int) -> None:
        self._db, self._clock, self.ttl_seconds = db, clock, ttl_seconds

    def issue(
        self, challenge: bytes, ceremony: str, user_id: str | None, session_id: str | None
    ) -> WebAuthnChallenge:
        row = WebAuthnChallenge(
            challenge=challenge,
            ceremony=ceremony,
            user_id=user_id,
            session_id=session_id,
            expires_at=self._clock.now() + timedelta(seconds=self.ttl_seconds),
        )
        self._db.add(row)
        self._db.flush()
        return row

    def consume(
        self, challenge_id: str, ceremony: str, user_id: str | None, session_id: str | None
    ) -> WebAuthnChallenge | None:
        """The challenge, spent now; None unless it is for this ceremony, this
        user and this session (None: nobody known yet), unexpired and unused."""
        row = self._db.get(WebAuthnChallenge, challenge_id)
        now = self._clock.now()
        if (
            row is None
            or row.ceremony != ceremony
            or row.user_id != user_id
            or row.session_id != session_id
            or row.consumed_at is not None
            or row.expires_at <= now
        ):
            return None
        # A conditional update, so two concurrent answers cannot both spend it.
        spent = affected_rows(
            self._db.execute(
                update(WebAuthnChallenge)
                .where(WebAuthnChallenge.id == row.id, WebAuthnChallenge.consumed_at.is_(None))
                .values(consumed_at=now)
                .execution_options(synchronize_session=False)
            )
        )
        if spent != 1:
            return None
        self._db.refresh(row)
        return row
