"""The purpose catalogue: what users are shown is what the service does, and
a bad entry stops the service at start-up, named."""

from __future__ import annotations

import pytest

from app import create_app
from app.services.purposes import CatalogueError, load_catalogue
from app.settings import Settings
from tests.helpers import (
    HIGH_LIMITS,
    POLICY_VERSION,
    assert_problem,
    baseline_consent,
    bearer,
    new_person,
    register,
    start_registration,
)

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


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)  # one registration per required purpose


def test_each_purpose_shown_to_users_behaves_as_the_list_says(client, mailbox, sms):
    """GET /api/v1/purposes is what a user reads before deciding; every flag on
    it is a promise the service keeps, whatever the shipped catalogue holds."""
    shown = client.get("/api/v1/purposes")
    assert shown.status_code == 200
    purposes = shown.json["purposes"]
    assert purposes
    for purpose in purposes:
        for text in (purpose["title"], purpose["description"]):
            assert set(text) == {"zh-CN", "en"} and all(text.values()), purpose["code"]
    asked = {p["code"] for p in purposes if not p["per_client"]}
    consent = baseline_consent()
    assert {d["purpose"] for d in consent["decisions"]} == asked

    _, session = register(client, mailbox, sms, consent=consent)
    token = session["token"]
    checked: set[str] = set()
    for purpose in purposes:
        code = purpose["code"]
        if purpose["per_client"]:
            continue  # decided per partner, not on the account
        if purpose["required"]:
            # Refusing it at registration means there can be no account.
            refused = start_registration(
                client, new_person(), baseline_consent(**{code: "refused"})
            )
            assert_problem(refused, 403, "required-purpose-refused")
            checked.add("required")
        if not purpose["withdrawable"]:
            withdrawn = client.post(f"/api/v1/me/consent/{code}/withdraw", headers=bearer(token))
            assert_problem(withdrawn, 409, "not-withdrawable")
            checked.add("not withdrawable")
            continue
        granted = {**{d["purpose"]: d["decision"] for d in consent["decisions"]}, code: "granted"}
        batch = [{"purpose": c, "decision": d} for c, d in granted.items()]
        in_batch = client.post(
            "/api/v1/me/consent/decisions",
            json={"policy_version": POLICY_VERSION, "decisions": batch},
            headers=bearer(token),
        )
        if purpose["separate_consent"]:
            assert_problem(in_batch, 422, "validation-error")
            alone = client.post(
                f"/api/v1/me/consent/{code}/grant",
                json={"policy_version": POLICY_VERSION},
                headers=bearer(token),
            )
            assert alone.status_code == 200, (code, alone.json)
            checked.add("separate")
        else:
            assert in_batch.status_code == 200, (code, in_batch.json)
        withdrawn = client.post(f"/api/v1/me/consent/{code}/withdraw", headers=bearer(token))
        assert withdrawn.status_code == 200, (code, withdrawn.json)
        checked.add("withdrawable")
    # Each kind of promise was put to the test at least once.
    assert checked == {"required", "not withdrawable", "separate", "withdrawable"}


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
