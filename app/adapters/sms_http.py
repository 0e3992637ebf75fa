"""SMS through an HTTP gateway: POST a JSON message with a bearer token.

The wire shape (``{"to": E.164, "text": ...}`` answered by ``{"id": ...}``) is
the common denominator of SMS HTTP APIs; a provider-specific adapter replaces
this one behind the same ``SmsSender`` interface.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from .messages import DeliveryError, OutgoingSms


class HttpSmsSender:
    def __init__(self, *, url: str, token: str, timeout: float = 10.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("SMS gateway URL must be http(s)")
        self._url, self._token, self._timeout = url, token, timeout

    def send(self, message: OutgoingSms) -> None:
        body = json.dumps({"to": message.to, "text": message.text}).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self._token}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                reply = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DeliveryError(f"SMS gateway failed: {type(exc).__name__}") from None
        if not isinstance(reply, dict) or "id" not in reply:
            raise DeliveryError("SMS gateway gave no message id")
