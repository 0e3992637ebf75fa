"""Form POSTs to other servers (OIDC back-channel logout): the interface the
outbox sends them through, and the urllib implementation.

The answer decides what the outbox does next: 2xx is delivered; a 4xx other
than 429 means the receiver refuses this message and always will
(``DeliveryRefused``: give up); anything else (5xx, 429, a timeout, no
connection) may pass later (``DeliveryError``: retry after the back-off).
Redirects are not followed, and count as a refusal: a receiver's address is
registered exactly, and a form re-sent elsewhere would carry its token there.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from .messages import DeliveryError, DeliveryRefused

DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class OutgoingPost:
    url: str
    form: tuple[tuple[str, str], ...]


class HttpPoster(Protocol):
    def post(self, message: OutgoingPost) -> None: ...


def judge(status: int) -> None:
    """Raise unless ``status`` says the message was taken."""
    if 200 <= status < 300:
        return
    if 300 <= status < 500 and status != 429:
        raise DeliveryRefused(f"receiver refused with {status}")
    raise DeliveryError(f"receiver answered {status}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx then surfaces as an HTTPError


class UrllibPoster:
    def __init__(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects())

    def post(self, message: OutgoingPost) -> None:
        if not message.url.startswith(("https://", "http://")):
            raise DeliveryRefused("receiver address is not http(s)")
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            message.url,
            data=urlencode(message.form).encode(),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
            error.close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # The class only: an error's text can quote the address.
            raise DeliveryError(f"receiver unreachable: {type(exc).__name__}") from None
        judge(status)
