"""verification/ is a capability on top of app's public interfaces: nothing in
``app`` imports it (no cycle), it is registered once, last, through the
plug-in point, and its tables can hold no image, video or template."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from sqlalchemy import JSON, LargeBinary, String, Text

from app.capabilities import INSTALLED, installed
from app.models import Base
from verification.models import IdentityVerification

ROOT = Path(__file__).resolve().parent.parent
# Column names that would invite a face, a fingerprint or a recording.
BIOMETRIC_WORDS = ("image", "photo", "picture", "selfie", "video", "face", "template", "biometric")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_nothing_in_app_imports_verification():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "app").rglob("*.py")
        if any(m == "verification" or m.startswith("verification.") for m in imported_modules(path))
    ]
    assert offenders == []


def test_app_imports_without_verification_loaded():
    # Importing the app package (not its capabilities) must not load verification.
    code = "import sys, app, app.services.container; print('verification' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_it_is_installed_last_through_the_plug_in_point():
    assert INSTALLED[-1] == "verification"
    (capability,) = [c for c in installed() if c.name == "verification"]
    assert IdentityVerification in capability.models


def test_no_column_can_hold_an_image_video_or_template():
    table = IdentityVerification.__table__
    for column in table.columns:
        assert not isinstance(column.type, LargeBinary | Text | JSON), column.name
        if isinstance(column.type, String):
            assert column.type.length is not None and column.type.length <= 128, column.name


def test_no_table_has_a_biometric_column():
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            named = column.name.lower()
            assert not any(word in named for word in BIOMETRIC_WORDS), f"{table.name}.{named}"
