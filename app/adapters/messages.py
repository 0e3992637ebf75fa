"""The interfaces for sending email and SMS, and their console stand-ins."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol, TextIO


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str


@dataclass(frozen=True)
class OutgoingSms:
    to: str  # E.164
    text: str


class DeliveryError(Exception):
    """The message could not be handed to the carrier. Carries no personal data."""


class DeliveryRefused(DeliveryError):
    """The receiver refuses this message for good: trying again cannot help."""


class EmailSender(Protocol):
    def send(self, message: OutgoingEmail) -> None: ...


class SmsSender(Protocol):
    def send(self, message: OutgoingSms) -> None: ...


class ConsoleEmailSender:
    """Development only: prints the message (codes included) to the terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def send(self, message: OutgoingEmail) -> None:
        print(
            f"--- email to {message.to}: {message.subject}\n{message.body}\n---",
            file=self._stream,
            flush=True,
        )


class ConsoleSmsSender:
    """Development only: prints the text message to the terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def send(self, message: OutgoingSms) -> None:
        print(f"--- sms to {message.to}: {message.text}", file=self._stream, flush=True)
