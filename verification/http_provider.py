"""The real provider adapter: HTTPS JSON with signed requests and answers.

Each call POSTs ``/v1/verifications`` with the name, the document and the
liveness token, signed (verification/signing.py), and an ``Idempotency-Key``
that is the same for every retry of one attempt: a provider that received a
try whose answer got lost does not check (or bill) the person twice. Retries
(tenacity) are bounded, back off exponentially and happen only on 5xx answers,
timeouts and refused connections; a circuit breaker (pybreaker) around the
retried call fails fast while the provider is down and lets one call through
after its reset time to see whether it is back. The breaker lives in this
process: each worker finds out on its own that the provider is down."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pybreaker
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from verification.provider import (
    Outcome,
    Person,
    ProviderAnswerRejected,
    ProviderError,
    ProviderUnavailable,
)
from verification.signing import answer_signature, request_signature, same

PATH = "/v1/verifications"
# An answer's timestamp may be this far from ours (clock skew, slow networks).
ANSWER_SKEW_SECONDS = 300


@dataclass(frozen=True)
class HttpProviderConfig:
    name: str
    base_url: str
    key_id: str
    request_key: bytes
    answer_key: bytes
    timeout_seconds: float = 5.0
    # Tries after the first, on 5xx and timeouts only.
    retries: int = 2
    backoff_seconds: float = 0.2
    breaker_fail_max: int = 5
    breaker_reset_seconds: float = 30.0


class _Retryable(ProviderUnavailable):
    """A try that may succeed when repeated (5xx, timeout, connection refused)."""


class _Refused(ProviderError):
    """A 4xx: our request was refused; repeating it would not help."""


class HttpProvider:
    def __init__(self, config: HttpProviderConfig) -> None:
        parts = urlsplit(config.base_url)
        local = parts.hostname in {"127.0.0.1", "localhost", "::1"}
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError("the verification provider URL must be https (http only on loopback)")
        self.name = config.name
        self._config = config
        self._url = config.base_url.rstrip("/") + PATH
        self._path = urlsplit(self._url).path
        # Answers that cannot be trusted say nothing about the provider being up.
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=config.breaker_fail_max,
            reset_timeout=config.breaker_reset_seconds,
            exclude=[ProviderAnswerRejected, _Refused],
        )

    def verify(self, person: Person, idempotency_key: str) -> Outcome:
        body = json.dumps(
            {
                "name": person.full_name,
                "document_type": person.document.type.value,
                "document_number": person.document.number,
                "liveness_token": person.liveness_token,
            },
            ensure_ascii=False,
        ).encode()
        try:
            return self.breaker.call(self._with_retries, body, idempotency_key)
        except pybreaker.CircuitBreakerError:
            raise ProviderUnavailable("the provider is unavailable (circuit open)") from None
        except _Refused as refused:
            raise ProviderError(str(refused)) from None

    def _with_retries(self, body: bytes, idempotency_key: str) -> Outcome:
        cfg = self._config
        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(cfg.retries + 1),
            wait=wait_exponential(multiplier=cfg.backoff_seconds, max=cfg.backoff_seconds * 8),
            reraise=True,
        )
        try:
            return retrying(self._try_once, body, idempotency_key)
        except _Retryable as exc:
            raise ProviderUnavailable(str(exc)) from None

    def _try_once(self, body: bytes, idempotency_key: str) -> Outcome:
        cfg = self._config
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = request_signature(cfg.request_key, "POST", self._path, timestamp, nonce, body)
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-Privid-Key-Id": cfg.key_id,
                "X-Privid-Timestamp": timestamp,
                "X-Privid-Nonce": nonce,
                "X-Privid-Signature": signature,
                "Idempotency-Key": idempotency_key,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=cfg.timeout_seconds) as response:  # noqa: S310
                status, headers, answer = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise _Retryable(f"the provider answered {exc.code}") from None
            raise _Refused(f"the provider refused the request ({exc.code})") from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            raise _Retryable(f"the provider did not answer: {type(exc).__name__}") from None
        self._check_signature(status, headers, nonce, answer)
        return _outcome(answer)

    def _check_signature(self, status: int, headers: Any, nonce: str, body: bytes) -> None:
        stamp = headers.get("X-Provider-Timestamp", "")
        expected = answer_signature(self._config.answer_key, status, stamp, nonce, body)
        if not same(expected, headers.get("X-Provider-Signature")):
            raise ProviderAnswerRejected("the provider's answer signature is wrong")
        if not stamp.isdigit() or abs(int(stamp) - time.time()) > ANSWER_SKEW_SECONDS:
            raise ProviderAnswerRejected("the provider's answer is too old or from the future")


def _outcome(body: bytes) -> Outcome:
    try:
        data = json.loads(body)
        match, liveness = data["match"], data.get("liveness")
        reference, checked_at = data["reference"], datetime.fromisoformat(data["checked_at"])
    except (ValueError, KeyError, TypeError):
        raise ProviderAnswerRejected("the provider's answer is malformed") from None
    valid = (
        isinstance(match, bool)
        and (liveness is None or isinstance(liveness, bool))
        and isinstance(reference, str)
        and 0 < len(reference) <= 128
        and checked_at.tzinfo is not None
    )
    if not valid:
        raise ProviderAnswerRejected("the provider's answer is malformed")
    return Outcome(match, liveness, reference, checked_at)
