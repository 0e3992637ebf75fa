"""Where the files that are not Python code live: migrations/ and config/."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: Literal["migrations", "config"]) -> Path:
    """An installed package carries copies in app/_bundled/ (setup.py puts them
    there); a checkout, or an editable install of one, has them at the top level."""
    bundled = _PACKAGE / "_bundled" / name
    return bundled if bundled.is_dir() else _PACKAGE.parent / name
