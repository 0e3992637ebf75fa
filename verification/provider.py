"""The one interface to identity verification providers: verify a person
(name, document, optional liveness token) and get back what matched, the
provider's reference and the level reached. Nothing else about the person
comes back, and nothing is kept by the adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from verification.documents import Document


class Level(StrEnum):
    # Name and number match the institution's record.
    L1 = "L1"
    # L1, and the provider's liveness check on the person's device passed.
    L2 = "L2"


@dataclass(frozen=True)
class Person:
    full_name: str
    document: Document
    # The provider's token from its SDK's liveness check; never an image.
    liveness_token: str | None = None

    def __repr__(self) -> str:
        # Keeps the name and number out of tracebacks and log lines.
        return f"Person(document_type={self.document.type.value!r})"


@dataclass(frozen=True)
class Outcome:
    name_and_number_match: bool
    # None when no liveness token was sent.
    liveness_passed: bool | None
    reference: str
    checked_at: datetime

    @property
    def level(self) -> Level | None:
        if not self.name_and_number_match:
            return None
        return Level.L2 if self.liveness_passed else Level.L1


class ProviderError(Exception):
    """The provider gave no usable answer; the message names no personal data."""


class ProviderUnavailable(ProviderError):
    """Down, too slow, answering 5xx, or the circuit breaker is open."""


class ProviderAnswerRejected(ProviderError):
    """An answer that cannot be trusted: a bad signature or a malformed body."""


class Provider(Protocol):
    name: str

    def verify(self, person: Person, idempotency_key: str) -> Outcome: ...
