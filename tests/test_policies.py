"""Privacy policy versions: public reading, publishing by operators (API, with a
recent sign-in) and from the command line, and what a material change asks again."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.models import AuditEvent, ConsentRecord, PolicyVersion
from tests.conftest import POLICY_EFFECTIVE
from tests.helpers import (
    CATALOGUE,
    HIGH_LIMITS,
    POLICY_VERSION,
    assert_problem,
    baseline_consent,
    bearer,
    login,
    new_person,
    nothing_changes,
    pointers,
    register,
    start_registration,
)

POLICY_TEXT = "The test platform's privacy policy."  # published by the app fixture
AT_SIGN_IN = [p.code for p in CATALOGUE.decided_at_sign_in()]
MAX_AGE = 15 * 60  # operator_max_auth_age_seconds, default


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock


# -- helpers -------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def new_policy(version: str, effective_at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "version": version,
        "effective_at": iso(effective_at),
        "text": f"Privacy policy, version {version}.",
        "material": False,
        "changes": "Wording.",
        "affected_purposes": [],
        **overrides,
    }


def publish(client, token: str, body: dict[str, Any]):
    return client.post("/api/v1/admin/policies", json=body, headers=bearer(token))


def make_operator(app, client, mailbox, sms) -> tuple[Any, str]:
    person, _ = register(client, mailbox, sms)
    result = app.test_cli_runner().invoke(args=["operator-grant", person.email])
    assert result.exit_code == 0, result.output
    signed_in = login(client, person.email, person.password)
    assert signed_in.status_code == 200 and signed_in.json["status"] == "authenticated"
    return person, signed_in.json["token"]


def policy_rows(app) -> list[PolicyVersion]:
    with app.extensions["privid.session_factory"]() as db:
        rows = db.execute(select(PolicyVersion).order_by(PolicyVersion.id)).scalars().all()
        db.expunge_all()
        return list(rows)


def ledger(app) -> list[ConsentRecord]:
    with app.extensions["privid.session_factory"]() as db:
        rows = db.execute(select(ConsentRecord).order_by(ConsentRecord.id)).scalars().all()
        db.expunge_all()
        return list(rows)


def ledger_count(app) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        return int(connection.execute(select(func.count()).select_from(ConsentRecord)).scalar())


def decide(client, token: str, items: list[dict[str, str]], version: str):
    return client.post(
        "/api/v1/me/consent/decisions",
        json={"policy_version": version, "decisions": items},
        headers=bearer(token),
    )


def pending_codes(body: dict[str, Any]) -> list[str]:
    return [p["code"] for p in (body["consent_required"] or {"purposes": []})["purposes"]]


# -- reading -----------------------------------------------------------------------


def test_policies_are_public_and_the_current_one_is_marked(app, client):
    response = client.get("/api/v1/policies")
    assert response.status_code == 200
    (only,) = response.json["policies"]
    assert only["version"] == POLICY_VERSION
    assert only["current"] is True
    assert only["material"] is False
    assert only["text_sha256"] == hashlib.sha256(POLICY_TEXT.encode()).hexdigest()
    assert only["url"] == f"/api/v1/policies/{POLICY_VERSION}"
    assert datetime.fromisoformat(only["effective_at"]) == POLICY_EFFECTIVE

    one = client.get(f"/api/v1/policies/{POLICY_VERSION}")
    assert one.status_code == 200
    assert one.json["text"] == POLICY_TEXT
    assert one.json["text_sha256"] == hashlib.sha256(one.json["text"].encode()).hexdigest()
    assert one.json["current"] is True


def test_an_unknown_version_is_not_found(app, client):
    assert_problem(client.get("/api/v1/policies/1999-01"), 404, "not-found")


def test_every_version_stays_readable_and_only_one_is_current(
    app, client, mailbox, sms, frozen_clock
):
    _, token = make_operator(app, client, mailbox, sms)
    now = frozen_clock.now()
    assert publish(client, token, new_policy("2026-11", now)).status_code == 201
    future = publish(client, token, new_policy("2027-01", now + timedelta(days=30)))
    assert future.status_code == 201
    assert future.json["current"] is False

    listed = client.get("/api/v1/policies").json["policies"]
    assert [p["version"] for p in listed] == ["2027-01", "2026-11", POLICY_VERSION]
    assert [p["current"] for p in listed] == [False, True, False]
    for item in listed:
        body = client.get(item["url"]).json
        assert body["text_sha256"] == hashlib.sha256(body["text"].encode()).hexdigest()
        assert body["text_sha256"] == item["text_sha256"]
    assert client.get(f"/api/v1/policies/{POLICY_VERSION}").json["text"] == POLICY_TEXT

    frozen_clock.advance(days=30)
    listed = client.get("/api/v1/policies").json["policies"]
    assert {p["version"]: p["current"] for p in listed} == {
        "2027-01": True,
        "2026-11": False,
        POLICY_VERSION: False,
    }


# -- publishing through the API ----------------------------------------------------------


def test_an_operator_publishes_and_it_is_audited(app, client, mailbox, sms, frozen_clock):
    _, token = make_operator(app, client, mailbox, sms)
    operator_id = client.get("/api/v1/me", headers=bearer(token)).json["user_id"]
    body = new_policy(
        "2026-12",
        frozen_clock.now(),
        material=True,
        changes="A new analytics provider.",
        affected_purposes=["analytics"],
        text="政策全文 (full text).",
    )
    response = publish(client, token, body)
    assert response.status_code == 201, response.json
    out = response.json
    assert out["version"] == "2026-12" and out["current"] is True and out["material"] is True
    assert out["affected_purposes"] == ["analytics"]
    assert out["text_sha256"] == hashlib.sha256("政策全文 (full text).".encode()).hexdigest()
    assert out["url"] == "/api/v1/policies/2026-12"
    assert datetime.fromisoformat(out["published_at"]) == frozen_clock.now()
    assert client.get("/api/v1/policies/2026-12").json["text"] == "政策全文 (full text)."

    with app.extensions["privid.session_factory"]() as db:
        event = db.execute(
            select(AuditEvent).where(AuditEvent.event_type == "policy.published")
            .order_by(AuditEvent.id.desc()).limit(1)
        ).scalar_one()  # fmt: skip
        assert event.actor_id == operator_id
        assert event.details["version"] == "2026-12"
        assert event.details["text_sha256"] == out["text_sha256"]
    assert policy_rows(app)[-1].published_by == operator_id


def test_only_operators_publish(app, client, runtime, mailbox, sms, frozen_clock):
    _, session = register(client, mailbox, sms)
    body = new_policy("2026-12", frozen_clock.now())
    with nothing_changes(app, runtime, mailbox, sms, "non-operator"):
        assert_problem(publish(client, session["token"], body), 403, "operator-only")
    with nothing_changes(app, runtime, mailbox, sms, "anonymous"):
        assert_problem(client.post("/api/v1/admin/policies", json=body), 401)
    assert [p.version for p in policy_rows(app)] == [POLICY_VERSION]


def test_an_operator_with_an_old_sign_in_must_sign_in_again(
    app, client, runtime, mailbox, sms, frozen_clock
):
    person, token = make_operator(app, client, mailbox, sms)
    body = new_policy("2026-12", frozen_clock.now() + timedelta(hours=1))

    frozen_clock.advance(seconds=MAX_AGE + 1)
    with nothing_changes(app, runtime, mailbox, sms, "stale operator"):
        response = publish(client, token, body)
    problem = assert_problem(response, 401, "insufficient-user-authentication")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_user_authentication"' in challenge
    assert f"max_age={MAX_AGE}" in challenge
    assert "15 minutes" in problem["detail"]
    # The session itself is still good for everything else.
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200

    fresh = login(client, person.email, person.password).json["token"]
    assert publish(client, fresh, body).status_code == 201


def test_an_operator_sign_in_exactly_at_the_limit_is_still_recent(
    app, client, mailbox, sms, frozen_clock
):
    _, token = make_operator(app, client, mailbox, sms)
    frozen_clock.advance(seconds=MAX_AGE)
    response = publish(client, token, new_policy("2026-12", frozen_clock.now()))
    assert response.status_code == 201, response.json


def test_an_operator_owing_consent_cannot_publish(app, client, mailbox, sms, frozen_clock):
    person = new_person()
    partial = {
        "policy_version": POLICY_VERSION,
        "decisions": [{"purpose": "account", "decision": "granted"}],
    }
    register(client, mailbox, sms, person=person, consent=partial)
    assert app.test_cli_runner().invoke(args=["operator-grant", person.email]).exit_code == 0
    signed_in = login(client, person.email, person.password).json
    assert signed_in["status"] == "consent_required"
    response = publish(client, signed_in["token"], new_policy("2026-12", frozen_clock.now()))
    assert_problem(response, 403, "consent-required")
    assert len(policy_rows(app)) == 1


@pytest.mark.parametrize(
    ("change", "status", "slug", "pointer"),
    [
        pytest.param({"version": POLICY_VERSION}, 409, "policy-version-exists", None, id="exists"),
        pytest.param(
            {"material": True, "affected_purposes": ["marketing"]},
            422,
            "validation-error",
            "#/affected_purposes",
            id="unknown-purpose",
        ),
        pytest.param(
            {"material": False, "affected_purposes": ["analytics"]},
            422,
            "validation-error",
            "#/affected_purposes",
            id="purposes-without-material-change",
        ),
        pytest.param(
            {"effective_at": "2026-01-01T00:00:00Z"},
            422,
            "validation-error",
            "#/effective_at",
            id="before-the-current-version",
        ),
        pytest.param(
            {"effective_at": "2026-12-01T00:00:00"},
            422,
            "validation-error",
            "#/effective_at",
            id="no-time-zone",
        ),
        pytest.param(
            {"effective_at": "next tuesday"}, 422, "validation-error", "#/effective_at", id="date"
        ),
        pytest.param(
            {"version": "2026/12"}, 422, "validation-error", "#/version", id="version-pattern"
        ),
        pytest.param({"text": ""}, 422, "validation-error", "#/text", id="empty-text"),
        pytest.param({"material": "yes"}, 422, "validation-error", "#/material", id="material"),
        pytest.param(
            {"text_sha256": "0" * 64}, 422, "validation-error", "#/text_sha256", id="extra-field"
        ),
    ],
)
def test_bad_publications_change_nothing(
    app, client, runtime, mailbox, sms, frozen_clock, change, status, slug, pointer
):
    _, token = make_operator(app, client, mailbox, sms)
    body = {**new_policy("2026-12", frozen_clock.now()), **change}
    with nothing_changes(app, runtime, mailbox, sms, slug):
        problem = assert_problem(publish(client, token, body), status, slug)
    if pointer is not None:
        assert pointer in pointers(problem), problem
    assert [p.version for p in policy_rows(app)] == [POLICY_VERSION]


# -- publishing from the command line ----------------------------------------------------


def cli_publish(app, tmp_path, *args: str, text: str = "Policy text from a file.\n"):
    path = tmp_path / "policy.md"
    path.write_text(text, encoding="utf-8")
    return app.test_cli_runner().invoke(args=["policy-publish", "--text-file", str(path), *args])


def test_policy_publish_command(app, client, tmp_path, frozen_clock):
    result = cli_publish(
        app, tmp_path, "--version", "2026-12", "--changes", "Reworded.", text="全文。\n"
    )
    assert result.exit_code == 0, result.output
    assert "published policy 2026-12" in result.output
    listed = client.get("/api/v1/policies").json["policies"]
    assert [(p["version"], p["current"]) for p in listed] == [
        ("2026-12", True),
        (POLICY_VERSION, False),
    ]
    body = client.get("/api/v1/policies/2026-12").json
    assert body["text"] == "全文。\n" and body["material"] is False
    assert body["text_sha256"] == hashlib.sha256("全文。\n".encode()).hexdigest()
    assert datetime.fromisoformat(body["effective_at"]) == frozen_clock.now()

    scheduled = cli_publish(
        app,
        tmp_path,
        "--version",
        "2027-01",
        "--changes",
        "Analytics provider.",
        "--effective-at",
        "2027-01-01T00:00:00",
        "--material",
        "--purpose",
        "analytics",
    )
    assert scheduled.exit_code == 0, scheduled.output
    body = client.get("/api/v1/policies/2027-01").json
    assert body["current"] is False and body["material"] is True
    assert body["affected_purposes"] == ["analytics"]
    assert datetime.fromisoformat(body["effective_at"]) == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", POLICY_VERSION, "--changes", "x"], "already published"),
        (["--version", "2026-12", "--changes", "x", "--material", "--purpose", "x"], "Unknown"),
        (["--version", "2026-12", "--changes", "x", "--purpose", "analytics"], "material"),
        (
            ["--version", "2026-12", "--changes", "x", "--effective-at", "2026-01-01"],
            "before the current",
        ),
    ],
)
def test_policy_publish_command_refusals(app, tmp_path, args, message):
    before = policy_rows(app)
    result = cli_publish(app, tmp_path, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert [p.version for p in policy_rows(app)] == [p.version for p in before]


# -- what a new version asks ---------------------------------------------------------------


def test_a_material_change_asks_again_for_the_purposes_it_touches(
    app, client, mailbox, sms, frozen_clock
):
    person, first = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))
    _, operator = make_operator(app, client, mailbox, sms)
    frozen_clock.advance(minutes=5)
    published = publish(
        client,
        operator,
        new_policy(
            "2026-12",
            frozen_clock.now(),
            material=True,
            changes="A new analytics provider.",
            affected_purposes=["analytics"],
        ),
    )
    assert published.status_code == 201
    new_sha = published.json["text_sha256"]

    for signed_in in (
        login(client, person.email, person.password),
        login(client, person.phone, person.password),
    ):
        assert signed_in.status_code == 200
        assert signed_in.json["status"] == "consent_required"
        step = signed_in.json["consent_required"]
        assert step["policy_version"] == "2026-12"
        assert step["policy_url"] == "/api/v1/policies/2026-12"
        assert pending_codes(signed_in.json) == ["analytics"]
        assert step["purposes"][0]["title"]["en"] == "Analytics and web beacons"
    token = signed_in.json["token"]
    assert_problem(client.get("/api/v1/me", headers=bearer(token)), 403, "consent-required")
    overview = client.get("/api/v1/me/consent", headers=bearer(token)).json
    assert overview["policy_version"] == "2026-12"
    assert [p["code"] for p in overview["pending"]] == ["analytics"]

    # Decisions made against the old text are refused, and change nothing.
    count = ledger_count(app)
    again = [{"purpose": "analytics", "decision": "granted"}]
    assert_problem(decide(client, token, again, POLICY_VERSION), 409, "stale-policy-version")
    assert ledger_count(app) == count

    # The same decision as before is a real decision now: it is recorded.
    decided = decide(client, token, again, "2026-12")
    assert decided.status_code == 200, decided.json
    assert decided.json == {"status": "authenticated", "pending": []}
    record = ledger(app)[-1]
    assert (record.purpose, record.decision, record.channel) == ("analytics", "granted", "login")
    assert (record.policy_version, record.policy_sha256) == ("2026-12", new_sha)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200

    # Asked once: the next sign-in is full.
    assert login(client, person.email, person.password).json["status"] == "authenticated"
    # A session opened before the change is not cut off mid-way.
    assert client.get("/api/v1/me", headers=bearer(first["token"])).status_code == 200


def test_a_material_change_touching_no_purpose_in_particular_asks_for_all(
    app, client, mailbox, sms, frozen_clock
):
    person, _ = register(client, mailbox, sms)
    operator_person, operator = make_operator(app, client, mailbox, sms)
    frozen_clock.advance(minutes=5)
    body = new_policy("2026-12", frozen_clock.now(), material=True, changes="Rewritten.")
    assert publish(client, operator, body).status_code == 201

    signed_in = login(client, person.email, person.password).json
    assert signed_in["status"] == "consent_required"
    assert pending_codes(signed_in) == AT_SIGN_IN
    same_as_before = baseline_consent()["decisions"]
    decided = decide(client, signed_in["token"], same_as_before, "2026-12")
    assert decided.json == {"status": "authenticated", "pending": []}
    assert {r.policy_version for r in ledger(app)[-len(AT_SIGN_IN) :]} == {"2026-12"}
    # The operator, who also decided under the old text, is asked as well.
    operator_again = login(client, operator_person.email, operator_person.password).json
    assert operator_again["status"] == "consent_required"


def test_a_non_material_change_asks_nothing(app, client, mailbox, sms, frozen_clock):
    person, _ = register(client, mailbox, sms)
    _, operator = make_operator(app, client, mailbox, sms)
    frozen_clock.advance(minutes=5)
    assert publish(client, operator, new_policy("2026-12", frozen_clock.now())).status_code == 201

    signed_in = login(client, person.email, person.password).json
    assert signed_in["status"] == "authenticated"
    assert signed_in["consent_required"] is None
    # New decisions cite the version in force, not the one before.
    token = signed_in["token"]
    grant = [{"purpose": "analytics", "decision": "granted"}]
    assert_problem(decide(client, token, grant, POLICY_VERSION), 409, "stale-policy-version")
    assert decide(client, token, grant, "2026-12").status_code == 200
    assert ledger(app)[-1].policy_version == "2026-12"
    # And a registration form showing the old version is refused before any code is sent.
    late = new_person()
    assert_problem(
        start_registration(client, late, baseline_consent()), 409, "stale-policy-version"
    )
    assert mailbox.to(late.email) == []


def test_a_scheduled_material_change_asks_once_it_takes_effect(
    app, client, mailbox, sms, frozen_clock
):
    person, _ = register(client, mailbox, sms)
    _, operator = make_operator(app, client, mailbox, sms)
    body = new_policy(
        "2026-12",
        frozen_clock.now() + timedelta(days=4),
        material=True,
        changes="Biometrics.",
        affected_purposes=["device_biometrics", "security"],
    )
    assert publish(client, operator, body).status_code == 201

    assert login(client, person.email, person.password).json["status"] == "authenticated"
    frozen_clock.advance(days=4)
    signed_in = login(client, person.email, person.password).json
    assert signed_in["status"] == "consent_required"
    assert pending_codes(signed_in) == ["security", "device_biometrics"]


def test_a_material_change_to_partner_sharing_does_not_hold_up_sign_in(
    app, client, mailbox, sms, frozen_clock
):
    person, _ = register(client, mailbox, sms)
    _, operator = make_operator(app, client, mailbox, sms)
    frozen_clock.advance(minutes=5)
    body = new_policy(
        "2026-12",
        frozen_clock.now(),
        material=True,
        changes="New partner terms.",
        affected_purposes=["partner_sharing"],
    )
    assert publish(client, operator, body).status_code == 201
    assert login(client, person.email, person.password).json["status"] == "authenticated"


def test_a_material_change_to_a_required_purpose_must_be_agreed(
    app, client, mailbox, sms, frozen_clock
):
    person, _ = register(client, mailbox, sms)
    _, operator = make_operator(app, client, mailbox, sms)
    frozen_clock.advance(minutes=5)
    body = new_policy(
        "2026-12",
        frozen_clock.now(),
        material=True,
        changes="Longer archive.",
        affected_purposes=["legal_archive"],
    )
    assert publish(client, operator, body).status_code == 201
    signed_in = login(client, person.email, person.password).json
    assert pending_codes(signed_in) == ["legal_archive"]
    refused = decide(
        client, signed_in["token"], [{"purpose": "legal_archive", "decision": "refused"}], "2026-12"
    )
    assert_problem(refused, 403, "required-purpose-refused")
    assert client.get("/api/v1/me/consent", headers=bearer(signed_in["token"])).status_code == 401
    assert ledger(app)[-1].decision == "refused"


def test_a_backdated_material_change_still_asks_those_who_decided_before_it_was_published(
    app, client, mailbox, sms, frozen_clock
):
    """Decisions made under the old text, before the new one was even published,
    are not decisions about the new one, whatever date it says it took effect."""
    person, _ = register(client, mailbox, sms)
    _, operator = make_operator(app, client, mailbox, sms)
    frozen_clock.advance(minutes=5)
    body = new_policy(
        "2026-11",
        frozen_clock.now() - timedelta(days=20),
        material=True,
        changes="Analytics.",
        affected_purposes=["analytics"],
    )
    assert publish(client, operator, body).status_code == 201
    signed_in = login(client, person.email, person.password).json
    assert signed_in["status"] == "consent_required"
    assert pending_codes(signed_in) == ["analytics"]


def test_a_non_material_change_is_a_notice_at_the_next_sign_in_only(
    app, client, mailbox, sms, clock
):
    person, _ = register(client, mailbox, sms)
    clock.advance(days=1)
    result = app.test_cli_runner().invoke(
        args=["policy-publish", "--version", "2026-11-b", "--text-file", __file__,
              "--changes", "Clearer wording of the cookie section."]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    clock.advance(minutes=1)
    first = login(client, person.email, person.password)
    assert first.status_code == 200 and first.json["status"] == "authenticated"
    assert first.json["policy_notice"]["version"] == "2026-11-b"
    assert first.json["policy_notice"]["changes"] == "Clearer wording of the cookie section."
    second = login(client, person.email, person.password)
    assert second.json["policy_notice"] is None


def test_a_material_change_during_a_session_asks_at_once(app, client, mailbox, sms, clock):
    _person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    assert client.get("/api/v1/me", headers=auth).status_code == 200
    clock.advance(minutes=1)
    published = app.test_cli_runner().invoke(
        args=["policy-publish", "--version", "2026-12-m", "--text-file", __file__,
              "--changes", "Analytics now covers a new partner.", "--material",
              "--purpose", "analytics"]
    )  # fmt: skip
    assert published.exit_code == 0, published.output
    clock.advance(seconds=1)
    held = client.get("/api/v1/me", headers=auth)
    assert held.status_code == 403 and held.json["type"].endswith("/consent-required")
    owed = client.get("/api/v1/me/consent", headers=auth).json
    assert [p["code"] for p in owed["pending"]] == ["analytics"]
    decided = client.post(
        "/api/v1/me/consent/decisions",
        json={"policy_version": "2026-12-m",
              "decisions": [{"purpose": "analytics", "decision": "refused"}]},
        headers=auth,
    )  # fmt: skip
    assert decided.status_code == 200 and decided.json["status"] == "authenticated"
    assert client.get("/api/v1/me", headers=auth).status_code == 200
