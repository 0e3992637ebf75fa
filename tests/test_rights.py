"""The user's rights: export, rectification, deletion, cancellation, requests
with working-day due dates, the operator queue, and the retention run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from app.clock import FrozenClock
from app.models import DataSubjectRequest, LegalArchiveRecord
from tests.helpers import bearer, login, new_person, register, start_registration

# A Friday morning in Shanghai (01:00 UTC = 09:00 CST).
FRIDAY = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(FRIDAY)


def make_operator(app, client, person):
    result = app.test_cli_runner().invoke(args=["operator-grant", person.email])
    assert result.exit_code == 0, result.output
    signed_in = login(client, person.email, person.password)
    assert signed_in.status_code == 200
    return bearer(signed_in.json["token"])


def count(app, table: str) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        return int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


# -- export ------------------------------------------------------------------------


def test_export_holds_everything_decrypted_and_no_secrets(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    assert login(client, person.email, "a-wrong-password-1").status_code == 401
    response = client.post("/api/v1/me/export", headers=auth)
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    document = response.json
    assert document["profile"]["email"] == person.email
    assert document["profile"]["phone"] == person.phone
    assert document["profile"]["full_name"] == person.full_name
    assert document["profile"]["credentials"][0]["type"] == "password"
    assert {r["purpose"] for r in document["consent_history"]} >= {"account", "analytics"}
    assert document["sessions"] and all("token_hash" not in s for s in document["sessions"])
    kinds = {e["event_type"] for e in document["audit_events"]}
    assert {"registration.completed", "login.failed"} <= kinds
    raw = json.dumps(document)
    assert session["token"] not in raw and "$argon2" not in raw
    # The export itself is a request on record, answered at once.
    requests = client.get("/api/v1/me/requests", headers=auth).json["requests"]
    assert [(r["kind"], r["status"]) for r in requests] == [("access_export", "completed")]


def test_unreasonably_repetitive_exports_are_refused_with_the_reason(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    for _ in range(3):
        assert client.post("/api/v1/me/export", headers=auth).status_code == 200
    refused = client.post("/api/v1/me/export", headers=auth)
    assert refused.status_code == 429
    assert "repetitive" in refused.json["detail"]
    listed = client.get("/api/v1/me/requests", headers=auth).json["requests"]
    assert sorted(r["status"] for r in listed) == ["completed"] * 3 + ["refused"]
    refusal = next(r for r in listed if r["status"] == "refused")
    assert "repetitive" in refusal["refusal_reason"]
    # A day later it is reasonable again.
    clock.advance(days=1, minutes=1)
    fresh = bearer(login(client, person.email, person.password).json["token"])
    assert client.post("/api/v1/me/export", headers=fresh).status_code == 200


# -- requests, due dates and the operator queue ----------------------------------------


def test_a_request_is_due_three_working_days_later_and_waits_for_an_operator(
    app, client, mailbox, sms, clock
):
    person, session = register(client, mailbox, sms)
    made = client.post(
        "/api/v1/me/requests",
        json={"kind": "deletion", "categories": ["other"]},
        headers=bearer(session["token"]),
    )
    assert made.status_code == 201
    request = made.json
    assert request["status"] == "open"
    # Received Friday: Monday, Tuesday, Wednesday; due at the end of Wednesday, Shanghai.
    assert request["due_at"].startswith("2026-12-02T15:59:59")

    operator, _ = register(client, mailbox, sms, new_person("Operator One"))
    staff = make_operator(app, client, operator)
    queue = client.get("/api/v1/admin/requests", headers=staff).json["requests"]
    assert [r["request_id"] for r in queue] == [request["request_id"]]
    assert queue[0]["overdue"] is False

    clock.advance(days=6)  # the next Thursday
    staff = bearer(login(client, operator.email, operator.password).json["token"])
    late = client.get("/api/v1/admin/requests", headers=staff).json["requests"][0]
    assert late["overdue"] is True and late["working_days_overdue"] == 1

    empty = client.post(
        f"/api/v1/admin/requests/{request['request_id']}/refuse", json={"reason": " "},
        headers=staff,
    )  # fmt: skip
    assert empty.status_code == 422
    refused = client.post(
        f"/api/v1/admin/requests/{request['request_id']}/refuse",
        json={"reason": "The data asked for is under a legal hold."},
        headers=staff,
    )
    assert refused.status_code == 200 and refused.json["status"] == "refused"
    again = client.post(
        f"/api/v1/admin/requests/{request['request_id']}/complete", json={"outcome": "x"},
        headers=staff,
    )  # fmt: skip
    assert again.status_code == 409
    mine = bearer(login(client, person.email, person.password).json["token"])
    seen = client.get("/api/v1/me/requests", headers=mine).json["requests"][0]
    assert seen["refusal_reason"] == "The data asked for is under a legal hold."
    with app.extensions["privid.session_factory"]() as db:
        handled = db.execute(select(DataSubjectRequest)).scalars().one()
        assert handled.handled_by is not None


def test_the_queue_is_for_operators_only(client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    answer = client.get("/api/v1/admin/requests", headers=bearer(session["token"]))
    assert answer.status_code == 403 and answer.json["type"].endswith("/operator-only")


def test_deleting_ended_sessions_is_done_at_once(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    old = login(client, person.email, person.password).json
    client.post("/api/v1/logout", headers=bearer(old["token"]))
    auth = bearer(session["token"])
    before = client.post("/api/v1/me/export", headers=auth).json["sessions"]
    assert len(before) == 2
    done = client.post(
        "/api/v1/me/requests", json={"kind": "deletion", "categories": ["ended_sessions"]},
        headers=auth,
    )  # fmt: skip
    assert done.status_code == 201 and done.json["status"] == "completed"
    after = client.post("/api/v1/me/export", headers=auth).json["sessions"]
    assert [s["id"] for s in after] == [session["session_id"]]


def test_full_name_can_be_corrected_with_the_password(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    wrong = client.post(
        "/api/v1/me/name", json={"full_name": "张三", "current_password": "not-it-at-all"},
        headers=auth,
    )  # fmt: skip
    assert wrong.status_code == 422
    assert client.get("/api/v1/me", headers=auth).json["full_name"] == person.full_name
    fixed = client.post(
        "/api/v1/me/name", json={"full_name": "张三", "current_password": person.password},
        headers=auth,
    )  # fmt: skip
    assert fixed.status_code == 200 and fixed.json["kind"] == "rectification"
    assert client.get("/api/v1/me", headers=auth).json["full_name"] == "张三"


def test_withdrawing_consent_is_a_request_answered_at_once(client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    granted = client.post(
        "/api/v1/me/consent/analytics/grant", json={"policy_version": "2026-06"}, headers=auth
    )
    assert granted.status_code == 200
    assert client.post("/api/v1/me/consent/analytics/withdraw", headers=auth).status_code == 200
    requests = client.get("/api/v1/me/requests", headers=auth).json["requests"]
    assert requests[0]["kind"] == "consent_withdrawal"
    assert requests[0]["details"] == {"purpose": "analytics"}


# -- cancellation ------------------------------------------------------------------


def test_cancellation_needs_a_recent_sign_in(client, mailbox, sms, clock):
    _, session = register(client, mailbox, sms)
    clock.advance(minutes=10)
    answer = client.post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"},
        headers=bearer(session["token"]),
    )  # fmt: skip
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge and "max_age=300" in challenge
    assert client.get("/api/v1/me", headers=bearer(session["token"])).status_code == 200


def test_cancellation_shreds_the_account_and_keeps_only_the_legal_archive(
    app, client, mailbox, sms, clock
):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    user_id = client.get("/api/v1/me", headers=auth).json["user_id"]
    other = login(client, person.phone, person.password).json["token"]
    consent_rows = count(app, "consent_records")

    typo = client.post("/api/v1/me/cancellation", json={"confirm": "yes"}, headers=auth)
    assert typo.status_code == 422
    cancelled = client.post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"}, headers=auth
    )
    assert cancelled.status_code == 200
    until = datetime.fromisoformat(cancelled.json["legal_archive_retained_until"])
    assert until - FRIDAY >= timedelta(days=3 * 365)

    # Every session is over; the account no longer signs in.
    assert client.get("/api/v1/me", headers=auth).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 401
    assert login(client, person.email, person.password).status_code == 401
    for table in ("users", "user_data_keys", "sessions"):
        assert count(app, table) == 0, table
    # The consent ledger keeps its evidence under the random id; nothing is rewritten.
    assert count(app, "consent_records") == consent_rows

    with app.extensions["privid.session_factory"]() as db:
        archive = db.execute(select(LegalArchiveRecord)).scalars().one()
    assert user_id not in archive.subject_pseudonym
    dump = []
    with app.extensions["privid.engine"].connect() as connection:
        for table in inspect(connection).get_table_names():
            dump += [repr(tuple(r)) for r in connection.execute(text(f"SELECT * FROM {table}"))]
    everything = "\n".join(dump)
    for clear in (person.email, person.phone, person.full_name):
        assert clear not in everything
    cancelled_events = [line for line in dump if "account.cancelled" in line]
    assert len(cancelled_events) == 1 and person.email not in cancelled_events[0]

    # The address is free again: the same person can register anew.
    again = start_registration(client, person)
    assert again.status_code == 202
    code = mailbox.last_code(person.email, count=2)
    verified = client.post(
        f"/api/v1/registration/{again.json['flow_id']}/verify",
        json={"channel": "email", "code": code},
    )
    assert verified.status_code == 200


# -- retention ---------------------------------------------------------------------


def test_retention_run_purges_what_expired_and_is_idempotent(app, client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    start_registration(client, new_person())  # a flow that will never finish
    client.post("/api/v1/login/sms/code", json={"phone": person.phone})
    client.post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"},
        headers=bearer(session["token"]),
    )  # fmt: skip
    runner = app.test_cli_runner()

    first = runner.invoke(args=["retention-run"])
    assert first.exit_code == 0
    assert "legal_archive_records: 0 deleted" in first.output

    clock.advance(days=2)
    second = runner.invoke(args=["retention-run"])
    assert "one_time_codes: 0 deleted" not in second.output
    assert "registration_flows: 1 deleted" in second.output
    assert count(app, "one_time_codes") == 0 and count(app, "registration_flows") == 0
    assert count(app, "legal_archive_records") == 1

    clock.advance(days=4 * 366)
    third = runner.invoke(args=["retention-run"])
    assert "legal_archive_records: 1 deleted" in third.output
    fourth = runner.invoke(args=["retention-run"])
    assert all(line.endswith(": 0 deleted") for line in fourth.output.strip().splitlines())


def test_export_needs_a_recent_sign_in(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    clock.advance(minutes=16)
    auth = bearer(session["token"])
    refused = client.post("/api/v1/me/export", headers=auth)
    assert refused.status_code == 401
    assert "max_age=900" in refused.headers["WWW-Authenticate"]
    stepped = client.post("/api/v1/me/step-up", json={"password": person.password}, headers=auth)
    assert stepped.status_code == 200
    again = client.post("/api/v1/me/export", headers=bearer(stepped.json["token"]))
    assert again.status_code == 200


def test_operator_endpoints_refuse_others_before_reading_the_body(client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    for path in ("/api/v1/admin/policies", "/api/v1/admin/incidents"):
        answer = client.post(path, data="{not json", content_type="application/json", headers=auth)
        assert answer.status_code == 403 and answer.json["type"].endswith("/operator-only"), path
