"""Delivering the outbox: every message the service sends (codes, notices,
incident notices) goes out from here, run by a worker (app/worker.py). Failures
are retried with exponential back-off, and nothing is lost while a mail server
or SMS gateway is down.

Unlike the other services this one commits, once to claim a message and once
to record what happened to it: sending is not part of any transaction, so a
message that went out must be marked sent at once, and no database lock may be
held while a mail server takes its time (SQLite's write lock would stop every
other writer). A claim holds the message for ``claim_seconds``: a worker that
dies after claiming leaves it to the next worker once the claim runs out, so
delivery is at least once. Parallel workers claim with SELECT ... FOR UPDATE
SKIP LOCKED on PostgreSQL and serialise on the write lock on SQLite; a claimed
message is not due again until its claim runs out, so no two workers send it.

A sealed message's payload and key are erased as soon as it is sent or
abandoned: the outbox keeps no copy of an address or a code it no longer needs.

Besides email, SMS and push, the outbox POSTs forms to other servers (channel
``http``: OIDC back-channel logout). Such a message is ``Deferred``: a
capability's renderer (``render``) turns it into the POST at each try, so a
signed token in it is fresh however long the back-off was. A receiver that
refuses it for good (``DeliveryRefused``) is not asked again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as DbSession

from app.adapters.http_post import HttpPoster, OutgoingPost, StdlibPoster
from app.adapters.messages import (
    DeliveryRefused,
    EmailSender,
    OutgoingEmail,
    OutgoingSms,
    SmsSender,
)
from app.adapters.push import OutgoingPush, PushSender
from app.clock import Clock
from app.models import Incident, OutboxChannel, OutboxKind, OutboxMessage, User, UserDataKey
from app.security.envelope import DecryptionError, KeyRing
from app.services.incidents import render_incident_email, render_incident_push
from app.services.sealed_messages import Deferred, Sealed, open_sealed
from app.services.vault import PersonalDataVault

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)
# Failures in a row after which a pass stops using a channel: a mail server that
# is down (or times out) would otherwise be tried, and waited for, once per message.
PAUSE_AFTER_FAILURES = 3
GONE = "AccountGone"
UNRENDERABLE = "Unrenderable"
NOTHING = "NothingToSend"
EXPIRED = "Expired"
REFUSED = "DeliveryRefused"


def backoff(attempts: int) -> timedelta:
    """Wait before the next try after ``attempts`` tries: 2**attempts minutes, at most 6 h."""
    return min(timedelta(minutes=2 ** min(attempts, 20)), MAX_BACKOFF)


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0  # failed this time, tried again after the back-off
    abandoned: int = 0  # failed for the last allowed time
    # Never sent: the account is gone (data key destroyed), or the row carried
    # nothing to send (a request for an unknown address, see Notifier.nothing_by_*).
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.retrying + self.abandoned + self.skipped


class _AccountGone(Exception):
    """The user, or the user's data key, no longer exists."""


class _Unrenderable(Exception):
    """What the message is about cannot be found, or its payload cannot be opened."""


class NothingToSend(Exception):
    """The row stands in for a message that does not exist (or, raised by a
    renderer, one that has become pointless: its receiver is gone)."""


class _Expired(Exception):
    """Too late: what the message carries (a code) has expired."""


