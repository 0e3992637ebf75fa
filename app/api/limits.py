"""Rate-limit keys and values. Keys are blind indexes, so the limiter's storage
never holds an address in clear."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from flask import request

from app.api.context import runtime
from app.errors import ServiceError
from app.extensions import current_settings
from app.services.directory import Directory


def setting(name: str) -> Callable[[], str]:
    return lambda: str(getattr(current_settings(), name))


def body_field_key(field: str, kind: str = "identifier") -> Callable[[], str]:
    """The blind index of an address in the JSON body; malformed input still gets a key."""

    def key() -> str:
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # absurdly nested JSON: parse_body refuses it
            data = None
        raw = data.get(field) if isinstance(data, dict) else None
        if not isinstance(raw, str):
            return f"{field}:absent"
        rt = runtime()
        directory = Directory(None, rt.blind_index, rt.settings.default_phone_region)  # type: ignore[arg-type]
        parse = {"email": directory.email, "phone": directory.phone}.get(kind, directory.identifier)
        try:
            return f"{field}:{parse(raw).index}"
        except (ServiceError, UnicodeError):
            digest = hashlib.sha256(raw.strip().lower().encode("utf-8", "replace")).hexdigest()
            return f"{field}:raw:{digest}"

    return key


def path_key(name: str) -> Callable[[], str]:
    return lambda: f"{name}:{(request.view_args or {}).get(name, '')}"
