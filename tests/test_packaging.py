"""What the project declares is what it needs: app/ and verification/ type-check, every
distribution the code imports is a declared dependency, and an installed copy
(not an editable one, not run from the checkout) can migrate and serve."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest
import requests

from tests.fakes import free_port

ROOT = Path(__file__).resolve().parent.parent
# What a source copy leaves out: local state, caches and build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "instance", "build", "*.egg-info", "__pycache__", ".*_cache"
)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        _canonical(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0])
        for spec in project["dependencies"]
    }


def _imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for path in [*(ROOT / "app").rglob("*.py"), *(ROOT / "verification").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"app", "verification", "__future__"}


def test_app_type_checks_clean():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "app", "verification"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_imported_distribution_is_a_declared_dependency():
    providers = importlib.metadata.packages_distributions()
    declared = _declared_distributions()
    imported = _imported_top_level_modules()
    assert {"flask", "sqlalchemy", "joserfc", "stdnum"} <= imported  # the walk sees the code
    undeclared = {
        module: sorted(providers.get(module, ["<not installed>"]))
        for module in imported
        if not {_canonical(d) for d in providers.get(module, [])} & declared
    }
    assert undeclared == {}, "imported but not in [project] dependencies"


@pytest.mark.timeout(180)
def test_an_installed_copy_migrates_and_serves(tmp_path: Path):
    """`pip install .` (no editable link), run from a directory that is not the
    checkout: the migrations and the shipped configuration must be in the
    package. The dependencies are the test environment's own (no network), and
    the database is a SQLite file whichever database the suite runs on: this is
    about what the package carries."""
    source, venv, elsewhere = tmp_path / "src", tmp_path / "venv", tmp_path / "elsewhere"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The suite's installed dependencies (and build backend), after the venv's own.
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    installed = subprocess.run(
        [*pip, "--no-deps", "--no-build-isolation", "--no-index", str(source)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    shutil.rmtree(source)  # nothing may still point into the source copy
    # The identity verification capability's page and compiled catalogue too.
    shipped = site / "verification"
    assert (shipped / "templates" / "verification" / "identity.html").exists()
    assert (shipped / "translations" / "zh_Hans_CN" / "LC_MESSAGES" / "messages.mo").exists()

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PRIVID_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PRIVID_DATABASE_URL"] = f"sqlite:///{tmp_path / 'data' / 'privid.db'}"
    where = subprocess.run(
        [python, "-c", "import app; print(app.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout

    privid = venv / "bin" / "privid"
    migrated = subprocess.run(
        [privid, "migrate"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    port = free_port()
    server = subprocess.Popen(
        [privid, "serve", "--port", str(port)],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:] if server.stderr else ""
            try:
                health = requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "privid serve did not start"
                time.sleep(0.2)
        assert health.status_code == 200
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        # The purpose catalogue and the development policy came from the package.
        purposes = requests.get(f"{base}/api/v1/purposes", timeout=5)
        assert purposes.status_code == 200
        assert any(p["code"] == "security" for p in purposes.json()["purposes"])
        policies = requests.get(f"{base}/api/v1/policies", timeout=5)
        assert policies.status_code == 200 and policies.json()["policies"]
        # The pages' templates, stylesheet and compiled catalogues were installed.
        archive = requests.get(f"{base}/policies", headers={"Accept-Language": "zh-CN"}, timeout=5)
        assert archive.status_code == 200 and "隐私政策历史版本" in archive.text
        assert requests.get(f"{base}/assets/pages.css", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=20)
