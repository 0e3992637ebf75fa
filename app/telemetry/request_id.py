"""The request id: one per request (or per background job), on every log line
written while it runs and echoed in the X-Request-Id answer header.

A caller's (or the proxy's) X-Request-Id is kept when it is well-formed:
8 to 64 letters, digits and ``._:-``, and nothing the redactor would mask (so
an id cannot smuggle a phone number or a token into the logs). Otherwise a
fresh one is made."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from app.telemetry.redaction import redact

HEADER = "X-Request-Id"
# Lower case, like ROUTE_KEY: gunicorn's log atoms name environ keys so.
ENVIRON_KEY = "privid.request_id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,63}")

_current: ContextVar[str | None] = ContextVar("privid_request_id", default=None)


def new_id() -> str:
    return secrets.token_hex(16)


def accept(sent: str | None) -> str:
    """The caller's id if it is well-formed, else a new one."""
    if sent and _WELL_FORMED.fullmatch(sent) and redact(sent) == sent:
        return sent
    return new_id()


def current() -> str | None:
    return _current.get()


@contextmanager
def bound(request_id: str) -> Iterator[str]:
    """Log lines written inside carry ``request_id``."""
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)
