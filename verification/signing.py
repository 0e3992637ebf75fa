"""HMAC-SHA256 signatures of provider requests and answers, one canonical
form each, used by the adapter and by any server that speaks its protocol.

A request's signature covers the method, the path, a timestamp, a nonce and
the body's SHA-256; an answer's covers its status, its own timestamp, the
request's nonce (so an answer cannot be replayed to another request) and its
body's SHA-256."""

from __future__ import annotations

import hashlib
import hmac


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_signature(
    key: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes
) -> str:
    return _mac(key, method.upper(), path, timestamp, nonce, body_digest(body))


def answer_signature(key: bytes, status: int, timestamp: str, nonce: str, body: bytes) -> str:
    return _mac(key, str(status), timestamp, nonce, body_digest(body))


def same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected, given)
