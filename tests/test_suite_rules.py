"""Rules the suite keeps so it stays readable: a test module never imports
another test module (what is shared lives in tests/helpers.py), so running one
file never depends on how another is written."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_test_module_imports_another():
    offenders = {
        path.name: sorted(m for m in _imported_modules(path) if m.startswith("tests.test_"))
        for path in sorted(TESTS.rglob("*.py"))
    }
    offenders = {name: modules for name, modules in offenders.items() if modules}
    assert offenders == {}, f"move what these share into tests/helpers.py: {offenders}"
