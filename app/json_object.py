"""JSON objects from bytes a stranger sent (a proof's payload, a partner's
answer, a request parameter): one rule for what counts as one."""

from __future__ import annotations

import json
from typing import Any


def json_object(text: str | bytes) -> dict[str, Any] | None:
    """``text`` parsed, if it is a JSON object; None if it is not JSON, is
    JSON of another kind (an array, a string, a number), or nests deeper than
    the parser recurses (a thousand ``[`` fit in a small proof)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None
