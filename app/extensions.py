"""Flask extensions shared by the blueprints."""

from __future__ import annotations

from flask import Flask, current_app, request
from flask_limiter import Limiter

from app.security.addresses import address_key
from app.security.tokens import derive_key
from app.settings import Settings


def current_settings() -> Settings:
    settings: Settings = current_app.extensions["privid.settings"]
    return settings


def limiter_hash_key() -> bytes:
    """The key of every hashed value in rate-limit storage."""
    return derive_key(current_settings().secret_key_bytes, "rate-limit-keys")


def client_address_key() -> str:
    """Per-client limits: a keyed hash of the address, so the limiter's storage
    (Redis) never holds one."""
    return address_key(limiter_hash_key(), request.remote_addr)


class RouteLimiter(Limiter):
    """flask-limiter with limits declared on routes only.

    A route's ``@limiter.limit`` wrapper checks its own limits. The extension
    also runs a before-request pass on every request for application-wide,
    default and blueprint limits; this service declares none, so that pass
    only ever found nothing to do, at a cost on every request. It is skipped,
    and ``init_app`` refuses a configuration that would need it."""

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware:
            return
        super()._check_request_limit(callable_name, in_middleware)

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        manager = self.limit_manager
        if manager.application_limits or manager.default_limits or manager._blueprint_limits:
            raise RuntimeError("limits apply per route here: declare them with @limiter.limit")


limiter = RouteLimiter(client_address_key, headers_enabled=True, key_prefix="privid")
