"""Which errors mean a server the service needs is down, declared once for
every surface: PostgreSQL (a refused or dropped connection, a server shutting
down, a pool with no connection to give, a transaction the database gave up
on) and the rate-limit storage (Redis). Each becomes a 503 with Retry-After
and the request's transaction rolled back; the policy is in
docs/architecture.md, "Failure behaviour"."""

from __future__ import annotations

from limits.errors import StorageError
from sqlalchemy import exc as sa_exc

RETRY_AFTER_SECONDS = 5


def unavailable_part(error: BaseException | None) -> str | None:
    """The part that is down, as operators name it in logs, or None when
    ``error`` is not an outage."""
    # A commit that fails in the last after-request hook reaches the handlers
    # wrapped in Flask's InternalServerError.
    original = getattr(error, "original_exception", None)
    if original is not None:
        error = original
    if isinstance(error, StorageError):
        return "rate-limit storage"
    if isinstance(error, sa_exc.OperationalError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return "database"
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return "database"
    return None