Prepared = OutgoingEmail | OutgoingSms | OutgoingPush | OutgoingPost
# A capability's renderer for its deferred messages (Runtime.outbox_renderers).
Render = Callable[[Deferred], OutgoingPost]
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
        key_ring: KeyRing,
        email: EmailSender,
        sms: SmsSender,
        push: PushSender,
        *,
        max_attempts: int,
        claim_seconds: float,
        http: HttpPoster | None = None,
        render: Render | None = None,
    ) -> None:
        self._db, self._clock, self._vault, self._key_ring = db, clock, vault, key_ring
        self._email, self._sms, self._push = email, sms, push
        self._http = http or StdlibPoster()
        self._render = render
        self._max_attempts = max(1, max_attempts)
        self._claim = timedelta(seconds=claim_seconds)

    def deliver_due(
        self, limit: int = 100, stop: Callable[[], bool] | None = None
    ) -> DeliveryReport:
        """Try the messages that are due, up to ``limit`` of them, until ``stop()``
        says to stop. A channel that fails PAUSE_AFTER_FAILURES times in a row is
        left alone for the rest of the pass; its messages stay due, untouched,
        for the next one."""
        report = DeliveryReport()
        failures_in_a_row: dict[str, int] = {}
        paused: set[str] = set()
        for _ in range(max(0, limit)):
            if stop is not None and stop():
                break
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
        except (_AccountGone, NothingToSend) as reason:
            message.last_error_class = GONE if isinstance(reason, _AccountGone) else NOTHING
            self._finish(message, abandoned_at=now)
            return _Step(channel, "skipped")
        except _Expired:
            message.last_error_class = EXPIRED
            return _Step(channel, self._finish(message, abandoned_at=now))
        except _Unrenderable:
            # Nothing to render it from (an unknown kind, a missing incident):
            # it can never be sent, and must not block the queue.
            log.warning("outbox message %s cannot be rendered; abandoned", message.id)
            message.last_error_class = UNRENDERABLE
            return _Step(channel, self._finish(message, abandoned_at=now))

        # Claim: should this run die while sending, the message is due again
        # when the claim runs out, for the next worker.
        message.attempts += 1
        message.next_attempt_at = now + self._claim
        self._db.commit()
        try:
            self._send(prepared)
        except DeliveryRefused:
            # The receiver will never take it: trying again only repeats the refusal.
            log.warning("outbox message %s refused by its receiver; abandoned", message.id)
            message.last_error_class = REFUSED
            return _Step(channel, self._finish(message, abandoned_at=self._clock.now()))
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
        _erase(message)
        self._db.commit()
        return _Step(channel, "sent")

    def _finish(self, message: OutboxMessage, *, abandoned_at: datetime) -> Outcome:
        message.abandoned_at = abandoned_at
        _erase(message)
        self._db.commit()
        return "abandoned"

    def _prepare(self, message: OutboxMessage) -> Prepared:
        """The message as it goes out."""
        if message.kind == OutboxKind.SEALED:
            return self._open(message)
        return self._render_incident(message)

    def _open(self, message: OutboxMessage) -> Prepared:
        if message.key_id is None or message.wrapped_key is None or not message.payload_encrypted:
            raise _Unrenderable
        if not self._key_ring.knows(message.key_id):
            # A missing key-encryption key is a configuration mistake: stop the
            # run rather than abandon every message sealed under it.
            raise DecryptionError(f"key-encryption key {message.key_id!r} is not configured")
        sealed = Sealed(message.key_id, message.wrapped_key, message.payload_encrypted)
        try:
            opened = open_sealed(self._key_ring, message.id, sealed)
        except (DecryptionError, ValueError, KeyError):
            raise _Unrenderable from None
        if opened.message is None:
            raise NothingToSend
        if opened.not_after is not None and opened.not_after <= self._clock.now():
            raise _Expired
        if isinstance(opened.message, Deferred):
            if self._render is None:
                raise _Unrenderable
            try:
                return self._render(opened.message)
            except KeyError:  # no installed capability renders it
                raise _Unrenderable from None
        return opened.message

    def _render_incident(self, message: OutboxMessage) -> Prepared:
        """An incident notice: address decrypted, text rendered, now."""
        if message.user_id is None:
            raise _Unrenderable
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
        if user.email_encrypted is None:
            raise _Unrenderable  # no address to write to (an account made through WeChat)
        address = self._vault.cipher_for(user.id).decrypt("email", user.email_encrypted)
        return OutgoingEmail(to=address, subject=subject, body=body)

    def _send(self, prepared: Prepared) -> None:
        if isinstance(prepared, OutgoingPost):
            self._http.post(prepared)
        elif isinstance(prepared, OutgoingPush):
            self._push.send(prepared)
        elif isinstance(prepared, OutgoingSms):
            self._sms.send(prepared)
        else:
            self._email.send(prepared)


# What a finished message no longer needs: its recipient and text, and the key to them.
_ERASED: dict[str, None] = {"key_id": None, "wrapped_key": None, "payload_encrypted": None}


def _erase(message: OutboxMessage) -> None:
    """A finished message needs its recipient and text no more."""
    for column, value in _ERASED.items():
        setattr(message, column, value)


def abandon_pending(db: DbSession, user_id: str, now: datetime) -> int:
    """The account is gone (cancellation): every message about it still waiting
    is abandoned and erased in the caller's transaction, so no worker sends it
    afterwards and nothing in the outbox opens to the person's address. Returns
    how many. A message a worker is sending at this very moment may still go
    out (delivery is at least once); it is recorded as sent and abandoned.
    Messages to partners' servers (back-channel logout) still go: they hold no
    address, and telling a partner the person's sessions ended is the point."""
    result = db.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.user_id == user_id,
            OutboxMessage.channel != OutboxChannel.HTTP,
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.abandoned_at.is_(None),
        )
        .values(abandoned_at=now, last_error_class=GONE, **_ERASED)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def backlog(db: DbSession) -> tuple[int, datetime | None]:
    """How many messages wait (neither sent nor abandoned), and when the oldest
    was queued: the metrics scrape reads it."""
    count, oldest = db.execute(
        select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.abandoned_at.is_(None)
        )
    ).one()
    return int(count), oldest
