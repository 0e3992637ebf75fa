"""Flask extensions shared by the blueprints."""

from __future__ import annotations

from flask import current_app, request
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


limiter = Limiter(client_address_key, headers_enabled=True, key_prefix="privid")
