"""How the service talks to the rate-limit storage (Redis in production), for
both of its clients: flask-limiter and the replay cache (DPoP and client
assertion ``jti``, identity documents). Declared once so both fail the same way
when it is down: any storage error comes as limits' ``StorageError`` whatever
the backend (app/http/outages.py answers it), and a Redis that stops answering
costs a request the configured timeout, never a worker for good."""

from __future__ import annotations

from limits.storage import Storage, storage_from_string

from app.settings import Settings

# Schemes served by redis-py (and valkey's fork), which take socket timeouts.
_REDIS_SCHEMES = ("redis", "rediss", "valkey")


def storage_options(settings: Settings) -> dict[str, float | str | bool]:
    options: dict[str, float | str | bool] = {"wrap_exceptions": True}
    if settings.ratelimit_storage_uri.split(":", 1)[0].split("+", 1)[0] in _REDIS_SCHEMES:
        timeout = settings.ratelimit_storage_timeout_seconds
        options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    return options


def replay_cache(settings: Settings) -> Storage:
    """The storage behind the URI for the service's own counters; the workers
    are synchronous, so an async:// URI is a configuration error."""
    storage = storage_from_string(settings.ratelimit_storage_uri, **storage_options(settings))
    if not isinstance(storage, Storage):
        raise ValueError("the rate-limit storage must be a synchronous one (not async://)")
    return storage
