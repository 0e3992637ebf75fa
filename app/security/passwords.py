"""Password hashing (argon2id) and the password policy (NIST SP 800-63B style)."""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Literal

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Argon2Passwords:
    """argon2id with parameters from settings; counts verifications so tests and
    benchmarks can see how much hashing work a flow really did."""

    def __init__(self, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=Type.ID,
        )
        # A real hash to verify against when the account does not exist, so a
        # miss costs the same time as a hit (no account enumeration by timing).
        self._dummy_hash = self._hasher.hash("privid-dummy-password")
        self._lock = threading.Lock()
        self.verifications = 0

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        with self._lock:
            self.verifications += 1
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and bool(
                stored_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


@cache
def _common_passwords() -> frozenset[str]:
    # zxcvbn ships the 30,000 most common passwords from leaked corpora (xato);
    # we use only that list, not zxcvbn's score, so the rule is a plain,
    # explainable blocklist as SP 800-63B asks.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def is_common_password(password: str) -> bool:
    return password.lower() in _common_passwords()


@dataclass(frozen=True)
class PersonalData:
    email: str = ""
    phone_e164: str = ""
    phone_national: str = ""
    full_name: str = ""

    def tokens(self) -> list[str]:
        """Pieces of the user's own data a password must not be built from."""
        found: list[str] = []
        if self.email:
            local, _, domain = self.email.lower().partition("@")
            found += [local, *re.split(r"[._+\-]", local), domain.split(".")[0]]
        found += [self.phone_e164.lstrip("+"), self.phone_national]
        name = unicodedata.normalize("NFC", self.full_name).lower()
        found += [name.replace(" ", ""), *name.split()]
        # Two-character pieces matter for Chinese names; one character never does.
        return sorted({t for t in found if len(t) >= 2}, key=len, reverse=True)


# Why a password is refused, as clients see it (stable; translate, never parse prose).
PasswordReason = Literal["too_short", "too_long", "common", "personal"]


class PasswordRejected(Exception):
    """Why a password is refused: a stable ``code`` (too_short, too_long,
    common, personal) for clients to translate, and the English ``reason``."""

    def __init__(self, code: PasswordReason, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class PasswordPolicy:
    def __init__(self, min_length: int, max_length: int) -> None:
        self.min_length = min_length
        self.max_length = max_length

    def check(self, password: str, personal: PersonalData) -> None:
        """Raise PasswordRejected saying why; the password is judged exactly as typed."""
        length = len(password)
        if length < self.min_length:
            raise PasswordRejected("too_short", f"Use at least {self.min_length} characters.")
        if length > self.max_length:
            raise PasswordRejected("too_long", f"Use at most {self.max_length} characters.")
        if is_common_password(password):
            raise PasswordRejected(
                "common", "This password is among the most common passwords; choose another."
            )
        remainder = password.lower()
        for token in personal.tokens():
            remainder = remainder.replace(token, "")
        # What is left once the user's own data is taken out must stand as a
        # password by itself.
        if remainder != password.lower() and (
            len(remainder) < self.min_length or is_common_password(remainder)
        ):
            raise PasswordRejected(
                "personal",
                "This password is built from your own email, phone number or name; "
                "choose one that is not.",
            )
