"""Blind indexes: a keyed HMAC of a normalised value, for uniqueness and lookup
without storing the value in clear."""

from __future__ import annotations

import hashlib
import hmac


class BlindIndex:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, kind: str, normalised_value: str) -> str:
        # The kind is mixed in so an email and a phone never share an index value.
        message = kind.encode() + b"\x00" + normalised_value.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
