"""Build hook: an installed copy carries migrations/ and config/, and the
compiled message catalogues of every capability with pages.

migrations/ and config/ stay at the repository's top level (where alembic and
operators expect them); a wheel gets copies under app/_bundled/, which
app/resources.py finds. The .po catalogues under app/ are compiled to .mo
here (never committed): next to the .po in an editable install, into the build
for a wheel. The metadata itself is in pyproject.toml.
"""

import shutil
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("migrations", "config")
ROOT = Path(__file__).resolve().parent
# Every capability with pages keeps its catalogues beside its templates.
CATALOGUES = (
    "app/**/translations/*/LC_MESSAGES/*.po",
    "verification/**/translations/*/LC_MESSAGES/*.po",
)


def compile_catalogues(target_root: Path) -> None:
    for po in sorted(po for pattern in CATALOGUES for po in ROOT.glob(pattern)):
        with po.open("rb") as source:
            catalogue = read_po(source, locale=po.parent.parent.name)
        mo = target_root / po.relative_to(ROOT).with_suffix(".mo")
        mo.parent.mkdir(parents=True, exist_ok=True)
        with mo.open("wb") as compiled:
            write_mo(compiled, catalogue)  # fuzzy entries stay out


class BuildPyWithResources(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            # An editable install reads the checkout itself: compile in place.
            compile_catalogues(ROOT)
            return
        compile_catalogues(Path(self.build_lib))
        for name in BUNDLED:
            target = Path(self.build_lib) / "app" / "_bundled" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithResources})
