"""Consent at the moment of authentication: decisions per purpose at registration
and at every sign-in, a session limited to the consent step until they arrive,
separate consent, refusals, withdrawal, the hash-chained ledger and its receipts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app.models import AuditEvent, ConsentRecord
from app.models import Session as SessionRow
from tests.conftest import PG_URL
from tests.helpers import (
    ANDROID_CHROME,
    CATALOGUE,
    HIGH_LIMITS,
    POLICY_VERSION,
    Person,
    assert_invalid_token,
    assert_problem,
    baseline_consent,
    bearer,
    login,
    new_person,
    nothing_changes,
    pointers,
    register,
    request_sms_code,
    sms_sign_in,
    start_registration,
)


def ua_hash(app) -> str:
    from app.security.tokens import derive_key

    key = derive_key(app.extensions["privid.settings"].secret_key_bytes, "user-agent")
    return hmac.new(key, ANDROID_CHROME.encode(), hashlib.sha256).hexdigest()


POLICY_TEXT = "The test platform's privacy policy."  # published by the app fixture
POLICY_SHA256 = hashlib.sha256(POLICY_TEXT.encode()).hexdigest()
AT_SIGN_IN = [p.code for p in CATALOGUE.decided_at_sign_in()]
REQUIRED = [p.code for p in CATALOGUE if p.required]
OPTIONAL = [p.code for p in CATALOGUE.decided_at_sign_in() if not p.required]
SEPARATE = ["identity_verification", "cross_border"]
NOT_WITHDRAWABLE = ["account", "session_cookies", "legal_archive"]
CLIENT_ADDRESS = "203.0.113.77"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    client.environ_base["REMOTE_ADDR"] = CLIENT_ADDRESS
    client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    return client


# -- helpers -------------------------------------------------------------------


def ledger(app) -> list[ConsentRecord]:
    with app.extensions["privid.session_factory"]() as db:
        rows = db.execute(select(ConsentRecord).order_by(ConsentRecord.id)).scalars().all()
        db.expunge_all()
        return list(rows)


def ledger_rows(app) -> list[tuple[Any, ...]]:
    table = ConsentRecord.__table__
    with app.extensions["privid.engine"].connect() as connection:
        return [tuple(r) for r in connection.execute(select(table).order_by(table.c.id))]


def ledger_count(app) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        return int(connection.execute(select(func.count()).select_from(ConsentRecord)).scalar())


def user_of(app, session_id: str) -> str:
    with app.extensions["privid.session_factory"]() as db:
        row = db.get(SessionRow, session_id)
        assert row is not None
        return row.user_id


def decisions(**choices: str) -> list[dict[str, str]]:
    return [{"purpose": code, "decision": choice} for code, choice in choices.items()]


def decide(client, token: str, items: list[dict[str, str]], version: str = POLICY_VERSION):
    return client.post(
        "/api/v1/me/consent/decisions",
        json={"policy_version": version, "decisions": items},
        headers=bearer(token),
    )


def register_without_consent(client, mailbox, sms, person: Person | None = None):
    """A registration whose form sent no consent block at all."""
    person = person or new_person()
    started = client.post(
        "/api/v1/registration",
        json={
            "email": person.email,
            "phone": person.phone,
            "full_name": person.full_name,
            "password": person.password,
        },
    )
    assert started.status_code == 202, started.json
    flow = started.json["flow_id"]
    first = client.post(
        f"/api/v1/registration/{flow}/verify",
        json={"channel": "email", "code": mailbox.last_code(person.email)},
    )
    assert first.status_code == 200, first.json
    done = client.post(
        f"/api/v1/registration/{flow}/verify",
        json={"channel": "phone", "code": sms.last_code(person.phone), "token_delivery": "bearer"},
    )
    assert done.status_code == 201, done.json
    return person, done.json["session"]


def pending_codes(body: dict[str, Any]) -> list[str]:
    return [p["code"] for p in body["consent_required"]["purposes"]]


def overview(client, token: str) -> dict[str, Any]:
    response = client.get("/api/v1/me/consent", headers=bearer(token))
    assert response.status_code == 200, response.json
    return response.json


def in_force(client, token: str) -> dict[str, str]:
    return {d["purpose"]: d["decision"] for d in overview(client, token)["decisions"]}


# -- registration --------------------------------------------------------------


def test_registration_records_one_decision_per_purpose_and_signs_in_fully(
    app, client, mailbox, sms
):
    person, session = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))

    assert session["status"] == "authenticated"
    assert session["consent_required"] is None
    me = client.get("/api/v1/me", headers=bearer(session["token"]))
    assert me.status_code == 200 and me.json["email"] == person.email

    records = ledger(app)
    user_id = me.json["user_id"]
    assert [r.purpose for r in records] == AT_SIGN_IN
    assert "partner_sharing" not in {r.purpose for r in records}
    expected = {code: "granted" for code in REQUIRED} | {
        code: "refused" for code in OPTIONAL if code != "analytics"
    }
    expected["analytics"] = "granted"
    assert {r.purpose: r.decision for r in records} == expected
    # Keyed, so the hash cannot be reversed with a list of common user agents.
    assert hashlib.sha256(ANDROID_CHROME.encode()).hexdigest() != ua_hash(app)
    ua_hash_expected = ua_hash(app)
    for record in records:
        assert record.user_id == user_id
        assert record.channel == "registration"
        assert record.policy_version == POLICY_VERSION
        assert record.policy_sha256 == POLICY_SHA256
        assert record.client_id is None
        assert record.ip_prefix == "203.0.113.0/24"
        assert record.user_agent_hash == ua_hash_expected
        assert len(record.hash) == 64
    # The account's own chain: each record follows the one before it.
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash

    body = overview(client, session["token"])
    assert body["policy_version"] == POLICY_VERSION
    assert body["pending"] == []
    assert {d["purpose"]: d["decision"] for d in body["decisions"]} == expected

    history = client.get("/api/v1/me/consent/history", headers=bearer(session["token"]))
    assert history.status_code == 200
    assert [r["record_id"] for r in history.json["records"]] == [r.id for r in records]


def test_refusing_a_required_purpose_at_registration_stops_before_any_code_is_sent(
    app, client, runtime, mailbox, sms
):
    person = new_person()
    with nothing_changes(app, runtime, mailbox, sms, "refused registration"):
        response = start_registration(client, person, baseline_consent(account="refused"))
        body = assert_problem(response, 403, "required-purpose-refused")
    assert "Account service" in body["detail"]
    assert mailbox.to(person.email) == [] and sms.to(person.phone) == []
    assert ledger_count(app) == 0


@pytest.mark.parametrize(
    ("consent", "status", "slug", "pointer"),
    [
        pytest.param(
            {**baseline_consent(), "policy_version": "2025-01"},
            409,
            "stale-policy-version",
            None,
            id="stale-version",
        ),
        pytest.param(
            baseline_consent(identity_verification="granted"),
            422,
            "validation-error",
            f"#/consent/decisions/{AT_SIGN_IN.index('identity_verification')}/purpose",
            id="separate-grant-in-batch",
        ),
        pytest.param(
            {
                "policy_version": POLICY_VERSION,
                "decisions": [
                    *baseline_consent()["decisions"],
                    *decisions(partner_sharing="refused"),
                ],
            },
            422,
            "validation-error",
            f"#/consent/decisions/{len(AT_SIGN_IN)}/purpose",
            id="per-client-purpose",
        ),
        pytest.param(
            {"policy_version": POLICY_VERSION, "decisions": decisions(marketing="granted")},
            422,
            "validation-error",
            "#/consent/decisions/0/purpose",
            id="unknown-purpose",
        ),
        pytest.param(
            {"policy_version": POLICY_VERSION, "decisions": decisions(analytics="withdrawn")},
            422,
            "validation-error",
            "#/consent/decisions/0/decision",
            id="withdrawn-value",
        ),
    ],
)
def test_registration_with_bad_consent_is_refused_and_nothing_is_sent(
    app, client, runtime, mailbox, sms, consent, status, slug, pointer
):
    person = new_person()
    with nothing_changes(app, runtime, mailbox, sms, slug):
        body = assert_problem(start_registration(client, person, consent), status, slug)
    if pointer is not None:
        assert pointer in pointers(body), body
    assert mailbox.to(person.email) == [] and sms.to(person.phone) == []


def test_registration_without_consent_limits_the_session_until_decided(app, client, mailbox, sms):
    person, session = register_without_consent(client, mailbox, sms)
    token = session["token"]

    assert session["status"] == "consent_required"
    step = session["consent_required"]
    assert step["policy_version"] == POLICY_VERSION
    assert step["policy_url"] == f"/api/v1/policies/{POLICY_VERSION}"
    assert pending_codes(session) == AT_SIGN_IN
    account = next(p for p in step["purposes"] if p["code"] == "account")
    assert account["title"] == {"zh-CN": "账户服务", "en": "Account service"}
    assert account["description"]["en"].startswith("What it takes to register")
    assert account["required"] is True and account["withdrawable"] is False
    separate = {p["code"] for p in step["purposes"] if p["separate_consent"]}
    assert separate == set(SEPARATE)
    assert ledger_count(app) == 0  # nothing is decided for the user, nothing granted by default

    for method, path in [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/me/sessions"),
        ("POST", "/api/v1/me/consent/analytics/withdraw"),
        ("POST", "/api/v1/me/consent/cross_border/grant"),
    ]:
        kwargs: dict[str, Any] = {"json": {"policy_version": POLICY_VERSION}}
        response = client.open(path, method=method, headers=bearer(token), **kwargs)
        assert_problem(response, 403, "consent-required")

    # The consent endpoints stay open.
    body = overview(client, token)
    assert [p["code"] for p in body["pending"]] == AT_SIGN_IN
    assert body["decisions"] == []

    decided = decide(client, token, baseline_consent()["decisions"])
    assert decided.status_code == 200, decided.json
    assert decided.json == {"status": "authenticated", "pending": []}
    me = client.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json["email"] == person.email
    records = ledger(app)
    assert [r.purpose for r in records] == AT_SIGN_IN
    assert {r.channel for r in records} == {"login"}
    assert {r.user_id for r in records} == {me.json["user_id"]}

    # The next sign-in has nothing more to ask.
    again = login(client, person.email, person.password)
    assert again.status_code == 200 and again.json["status"] == "authenticated"


def test_registration_with_some_decisions_asks_for_the_rest(app, client, mailbox, sms):
    partial = {
        "policy_version": POLICY_VERSION,
        "decisions": decisions(**dict.fromkeys(REQUIRED, "granted"), analytics="refused"),
    }
    _, session = register(client, mailbox, sms, consent=partial)
    assert session["status"] == "consent_required"
    assert pending_codes(session) == [c for c in OPTIONAL if c != "analytics"]
    assert len(ledger(app)) == len(REQUIRED) + 1
    assert_problem(
        client.get("/api/v1/me", headers=bearer(session["token"])), 403, "consent-required"
    )


# -- sign-in -------------------------------------------------------------------


def test_every_sign_in_asks_until_every_purpose_is_decided(app, client, mailbox, sms):
    person, _ = register_without_consent(client, mailbox, sms)

    by_password = login(client, person.phone, person.password)
    assert by_password.status_code == 200
    assert by_password.json["status"] == "consent_required"
    assert pending_codes(by_password.json) == AT_SIGN_IN
    assert by_password.json["token"]

    started = request_sms_code(client, person.phone)
    assert started.status_code == 202
    by_sms = sms_sign_in(client, started, person.phone, sms.last_code(person.phone, count=2))
    assert by_sms.status_code == 200
    assert by_sms.json["status"] == "consent_required"
    assert pending_codes(by_sms.json) == AT_SIGN_IN
    assert_problem(
        client.get("/api/v1/me", headers=bearer(by_sms.json["token"])), 403, "consent-required"
    )

    # Deciding in one session lifts that session's limit.
    token = by_sms.json["token"]
    assert decide(client, token, baseline_consent()["decisions"]).json["status"] == "authenticated"
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    full = login(client, person.email, person.password)
    assert full.json["status"] == "authenticated"
    assert full.json["consent_required"] is None


def test_deciding_in_parts_keeps_the_limit_until_the_last_part(app, client, mailbox, sms):
    _, session = register_without_consent(client, mailbox, sms)
    token = session["token"]

    first = decide(client, token, decisions(**dict.fromkeys(REQUIRED, "granted")))
    assert first.status_code == 200
    assert first.json["status"] == "consent_required"
    assert [p["code"] for p in first.json["pending"]] == OPTIONAL
    assert_problem(client.get("/api/v1/me", headers=bearer(token)), 403, "consent-required")

    rest = decide(client, token, decisions(**dict.fromkeys(OPTIONAL, "refused")))
    assert rest.json == {"status": "authenticated", "pending": []}
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_cookie_session_in_the_consent_step_needs_its_csrf_token(app, client, mailbox, sms):
    person, _ = register_without_consent(client, mailbox, sms)
    signed_in = login(client, person.email, person.password, delivery="cookie")
    assert signed_in.json["status"] == "consent_required"
    body = baseline_consent()
    assert_problem(client.post("/api/v1/me/consent/decisions", json=body), 403, "csrf-failed")
    assert ledger_count(app) == 0
    done = client.post(
        "/api/v1/me/consent/decisions",
        json=body,
        headers={"X-CSRF-Token": signed_in.json["csrf_token"]},
    )
    assert done.status_code == 200 and done.json["status"] == "authenticated"
    assert client.get("/api/v1/me").status_code == 200


def test_refusing_optional_purposes_never_blocks_the_service(app, client, mailbox, sms):
    person, session = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))
    token = session["token"]

    refused = decide(client, token, decisions(analytics="refused", security="refused"))
    # security was already refused: only analytics changes.
    assert refused.status_code == 200
    assert refused.json == {"status": "authenticated", "pending": []}
    assert [(r.purpose, r.decision, r.channel) for r in ledger(app)[len(AT_SIGN_IN) :]] == [
        ("analytics", "refused", "api")
    ]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    again = login(client, person.email, person.password)
    assert again.json["status"] == "authenticated"
    assert client.get("/api/v1/me", headers=bearer(again.json["token"])).status_code == 200


def test_refusing_a_required_purpose_ends_every_session_and_is_recorded(app, client, mailbox, sms):
    person, first = register(client, mailbox, sms)
    second = login(client, person.email, person.password).json
    assert second["status"] == "authenticated"
    before = ledger_count(app)

    response = decide(client, first["token"], decisions(legal_archive="refused"))
    body = assert_problem(response, 403, "required-purpose-refused")
    assert "Legal archive" in body["detail"]

    for session in (first, second):
        assert_invalid_token(client.get("/api/v1/me/consent", headers=bearer(session["token"])))
    records = ledger(app)
    assert len(records) == before + 1
    assert (records[-1].purpose, records[-1].decision, records[-1].channel) == (
        "legal_archive",
        "refused",
        "api",
    )
    with app.extensions["privid.session_factory"]() as db:
        rows = db.execute(select(SessionRow)).scalars().all()
        assert rows and all(r.revoked_at is not None for r in rows)
        assert {r.revoke_reason for r in rows} == {"required_purpose_refused"}

    # Coming back: the sign-in asks for that purpose again, and agreeing restores the service.
    back = login(client, person.email, person.password)
    assert back.json["status"] == "consent_required"
    assert pending_codes(back.json) == ["legal_archive"]
    agreed = decide(client, back.json["token"], decisions(legal_archive="granted"))
    assert agreed.json["status"] == "authenticated"


def test_refusing_a_required_purpose_in_the_consent_step_records_the_whole_batch(
    app, client, mailbox, sms
):
    _, session = register_without_consent(client, mailbox, sms)
    response = decide(client, session["token"], baseline_consent(account="refused")["decisions"])
    assert_problem(response, 403, "required-purpose-refused")
    records = ledger(app)
    assert [r.purpose for r in records] == AT_SIGN_IN
    assert next(r for r in records if r.purpose == "account").decision == "refused"
    assert {r.channel for r in records} == {"login"}
    assert_invalid_token(client.get("/api/v1/me/consent", headers=bearer(session["token"])))


# -- separate consent ------------------------------------------------------------


def test_separate_consent_is_never_granted_in_a_batch(app, client, mailbox, sms):
    _, session = register_without_consent(client, mailbox, sms)
    token = session["token"]
    for code in SEPARATE:
        batch = baseline_consent(**{code: "granted"})["decisions"]
        body = assert_problem(decide(client, token, batch), 422, "validation-error")
        assert f"#/decisions/{AT_SIGN_IN.index(code)}/purpose" in pointers(body)
        assert "separate" in body["detail"]
    assert ledger_count(app) == 0

    # Alone, it is a valid consent; refusing it alongside other decisions is fine too.
    alone = decide(client, token, decisions(identity_verification="granted"))
    assert alone.status_code == 200 and alone.json["status"] == "consent_required"
    rest = [d for d in baseline_consent()["decisions"] if d["purpose"] != "identity_verification"]
    assert decide(client, token, rest).json["status"] == "authenticated"
    assert in_force(client, token)["identity_verification"] == "granted"
    assert in_force(client, token)["cross_border"] == "refused"


def test_separate_consent_through_its_own_switch(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    token = session["token"]
    assert in_force(client, token)["cross_border"] == "refused"

    granted = client.post(
        "/api/v1/me/consent/cross_border/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert granted.status_code == 200, granted.json
    (record,) = granted.json["records"]
    assert (record["purpose"], record["decision"], record["channel"]) == (
        "cross_border",
        "granted",
        "settings",
    )
    assert record["policy_sha256"] == POLICY_SHA256
    assert in_force(client, token)["cross_border"] == "granted"
    # Granting it again changes nothing and says so.
    count = ledger_count(app)
    again = client.post(
        "/api/v1/me/consent/cross_border/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert_problem(again, 409, "no-change")
    assert ledger_count(app) == count


@pytest.mark.parametrize(
    ("purpose", "body", "status", "slug"),
    [
        ("partner_sharing", {"policy_version": POLICY_VERSION}, 422, "validation-error"),
        ("marketing", {"policy_version": POLICY_VERSION}, 404, "not-found"),
        ("cross_border", {"policy_version": "2025-01"}, 409, "stale-policy-version"),
        ("cross_border", {"policy_version": POLICY_VERSION, "user_id": "x"}, 422, None),
    ],
)
def test_bad_single_grants_change_nothing(app, client, mailbox, sms, purpose, body, status, slug):
    _, session = register(client, mailbox, sms)
    before = ledger_rows(app)
    response = client.post(
        f"/api/v1/me/consent/{purpose}/grant", json=body, headers=bearer(session["token"])
    )
    assert_problem(response, status, slug)
    assert ledger_rows(app) == before


# -- bad decisions ------------------------------------------------------------------


BAD_BATCHES = [
    pytest.param(
        {"policy_version": POLICY_VERSION, "decisions": decisions(marketing="granted")},
        422,
        "validation-error",
        "#/decisions/0/purpose",
        id="unknown-purpose",
    ),
    pytest.param(
        {"policy_version": "2025-01", "decisions": decisions(analytics="granted")},
        409,
        "stale-policy-version",
        None,
        id="stale-policy-version",
    ),
    pytest.param(
        {
            "policy_version": POLICY_VERSION,
            "decisions": [
                {"purpose": "analytics", "decision": "granted"},
                {"purpose": "analytics", "decision": "refused"},
            ],
        },
        422,
        "validation-error",
        "#/decisions/1/purpose",
        id="duplicate-purpose",
    ),
    pytest.param(
        {
            "policy_version": POLICY_VERSION,
            "decisions": decisions(cross_border="granted", analytics="granted"),
        },
        422,
        "validation-error",
        "#/decisions/0/purpose",
        id="separate-grant-bundled",
    ),
    pytest.param(
        {
            "policy_version": POLICY_VERSION,
            "decisions": decisions(analytics="refused", identity_verification="granted"),
        },
        422,
        "validation-error",
        "#/decisions/1/purpose",
        id="separate-grant-bundled-with-a-refusal",
    ),
    pytest.param(
        {"policy_version": POLICY_VERSION, "decisions": decisions(partner_sharing="granted")},
        422,
        "validation-error",
        "#/decisions/0/purpose",
        id="per-client-purpose",
    ),
    pytest.param(
        {"policy_version": POLICY_VERSION, "decisions": decisions(partner_sharing="refused")},
        422,
        "validation-error",
        "#/decisions/0/purpose",
        id="per-client-refusal",
    ),
    pytest.param(
        {"policy_version": POLICY_VERSION, "decisions": decisions(analytics="withdrawn")},
        422,
        "validation-error",
        "#/decisions/0/decision",
        id="withdrawn-value",
    ),
    pytest.param(
        {
            "policy_version": POLICY_VERSION,
            "decisions": decisions(analytics="granted"),
            "user_id": "00000000-0000-4000-8000-000000000000",
        },
        422,
        "validation-error",
        "#/user_id",
        id="another-users-id",
    ),
    pytest.param(
        {
            "policy_version": POLICY_VERSION,
            "decisions": [
                {"purpose": "analytics", "decision": "granted", "user_id": "someone-else"}
            ],
        },
        422,
        "validation-error",
        "#/decisions/0/user_id",
        id="another-users-id-per-decision",
    ),
    pytest.param(
        {"policy_version": POLICY_VERSION, "decisions": []},
        422,
        "validation-error",
        "#/decisions",
        id="empty-batch",
    ),
    pytest.param(
        {"policy_version": POLICY_VERSION, "decisions": decisions(analytics="yes")},
        422,
        "validation-error",
        "#/decisions/0/decision",
        id="unknown-decision",
    ),
    pytest.param(
        {"decisions": decisions(analytics="granted")},
        422,
        "validation-error",
        "#/policy_version",
        id="no-policy-version",
    ),
]


@pytest.mark.parametrize("in_consent_step", [True, False], ids=["consent-step", "full-session"])
@pytest.mark.parametrize(("body", "status", "slug", "pointer"), BAD_BATCHES)
def test_bad_decisions_are_problems_and_leave_the_ledger_alone(
    app, client, mailbox, sms, in_consent_step, body, status, slug, pointer
):
    if in_consent_step:
        _, session = register_without_consent(client, mailbox, sms)
    else:
        _, session = register(client, mailbox, sms)
    before = ledger_rows(app)

    response = client.post(
        "/api/v1/me/consent/decisions", json=body, headers=bearer(session["token"])
    )
    problem = assert_problem(response, status, slug)
    if pointer is not None:
        assert pointer in pointers(problem), problem

    assert ledger_rows(app) == before
    # The session is where it was: still limited, or still full.
    me = client.get("/api/v1/me", headers=bearer(session["token"]))
    assert me.status_code == (403 if in_consent_step else 200)


def test_a_replayed_submission_is_refused_and_recorded_once(app, client, mailbox, sms):
    _, session = register_without_consent(client, mailbox, sms)
    batch = baseline_consent()["decisions"]
    assert decide(client, session["token"], batch).status_code == 200
    count = ledger_count(app)
    assert count == len(AT_SIGN_IN)

    assert_problem(decide(client, session["token"], batch), 409, "no-change")
    assert_problem(
        decide(client, session["token"], decisions(analytics="refused")), 409, "no-change"
    )
    assert ledger_count(app) == count

    # A batch with one real change records just that change.
    mixed = decide(client, session["token"], decisions(analytics="granted", security="refused"))
    assert mixed.status_code == 200
    assert [(r.purpose, r.decision) for r in ledger(app)[count:]] == [("analytics", "granted")]


def test_nobody_decides_for_someone_else(app, client, mailbox, sms):
    _, alice = register(client, mailbox, sms)
    _, bob = register_without_consent(client, mailbox, sms)
    alice_id = user_of(app, alice["session_id"])
    bob_id = user_of(app, bob["session_id"])
    before = ledger_rows(app)
    body = {**baseline_consent(), "user_id": alice_id}
    assert_problem(
        client.post("/api/v1/me/consent/decisions", json=body, headers=bearer(bob["token"])), 422
    )
    assert ledger_rows(app) == before

    # Bob's decisions land on Bob, whatever Alice has on record.
    answer = decide(client, bob["token"], baseline_consent(analytics="granted")["decisions"])
    assert answer.status_code == 200
    new = ledger(app)[len(before) :]
    assert new and {r.user_id for r in new} == {bob_id}
    assert in_force(client, alice["token"])["analytics"] == "refused"


def test_no_session_no_decisions(app, client):
    assert_problem(client.post("/api/v1/me/consent/decisions", json=baseline_consent()), 401)
    assert_invalid_token(
        client.post(
            "/api/v1/me/consent/decisions", json=baseline_consent(), headers=bearer("x" * 43)
        )
    )
    assert ledger_count(app) == 0


# -- withdrawal ------------------------------------------------------------------------


def test_withdrawing_consent_runs_its_effects_and_keeps_history(app, client, runtime, mailbox, sms):
    calls: list[tuple[str, str]] = []
    runtime.withdrawal_effects.register("analytics", lambda db, uid: calls.append(("a", uid)))
    runtime.withdrawal_effects.register("security", lambda db, uid: calls.append(("s", uid)))
    person, session = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))
    token = session["token"]
    user_id = client.get("/api/v1/me", headers=bearer(token)).json["user_id"]
    earlier = ledger_rows(app)
    newest = ledger(app)[-1]

    response = client.post("/api/v1/me/consent/analytics/withdraw", headers=bearer(token))
    assert response.status_code == 200, response.json
    (record,) = response.json["records"]
    assert (record["purpose"], record["decision"], record["channel"]) == (
        "analytics",
        "withdrawn",
        "settings",
    )
    assert record["policy_version"] == POLICY_VERSION
    assert record["prev_hash"] == newest.hash  # it follows the account's newest record
    assert calls == [("a", user_id)]

    after = ledger_rows(app)
    assert after[: len(earlier)] == earlier  # what was decided before is untouched
    assert len(after) == len(earlier) + 1
    assert in_force(client, token)["analytics"] == "withdrawn"

    # Nothing left to withdraw: a problem, no record, no effect.
    assert_problem(
        client.post("/api/v1/me/consent/analytics/withdraw", headers=bearer(token)),
        409,
        "not-granted",
    )
    assert_problem(
        client.post("/api/v1/me/consent/security/withdraw", headers=bearer(token)),
        409,
        "not-granted",
    )
    assert calls == [("a", user_id)]
    assert ledger_rows(app) == after

    # Withdrawing an optional purpose does not block the next sign-in.
    assert login(client, person.email, person.password).json["status"] == "authenticated"
    assert app.test_cli_runner().invoke(args=["consent-verify"]).exit_code == 0


def test_decisions_in_force_are_the_latest_and_only_they_are_read(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))
    token = session["token"]
    user_id = client.get("/api/v1/me", headers=bearer(token)).json["user_id"]
    for _ in range(3):  # a long history: withdrawn, granted, ... and granted last
        for step in ("withdraw", "grant"):
            done = client.post(
                f"/api/v1/me/consent/analytics/{step}",
                json={"policy_version": POLICY_VERSION},
                headers=bearer(token),
            )
            assert done.status_code == 200, done.json
    assert in_force(client, token)["analytics"] == "granted"
    withdrawn = client.post("/api/v1/me/consent/analytics/withdraw", headers=bearer(token))
    assert withdrawn.status_code == 200
    assert in_force(client, token)["analytics"] == "withdrawn"

    from sqlalchemy import event

    from app.cli import unit_of_work

    loaded: list[int] = []
    with app.app_context(), unit_of_work() as svc:
        history = svc.consent.history(user_id)
        svc.db.expunge_all()  # what current() reads is loaded afresh
        listen = (ConsentRecord, "load", lambda record, _context: loaded.append(record.id))
        event.listen(*listen)
        try:
            current = svc.consent.current(user_id)
        finally:
            event.remove(*listen)
    folded = {(r.purpose, r.client_id): r.id for r in history}  # the newest wins
    assert {key: record.id for key, record in current.items()} == folded
    # One row per purpose decided, not the whole history.
    assert sorted(loaded) == sorted(folded.values())
    assert len(history) >= len(folded) + 7


@pytest.mark.parametrize("purpose", NOT_WITHDRAWABLE)
def test_contract_and_legal_purposes_cannot_be_withdrawn(
    app, client, runtime, mailbox, sms, purpose
):
    calls: list[str] = []
    runtime.withdrawal_effects.register(purpose, lambda db, uid: calls.append(uid))
    _, session = register(client, mailbox, sms)
    before = ledger_rows(app)
    response = client.post(
        f"/api/v1/me/consent/{purpose}/withdraw", headers=bearer(session["token"])
    )
    body = assert_problem(response, 409, "not-withdrawable")
    assert "/api/v1/me/cancellation" in body["detail"]
    assert ledger_rows(app) == before and calls == []
    assert client.get("/api/v1/me", headers=bearer(session["token"])).status_code == 200


def test_withdrawing_an_unknown_purpose_is_not_found(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    before = ledger_rows(app)
    response = client.post(
        "/api/v1/me/consent/marketing/withdraw", headers=bearer(session["token"])
    )
    assert_problem(response, 404, "not-found")
    assert ledger_rows(app) == before


def test_a_separately_granted_purpose_can_be_withdrawn(app, client, runtime, mailbox, sms):
    calls: list[str] = []
    runtime.withdrawal_effects.register("identity_verification", lambda db, uid: calls.append(uid))
    _, session = register(client, mailbox, sms)
    token = session["token"]
    assert decide(client, token, decisions(identity_verification="granted")).status_code == 200
    withdrawn = client.post(
        "/api/v1/me/consent/identity_verification/withdraw", headers=bearer(token)
    )
    assert withdrawn.status_code == 200
    assert calls == [user_of(app, session["session_id"])]
    assert in_force(client, token)["identity_verification"] == "withdrawn"


# -- receipts -------------------------------------------------------------------------


def verify_receipt(client, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json)
    obj = jws.deserialize_compact(token, keys, algorithms=["ES256"])
    assert obj.protected["alg"] == "ES256"
    return json.loads(obj.payload)


def test_receipts_are_signed_and_verifiable_with_the_published_keys(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms, consent=baseline_consent(analytics="granted"))
    token = session["token"]
    history = client.get("/api/v1/me/consent/history", headers=bearer(token)).json["records"]
    record = next(r for r in history if r["purpose"] == "analytics")

    jwks = client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    (key,) = jwks.json["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert "d" not in key  # never the private part

    response = client.get(
        f"/api/v1/me/consent/records/{record['record_id']}/receipt", headers=bearer(token)
    )
    assert response.status_code == 200
    receipt = response.json["receipt"]
    claims = verify_receipt(client, receipt)
    assert claims["record_id"] == record["record_id"]
    assert claims["purpose"] == "analytics" and claims["decision"] == "granted"
    assert claims["user_id"] == user_of(app, session["session_id"])
    assert claims["policy_version"] == POLICY_VERSION
    assert claims["policy_sha256"] == POLICY_SHA256
    assert claims["channel"] == "registration"
    assert claims["hash"] == record["hash"] and claims["prev_hash"] == record["prev_hash"]
    assert claims["ip_prefix"] == "203.0.113.0/24"

    # A receipt whose content was changed no longer verifies.
    header, _payload, signature = receipt.split(".")
    forged_claims = {**claims, "decision": "refused"}
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    with pytest.raises(JoseError):
        verify_receipt(client, f"{header}.{forged}.{signature}")


def test_receipts_are_available_during_the_consent_step(app, client, mailbox, sms):
    _, session = register_without_consent(client, mailbox, sms)
    token = session["token"]
    decide(client, token, decisions(account="granted"))
    (record,) = client.get("/api/v1/me/consent/history", headers=bearer(token)).json["records"]
    response = client.get(
        f"/api/v1/me/consent/records/{record['record_id']}/receipt", headers=bearer(token)
    )
    assert response.status_code == 200
    assert verify_receipt(client, response.json["receipt"])["purpose"] == "account"


def test_nobody_gets_a_receipt_for_someone_elses_record(app, client, mailbox, sms):
    _, alice = register(client, mailbox, sms)
    _, bob = register(client, mailbox, sms)
    alice_ids = [
        r["record_id"]
        for r in client.get("/api/v1/me/consent/history", headers=bearer(alice["token"])).json[
            "records"
        ]
    ]
    for record_id in (alice_ids[0], 999_999):
        response = client.get(
            f"/api/v1/me/consent/records/{record_id}/receipt", headers=bearer(bob["token"])
        )
        body = assert_problem(response, 404, "not-found")
        assert "receipt" not in body
    assert_problem(client.get(f"/api/v1/me/consent/records/{alice_ids[0]}/receipt"), 401)


# -- the ledger ---------------------------------------------------------------------------


def test_ledger_chains_each_account_and_seals_them_together(app, client, mailbox, sms):
    register(client, mailbox, sms)
    _, bob = register_without_consent(client, mailbox, sms)
    decide(client, bob["token"], baseline_consent()["decisions"])
    records = ledger(app)
    assert len(records) == 2 * len(AT_SIGN_IN)
    by_user = [[r for r in records if r.user_id == u] for u in {r.user_id for r in records}]
    assert len(by_user) == 2
    for chain in by_user:
        for before, after in itertools.pairwise(chain):
            assert after.prev_hash == before.hash
    assert by_user[0][0].prev_hash != by_user[1][0].prev_hash  # each starts on its own
    assert len({r.hash for r in records}) == len(records)
    result = app.test_cli_runner().invoke(args=["consent-verify"])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    assert f"sealed {len(records)} new records in seal 1" in result.output
    assert {r.seal for r in ledger(app)} == {1}


def test_consent_verify_names_the_first_tampered_record(app, client, mailbox, sms):
    register(client, mailbox, sms)
    register(client, mailbox, sms)
    records = ledger(app)
    victim = next(r for r in records[len(AT_SIGN_IN) :] if r.purpose == "analytics")
    assert victim.decision == "refused"
    engine = app.extensions["privid.engine"]
    tamper = text("UPDATE consent_records SET decision = 'granted' WHERE id = :id")

    if PG_URL:
        # The database itself refuses to rewrite or remove a decision...
        for statement in (tamper, text("DELETE FROM consent_records WHERE id = :id")):
            with pytest.raises(DBAPIError) as refused, engine.begin() as connection:
                connection.execute(statement, {"id": victim.id})
            assert "append-only" in str(refused.value)
        assert ledger_count(app) == len(records)
        assert app.test_cli_runner().invoke(args=["consent-verify"]).exit_code == 0
        # ...so only someone who can switch its trigger off can, and that still shows.
        with engine.begin() as connection:
            connection.execute(
                text("ALTER TABLE consent_records DISABLE TRIGGER consent_records_append_only")
            )
            try:
                connection.execute(tamper, {"id": victim.id})
            finally:
                connection.execute(
                    text("ALTER TABLE consent_records ENABLE TRIGGER consent_records_append_only")
                )
        with pytest.raises(DBAPIError), engine.begin() as connection:
            connection.execute(tamper, {"id": victim.id})  # the trigger is back
    else:
        with engine.begin() as connection:
            connection.execute(tamper, {"id": victim.id})

    result = app.test_cli_runner().invoke(args=["consent-verify"])
    assert result.exit_code == 1
    assert f"record {victim.id}:" in result.output
    assert "does not match" in result.output


def _delete_bypassing_the_trigger(engine, condition: str, record_id: int) -> None:
    """Only someone who can switch the PostgreSQL trigger off can delete rows."""
    with engine.begin() as connection:
        if PG_URL:
            connection.execute(
                text("ALTER TABLE consent_records DISABLE TRIGGER consent_records_append_only")
            )
        connection.execute(
            text(f"DELETE FROM consent_records WHERE id {condition} :id"), {"id": record_id}
        )
        if PG_URL:
            connection.execute(
                text("ALTER TABLE consent_records ENABLE TRIGGER consent_records_append_only")
            )


def test_consent_verify_notices_removed_records(app, client, mailbox, sms):
    register(client, mailbox, sms)
    records = ledger(app)
    engine = app.extensions["privid.engine"]
    _delete_bypassing_the_trigger(engine, "=", records[2].id)
    result = app.test_cli_runner().invoke(args=["consent-verify"])
    assert result.exit_code == 1 and f"record {records[3].id}:" in result.output

    _delete_bypassing_the_trigger(engine, ">=", records[2].id)
    result = app.test_cli_runner().invoke(args=["consent-verify"])
    assert result.exit_code == 1 and "missing" in result.output


def test_ledger_and_audit_trail_hold_no_clear_personal_data(app, client, runtime, mailbox, sms):
    person = new_person(full_name="欧阳娜娜")
    person, session = register(
        client, mailbox, sms, person=person, consent=baseline_consent(analytics="granted")
    )
    token = session["token"]
    client.post("/api/v1/me/consent/analytics/withdraw", headers=bearer(token))
    client.post(
        "/api/v1/me/consent/cross_border/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    login(client, person.phone, person.password)
    refused = decide(client, token, decisions(account="refused"))
    assert refused.status_code == 403
    _, other = register_without_consent(client, mailbox, sms)
    decide(client, other["token"], baseline_consent()["decisions"])

    with app.extensions["privid.session_factory"]() as db:
        audit = db.execute(select(AuditEvent)).scalars().all()
        events = [[e.event_type, e.details, e.ip_prefix, e.user_id, e.actor_id] for e in audit]
    records = ledger_rows(app)
    assert records and events
    dump = json.dumps([events, records], ensure_ascii=False, default=str)
    national = person.phone.removeprefix("+86")
    for secret in (
        person.email,
        person.email.split("@")[0],
        person.phone,
        national,
        person.full_name,
        person.password,
        CLIENT_ADDRESS,
        ANDROID_CHROME,
    ):
        assert secret not in dump, secret
    assert "203.0.113.0/24" in dump
