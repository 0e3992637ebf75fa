"""What the service tells people, and handing it to the senders off the request path.

Sending happens on a small worker pool after the request's transaction commits,
so a response never waits for (or reveals the timing of) a mail server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from app.adapters.messages import (
    DeliveryError,
    EmailSender,
    OutgoingEmail,
    OutgoingSms,
    SmsSender,
)

log = logging.getLogger(__name__)

CODE_PURPOSE_TEXT = {
    "register_email": "confirm your email address for your new account",
    "register_phone": "confirm your phone number for your new account",
    "login_sms": "sign in",
    "password_reset": "reset your password",
    "change_email": "confirm your new email address",
    "change_phone": "confirm your new phone number",
    "login_email": "finish signing in on a device your account is not bound to",
}


class Dispatcher:
    """Runs deliveries on background threads; ``drain`` waits for them (tests, shutdown)."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="privid-send")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        future = self._pool.submit(_run_logged, job)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def drain(self, timeout: float = 10.0) -> None:
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.result(timeout=timeout)


def _run_logged(job: Callable[[], None]) -> None:
    try:
        job()
    except DeliveryError as exc:
        log.warning("message delivery failed: %s", exc)
    except Exception as exc:  # an adapter bug must not vanish, nor leak an address
        log.error("message delivery failed: %s", type(exc).__name__)


class Notifier:
    """Composes messages; queues them to be sent once the request has committed."""

    def __init__(self, email: EmailSender, sms: SmsSender, dispatcher: Dispatcher) -> None:
        self._email, self._sms, self._dispatcher = email, sms, dispatcher
        self._queued: list[Callable[[], None]] = []

    def flush(self) -> None:
        """Hand queued messages to the dispatcher (called after commit)."""
        queued, self._queued = self._queued, []
        for job in queued:
            self._dispatcher.submit(job)

    def discard(self) -> None:
        self._queued.clear()

    def _email_later(self, message: OutgoingEmail) -> None:
        self._queued.append(lambda: self._email.send(message))

    def _sms_later(self, message: OutgoingSms) -> None:
        self._queued.append(lambda: self._sms.send(message))

    def code_by_email(self, to: str, code: str, purpose: str, minutes: int) -> None:
        action = CODE_PURPOSE_TEXT[purpose]
        self._email_later(
            OutgoingEmail(
                to=to,
                subject=f"Your privid code: {code}",
                body=(
                    f"Use the code {code} to {action}. It expires in {minutes} minutes.\n\n"
                    "If you did not ask for it, ignore this message; nothing changes."
                ),
            )
        )

    def code_by_sms(self, to: str, code: str, purpose: str, minutes: int) -> None:
        action = CODE_PURPOSE_TEXT[purpose]
        self._sms_later(
            OutgoingSms(to=to, text=f"[privid] {code} is your code to {action} ({minutes} min).")
        )

    def registration_attempt_by_email(self, to: str) -> None:
        self._email_later(
            OutgoingEmail(
                to=to,
                subject="Someone tried to register with your email address",
                body=(
                    "Someone tried to create a privid account with this email address, "
                    "which already has an account. If it was you, sign in or reset your "
                    "password instead. If not, you can ignore this message."
                ),
            )
        )

    def registration_attempt_by_sms(self, to: str) -> None:
        self._sms_later(
            OutgoingSms(
                to=to,
                text=(
                    "[privid] Someone tried to register with this number, which already "
                    "has an account. If it was you, sign in instead."
                ),
            )
        )

    def address_in_use_by_email(self, to: str) -> None:
        self._email_later(
            OutgoingEmail(
                to=to,
                subject="Someone tried to add your email address to another account",
                body=(
                    "Someone tried to move this email address onto another privid account. "
                    "It stays with your account. If this was you, sign in with it instead."
                ),
            )
        )

    def address_in_use_by_sms(self, to: str) -> None:
        self._sms_later(
            OutgoingSms(
                to=to,
                text="[privid] Someone tried to add this number to another account. "
                "It stays with yours.",
            )
        )

    def contact_changed_by_email(self, to: str, what: str) -> None:
        self._email_later(
            OutgoingEmail(
                to=to,
                subject=f"Your privid {what} was changed",
                body=(
                    f"The {what} of your privid account was just changed, so this address "
                    "no longer signs in. If this was not you, reset your password with your "
                    "phone number and contact us."
                ),
            )
        )

    def contact_changed_by_sms(self, to: str) -> None:
        self._sms_later(
            OutgoingSms(
                to=to,
                text="[privid] The phone number of your account was changed. "
                "If this was not you, reset your password by email.",
            )
        )

    def password_changed(self, to: str) -> None:
        self._email_later(
            OutgoingEmail(
                to=to,
                subject="Your privid password was changed",
                body=(
                    "The password of your privid account was just changed and your other "
                    "sessions were signed out. If this was not you, reset your password now."
                ),
            )
        )

    def new_device_sign_in(self, to: str, device: str, network: str, when: datetime) -> None:
        self._email_later(
            OutgoingEmail(
                to=to,
                subject="New sign-in to your privid account",
                body=(
                    f"Your privid account was signed in to from a device we have not seen "
                    f"before: {device}, network {network}, at {when:%Y-%m-%d %H:%M} UTC. If "
                    "this was you, there is nothing to do. If not, change your password and "
                    "revoke the device under your account's devices."
                ),
            )
        )

    def sign_in_protection_removed(
        self, to: str, removed: list[str], how: str, when: datetime
    ) -> None:
        """A passkey or a device binding was taken away, directly or by a
        consent withdrawal: the account is easier to get into than before."""
        self._email_later(
            OutgoingEmail(
                to=to,
                subject="A sign-in protection was removed from your privid account",
                body=(
                    f"At {when:%Y-%m-%d %H:%M} UTC, {' and '.join(removed)} stopped protecting "
                    f"your privid account ({how}). Signing in may now ask for less than before. "
                    "If this was not you, change your password, review your devices and "
                    "passkeys, and contact us."
                ),
            )
        )
