"""The documentation describes this repository: every file or directory that
docs/architecture.md or README.md names exists here (none lies outside it),
and every part of the code and every shipped configuration file is described."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DOCUMENTS = [ARCHITECTURE, ROOT / "README.md"]
# instance/ is runtime state (the embedded database, checkpoints), made by running
# the service, not part of the repository: documents may name files in it.
TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} - {"instance"} | {".ci"}
# `something/with/a/slash`, quoted as code.
QUOTED_PATH = re.compile(r"`(\.{0,2}/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.*-]*)+)`")


def _named_paths(document: Path) -> list[str]:
    found = QUOTED_PATH.findall(document.read_text(encoding="utf-8"))
    # API paths (/api/v1/…) and media types (application/json) are not files.
    return [p for p in found if p.startswith("..") or p.split("/", 1)[0] in TOP_LEVEL]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_path_the_documents_name_is_in_the_repository(document: Path):
    named = _named_paths(document)
    assert named, "the pattern finds the paths"
    missing = []
    for name in named:
        target = (ROOT / name).resolve()
        inside = target.is_relative_to(ROOT)
        exists = any(ROOT.glob(name)) if "*" in name else target.exists()
        if not (inside and exists):
            missing.append(name)
    assert missing == [], f"{document.name} names what this repository does not have"


def test_the_architecture_describes_every_part_of_the_code():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    parts = [f"{p.name}/" for p in (ROOT / "app").iterdir() if (p / "__init__.py").exists()]
    parts += [p.name for p in (ROOT / "app" / "adapters").glob("*.py") if p.name != "__init__.py"]
    parts += [p.name for p in (ROOT / "config").iterdir() if p.is_file()]
    parts += [f"{name}/" for name in ("migrations", "bench", "tests", "docs")]
    undescribed = [part for part in parts if part not in text]
    assert undescribed == [], "docs/architecture.md does not say what these are"
