"""Opaque tokens and one-time codes: generated here, stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32  # 256-bit session tokens
CODE_DIGITS = 6


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    # High-entropy tokens need no slow hash; SHA-256 stops a database leak from
    # being replayable.
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def derive_key(master: bytes, label: str) -> bytes:
    """One sub-key per job from the service's secret key (HKDF-like, single block)."""
    return hmac.new(master, b"privid:" + label.encode(), hashlib.sha256).digest()


class CodeHasher:
    """Keyed hash of a one-time code: a six-digit code would fall to brute force
    under a plain hash, so the hash needs a key that the database does not hold."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, subject: str, code: str) -> str:
        message = subject.encode() + b"\x00" + code.encode("ascii", "replace")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def matches(self, subject: str, code: str, stored: str) -> bool:
        return hmac.compare_digest(self(subject, code), stored)
