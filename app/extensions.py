"""Flask extensions shared by the blueprints."""

from __future__ import annotations

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app.settings import Settings

limiter = Limiter(get_remote_address, headers_enabled=True, key_prefix="privid")


def current_settings() -> Settings:
    settings: Settings = current_app.extensions["privid.settings"]
    return settings
