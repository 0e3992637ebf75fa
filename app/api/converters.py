"""URL converters: a path segment that cannot be an id never reaches the database
(a NUL or an overlong value gives 404, not a driver error)."""

from __future__ import annotations

from werkzeug.routing import BaseConverter


class IdConverter(BaseConverter):
    """Our ids: UUIDs as text."""

    regex = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class CodeConverter(BaseConverter):
    """Short machine names: purpose codes and policy versions."""

    regex = r"[A-Za-z0-9._-]{1,40}"
