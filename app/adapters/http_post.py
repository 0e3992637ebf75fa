"""Form POSTs to other servers (OIDC back-channel logout): the interface the
outbox sends them through, and the standard-library implementation.

The answer decides what the outbox does next: 2xx is delivered; a 4xx other
than 429 means the receiver refuses this message and always will
(``DeliveryRefused``: give up); anything else (5xx, 429, a timeout, no
connection, an answer that is not HTTP) may pass later (``DeliveryError``:
retry after the back-off). Redirects are not followed, and count as a
refusal: a receiver's address is registered exactly, and a form re-sent
elsewhere would carry its token there.

The receiver is a partner's server, not ours: a socket timeout bounds each
read, but one that answers a byte at a time would never trip it, and would
hold the outbox worker (and every email and SMS behind it) for as long as it
liked. So the whole exchange has a deadline, after which the connection is
cut. Only the status line and headers are read; the body never is.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from .messages import DeliveryError, DeliveryRefused

DEFAULT_TIMEOUT_SECONDS = 5.0
# The whole exchange, however the receiver paces it.
DEFAULT_DEADLINE_SECONDS = 10.0


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


class StdlibPoster:
    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
    ) -> None:
        self._timeout, self._deadline = timeout, max(deadline, timeout)

    def post(self, message: OutgoingPost) -> None:
        parts = urlsplit(message.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise DeliveryRefused("receiver address is not http(s)")
        try:
            port = parts.port
        except ValueError:
            raise DeliveryRefused("receiver address has a bad port") from None
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname, port, timeout=self._timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname, port, timeout=self._timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        expired = threading.Event()
        cut = threading.Timer(self._deadline, _cut, (connection, expired))
        cut.daemon = True
        cut.start()
        try:
            connection.request(
                "POST",
                path,
                body=urlencode(message.form).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # The class only: an error's text can quote the address.
            raise DeliveryError(f"receiver unreachable: {type(exc).__name__}") from None
        finally:
            cut.cancel()
            connection.close()
        if expired.is_set():
            # A cut mid-header can read as an answer: it is not one.
            raise DeliveryError("receiver too slow: deadline passed")
        judge(status)


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """Past the deadline: wake the read that is waiting, which then fails."""
    expired.set()
    sock = connection.sock
    if sock is None:
        return
    # socket.socket's own shutdown: an SSL socket's would drop its state
    # under the thread still reading it. Already closed is fine.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
