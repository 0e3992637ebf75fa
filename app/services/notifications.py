"""What the service tells people. Every message becomes an outbox row in the
transaction of the change that causes it (app/models/outbox.py); a worker sends
it (app/worker.py). So a rolled-back change sends nothing, a dead web worker
loses nothing, and a request never waits for, or shows the timing of, a send.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session as DbSession

from app import metrics
from app.adapters.messages import OutgoingEmail, OutgoingSms
from app.clock import Clock
from app.models import OutboxChannel, OutboxKind, OutboxMessage
from app.models.base import new_id
from app.security.envelope import KeyRing
from app.services.sealed_messages import Deferred, Outgoing, seal

CODE_PURPOSE_TEXT = {
    "register_email": "confirm your email address for your new account",
    "register_phone": "confirm your phone number for your new account",
    "login_sms": "sign in",
    "password_reset": "reset your password",
    "change_email": "confirm your new email address",
    "change_phone": "confirm your new phone number",
    "login_email": "finish signing in on a device your account is not bound to",
    "login_device_sms": "finish signing in on a device your account is not bound to",
}


class Contact(Protocol):
    """Where an account is reached (app/services/vault.py ``Profile``)."""

    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str: ...


class Notifier:
    """Composes messages and queues them in the outbox of the current unit of work.

    Every message names the account it concerns (``user_id``, keyword-only and
    without a default, so no caller can forget it); only a code for a
    registration, which has no account yet, names none."""

    def __init__(self, db: DbSession, clock: Clock, key_ring: KeyRing) -> None:
        self._db, self._clock, self._key_ring = db, clock, key_ring

    def _queue(
        self,
        channel: OutboxChannel,
        message: Outgoing | None,
        user_id: str | None,
        valid_minutes: int | None = None,
    ) -> None:
        """``user_id`` is the account the message concerns (None only when there is
        none yet, or nobody): cancellation abandons and erases the account's
        pending messages by it, and the export lists them by it."""
        message_id = new_id()
        now = self._clock.now()
        # A code that would arrive expired is not sent at all.
        not_after = now + timedelta(minutes=valid_minutes) if valid_minutes else None
        sealed = seal(self._key_ring, message_id, message, not_after)
        self._db.add(
            OutboxMessage(
                id=message_id,
                user_id=user_id,
                channel=channel,
                kind=OutboxKind.SEALED,
                key_id=sealed.key_id,
                wrapped_key=sealed.wrapped_key,
                payload_encrypted=sealed.payload,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )

    def _email_later(
        self, message: OutgoingEmail, user_id: str | None, valid_minutes: int | None = None
    ) -> None:
        self._queue(OutboxChannel.EMAIL, message, user_id, valid_minutes)

    def _to_account(self, to: str | None, *, subject: str, body: str, user_id: str | None) -> None:
        """A notice to an address the account had (none: nothing to send)."""
        if to is not None:
            self._email_later(OutgoingEmail(to=to, subject=subject, body=body), user_id)

    def _security_notice(
        self, to: Contact, *, subject: str, body: str, sms: str, user_id: str | None
    ) -> None:
        """A security notice by email; by SMS to an account that has no email
        address (one made through WeChat, none added yet)."""
        if to.email is not None:
            self._email_later(OutgoingEmail(to=to.email, subject=subject, body=body), user_id)
        else:
            self._sms_later(OutgoingSms(to=to.phone, text=f"[privid] {sms}"), user_id)

    def _sms_later(
        self, message: OutgoingSms, user_id: str | None, valid_minutes: int | None = None
    ) -> None:
        self._queue(OutboxChannel.SMS, message, user_id, valid_minutes)

    def post_later(self, message: Deferred, *, user_id: str) -> None:
        """A form for another server, rendered by its capability when sent."""
        self._queue(OutboxChannel.HTTP, message, user_id)

    def nothing_by_email(self) -> None:
        """A row the worker discards: a request that has nobody to write to does
        the same work as one that does, so its timing shows nothing."""
        self._queue(OutboxChannel.EMAIL, None, None)

    def nothing_by_sms(self) -> None:
        """As nothing_by_email, for a text message."""
        self._queue(OutboxChannel.SMS, None, None)

    def code_by_email(
        self, to: str, code: str, purpose: str, minutes: int, *, user_id: str | None
    ) -> None:
        action = CODE_PURPOSE_TEXT[purpose]
        metrics.code_sent("email", purpose)
        self._email_later(
            OutgoingEmail(
                to=to,
                subject=f"Your privid code: {code}",
                body=(
                    f"Use the code {code} to {action}. It expires in {minutes} minutes.\n\n"
                    "If you did not ask for it, ignore this message; nothing changes."
                ),
            ),
            user_id,
            minutes,
        )

    def code_by_sms(
        self, to: str, code: str, purpose: str, minutes: int, *, user_id: str | None
    ) -> None:
        action = CODE_PURPOSE_TEXT[purpose]
        metrics.code_sent("sms", purpose)
        self._sms_later(
            OutgoingSms(to=to, text=f"[privid] {code} is your code to {action} ({minutes} min)."),
            user_id,
            minutes,
        )

    def registration_attempt_by_email(self, to: str, *, user_id: str) -> None:
        self._email_later(
            OutgoingEmail(
                to=to,
                subject="Someone tried to register with your email address",
                body=(
                    "Someone tried to create a privid account with this email address, "
                    "which already has an account. If it was you, sign in or reset your "
                    "password instead. If not, you can ignore this message."
                ),
            ),
            user_id,
        )

    def registration_attempt_by_sms(self, to: str, *, user_id: str) -> None:
        self._sms_later(
            OutgoingSms(
                to=to,
                text=(
                    "[privid] Someone tried to register with this number, which already "
                    "has an account. If it was you, sign in instead."
                ),
            ),
            user_id,
        )

    def address_in_use_by_email(self, to: str, *, user_id: str) -> None:
        self._email_later(
            OutgoingEmail(
                to=to,
                subject="Someone tried to add your email address to another account",
                body=(
                    "Someone tried to move this email address onto another privid account. "
                    "It stays with your account. If this was you, sign in with it instead."
                ),
            ),
            user_id,
        )

    def address_in_use_by_sms(self, to: str, *, user_id: str) -> None:
        self._sms_later(
            OutgoingSms(
                to=to,
                text="[privid] Someone tried to add this number to another account. "
                "It stays with yours.",
            ),
            user_id,
        )

    def contact_changed_by_email(self, to: str | None, what: str, *, user_id: str) -> None:
        self._to_account(
            to,
            subject=f"Your privid {what} was changed",
            body=(
                f"The {what} of your privid account was just changed, so this address "
                "no longer signs in. If this was not you, reset your password with your "
                "phone number and contact us."
            ),
            user_id=user_id,
        )

    def contact_changed_by_sms(self, to: str, *, user_id: str) -> None:
        self._sms_later(
            OutgoingSms(
                to=to,
                text="[privid] The phone number of your account was changed. "
                "If this was not you, reset your password by email.",
            ),
            user_id,
        )

    def password_changed(self, to: Contact, *, user_id: str) -> None:
        self._security_notice(
            to,
            sms="Your password was just changed. If this was not you, reset it now.",
            subject="Your privid password was changed",
            body=(
                "The password of your privid account was just changed and your other "
                "sessions were signed out. If this was not you, reset your password now."
            ),
            user_id=user_id,
        )

    def new_device_sign_in(
        self, to: Contact, device: str, network: str, when: datetime, *, user_id: str | None
    ) -> None:
        self._security_notice(
            to,
            sms=f"New sign-in from a device not seen before ({device}). Not you? Revoke it.",
            subject="New sign-in to your privid account",
            body=(
                f"Your privid account was signed in to from a device we have not seen "
                f"before: {device}, network {network}, at {when:%Y-%m-%d %H:%M} UTC. If "
                "this was you, there is nothing to do. If not, change your password and "
                "revoke the device under your account's devices."
            ),
            user_id=user_id,
        )

    def sign_in_protection_removed(
        self, to: Contact, removed: list[str], how: str, when: datetime, *, user_id: str | None
    ) -> None:
        """A passkey or a device binding was taken away, directly or by a
        consent withdrawal: the account is easier to get into than before."""
        self._security_notice(
            to,
            sms=f"{' and '.join(removed)} stopped protecting your account ({how}). Not you? "
            "Contact us.",
            subject="A sign-in protection was removed from your privid account",
            body=(
                f"At {when:%Y-%m-%d %H:%M} UTC, {' and '.join(removed)} stopped protecting "
                f"your privid account ({how}). Signing in may now ask for less than before. "
                "If this was not you, change your password, review your devices and "
                "passkeys, and contact us."
            ),
            user_id=user_id,
        )
