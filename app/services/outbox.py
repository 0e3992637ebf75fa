"""Delivering queued messages: the address is decrypted and the text rendered at
send time, failures are retried with exponential back-off, and nothing is lost
while the mail server is down.

Unlike the other services this one commits, once to claim a message and once
to record what happened to it: sending is not part of any transaction, so a
message that went out must be marked sent at once, and no database lock may be
held while a mail server takes its time (SQLite's write lock would stop every
other writer). A worker that dies after claiming leaves the message to be tried
again when its back-off ends: delivery is at least once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.adapters.messages import EmailSender, OutgoingEmail
from app.adapters.push import OutgoingPush, PushSender
from app.clock import Clock
from app.models import Incident, OutboxChannel, OutboxKind, OutboxMessage, User, UserDataKey
from app.services.incidents import render_incident_email, render_incident_push
from app.services.vault import PersonalDataVault

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)
# Failures in a row after which a pass stops using a channel: a mail server that
# is down (or times out) would otherwise be tried, and waited for, once per message.
PAUSE_AFTER_FAILURES = 3
GONE = "AccountGone"
UNRENDERABLE = "Unrenderable"


def backoff(attempts: int) -> timedelta:
    """Wait before the next try after ``attempts`` tries: 2**attempts minutes, at most 6 h."""
    return min(timedelta(minutes=2 ** min(attempts, 20)), MAX_BACKOFF)


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0  # failed this time, tried again after the back-off
    abandoned: int = 0  # failed for the last allowed time
    skipped: int = 0  # the account is gone (data key destroyed): never sent

    @property
    def total(self) -> int:
        return self.sent + self.retrying + self.abandoned + self.skipped


class _AccountGone(Exception):
    """The user, or the user's data key, no longer exists."""


class _Unrenderable(Exception):
    """What the message is about cannot be found."""


Prepared = OutgoingEmail | OutgoingPush
Outcome = Literal["sent", "retrying", "abandoned", "skipped"]


@dataclass(frozen=True)
class _Step:
    channel: str
    outcome: Outcome
    send_failed: bool = False


class OutboxService:
    def __init__(
        self,
        db: DbSession,
        clock: Clock,
        vault: PersonalDataVault,
        email: EmailSender,
        push: PushSender,
        max_attempts: int,
    ) -> None:
        self._db, self._clock, self._vault = db, clock, vault
        self._email, self._push = email, push
        self._max_attempts = max(1, max_attempts)

    def deliver_due(self, limit: int = 100) -> DeliveryReport:
        """Try the messages that are due, up to ``limit`` of them. A channel that
        fails PAUSE_AFTER_FAILURES times in a row is left alone for the rest of
        the pass; its messages stay due, untouched, for the next one."""
        report = DeliveryReport()
        failures_in_a_row: dict[str, int] = {}
        paused: set[str] = set()
        for _ in range(max(0, limit)):
            step = self._deliver_next(paused)
            if step is None:
                break
            setattr(report, step.outcome, getattr(report, step.outcome) + 1)
            failures = failures_in_a_row.get(step.channel, 0) + 1 if step.send_failed else 0
            failures_in_a_row[step.channel] = failures
            if failures >= PAUSE_AFTER_FAILURES:
                log.warning(
                    "outbox: %s keeps failing; paused for the rest of this pass", step.channel
                )
                paused.add(step.channel)
        self._db.commit()
        return report

    def _deliver_next(self, paused: set[str]) -> _Step | None:
        now = self._clock.now()
        due = [
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.abandoned_at.is_(None),
            OutboxMessage.next_attempt_at <= now,
        ]
        if paused:
            due.append(OutboxMessage.channel.not_in(sorted(paused)))
        message = self._db.execute(
            select(OutboxMessage)
            .where(*due)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
            # PostgreSQL: parallel runs take different rows. SQLite: the write lock
            # taken at BEGIN IMMEDIATE serialises the claims instead.
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if message is None:
            self._db.commit()
            return None
        channel = message.channel
        if message.attempts >= self._max_attempts:
            # Claimed for the last time by a run that died mid-send.
            return _Step(channel, self._finish(message, abandoned_at=now))
        try:
            prepared = self._prepare(message)
        except _AccountGone:
            message.last_error_class = GONE
            self._finish(message, abandoned_at=now)
            return _Step(channel, "skipped")
        except _Unrenderable:
            # Nothing to render it from (an unknown kind, a missing incident):
            # it can never be sent, and must not block the queue.
            log.warning("outbox message %s cannot be rendered; abandoned", message.id)
            message.last_error_class = UNRENDERABLE
            return _Step(channel, self._finish(message, abandoned_at=now))

        # Claim: should this run die while sending, the message is due again
        # when the back-off ends, as if this attempt had failed.
        message.attempts += 1
        message.next_attempt_at = now + backoff(message.attempts)
        self._db.commit()
        try:
            self._send(prepared)
        except Exception as exc:  # any failure must leave the message queued
            # The class only: an SMTP error's text can quote the recipient.
            log.warning("outbox message %s not delivered: %s", message.id, type(exc).__name__)
            message.last_error_class = type(exc).__name__[:64]
            later = self._clock.now()
            if message.attempts >= self._max_attempts:
                return _Step(channel, self._finish(message, abandoned_at=later), send_failed=True)
            message.next_attempt_at = later + backoff(message.attempts)
            self._db.commit()
            return _Step(channel, "retrying", send_failed=True)
        message.sent_at = self._clock.now()
        message.last_error_class = None
        self._db.commit()
        return _Step(channel, "sent")

    def _finish(self, message: OutboxMessage, *, abandoned_at: datetime) -> Outcome:
        message.abandoned_at = abandoned_at
        self._db.commit()
        return "abandoned"

    def _prepare(self, message: OutboxMessage) -> Prepared:
        """The message as it goes out: address decrypted, text rendered, now."""
        user = self._db.get(User, message.user_id)
        if user is None or self._db.get(UserDataKey, message.user_id) is None:
            raise _AccountGone
        incident = (
            self._db.get(Incident, message.reference_id)
            if message.kind == OutboxKind.INCIDENT
            else None
        )
        if incident is None:
            raise _Unrenderable
        if message.channel == OutboxChannel.PUSH:
            title, text = render_incident_push(incident)
            return OutgoingPush(user_id=user.id, title=title, text=text)
        subject, body = render_incident_email(incident)
        # Only the address is decrypted. Any other decryption failure (a missing
        # key-encryption key) raises: a configuration mistake stops the run
        # instead of abandoning every message.
        address = self._vault.cipher_for(user.id).decrypt("email", user.email_encrypted)
        return OutgoingEmail(to=address, subject=subject, body=body)

    def _send(self, prepared: Prepared) -> None:
        if isinstance(prepared, OutgoingPush):
            self._push.send(prepared)
        else:
            self._email.send(prepared)
