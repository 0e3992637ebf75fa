"""The purpose catalogue is checked at start-up; a bad entry is named."""

from __future__ import annotations

import tomllib

import pytest

from app import create_app
from app.services.purposes import DEFAULT_CATALOGUE, CatalogueError, LegalBasis, load_catalogue
from app.settings import Settings

ENTRY = """
[[purpose]]
code = "{code}"
legal_basis = "{basis}"
required = {required}
data_categories = ["x"]
retention = "{retention}"
recipients = []
cross_border = false
depends_on_it = []
title = {{ zh-CN = "标题", en = "Title" }}
description = {{ zh-CN = "说明", en = "Description" }}
"""


def entry(code="extra", basis="consent", required="false", retention="P30D") -> str:
    return ENTRY.format(code=code, basis=basis, required=required, retention=retention)


def write(tmp_path, text: str):
    path = tmp_path / "purposes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_catalogue_matches_the_policy():
    catalogue = load_catalogue()
    by_code = {p.code: p for p in catalogue}
    assert set(by_code) == {
        "account", "session_cookies", "security", "device_biometrics",
        "identity_verification", "wechat_login", "partner_sharing", "cross_border",
        "legal_archive", "analytics",
    }  # fmt: skip
    assert by_code["account"].legal_basis is LegalBasis.CONTRACT and by_code["account"].required
    assert by_code["legal_archive"].legal_basis is LegalBasis.LEGAL_OBLIGATION
    assert not by_code["legal_archive"].withdrawable
    for separate in ("identity_verification", "partner_sharing", "cross_border"):
        assert by_code[separate].needs_separate_action, separate
    assert by_code["identity_verification"].sensitive
    assert by_code["partner_sharing"].per_client
    assert by_code["cross_border"].cross_border and not by_code["cross_border"].required
    assert not by_code["analytics"].required
    # Every text exists in both languages.
    raw = tomllib.loads(DEFAULT_CATALOGUE.read_text(encoding="utf-8"))
    for item in raw["purpose"]:
        assert item["title"]["zh-CN"] and item["title"]["en"], item["code"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (entry(basis="because"), "purpose 'extra': legal_basis"),
        (entry(retention="three years"), "purpose 'extra': retention"),
        (entry(code="Bad Code"), "purpose 'Bad Code': code"),
        (entry() + entry(), "listed twice: extra"),
        (entry(required="true"), "purpose 'extra': a consent-based purpose cannot be required"),
        (entry().replace("recipients = []\n", ""), "purpose 'extra': recipients"),
        (entry().replace("cross_border = false", "cross_border = false\nsecret = 1"), "secret"),
        ("", "no [[purpose]] entries"),
        ("[[purpose]\n", "cannot read"),
    ],
)
def test_a_bad_entry_is_named(tmp_path, text, named):
    with pytest.raises(CatalogueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_catalogue(write(tmp_path, text))


def test_the_service_refuses_to_start_with_a_bad_catalogue(tmp_path):
    path = write(tmp_path, entry(basis="vibes"))
    with pytest.raises(CatalogueError, match="purpose 'extra'"):
        create_app(Settings(purposes_file=str(path), database_url=f"sqlite:///{tmp_path}/x.db"))
