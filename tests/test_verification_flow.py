"""Identity verification through the JSON API, against the sandbox provider
(the default) and the fake provider on 127.0.0.1: what it needs, what it
keeps, and every bad input answered clearly with nothing stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.clock import FrozenClock
from app.models import AuditEvent, ConsentRecord, LegalArchiveRecord
from tests.helpers import (
    assert_problem,
    bearer,
    race,
    register,
    row_count,
    table_rows,
)
from tests.verification_helpers import (
    ANSWER_KEY,
    CHILD,
    KEY_ID,
    REQUEST_KEY,
    ZHANG,
    ZHANG_NUMBER,
    FakeProvider,
    b64,
    grant,
)
from verification.sandbox import LIVENESS_PASS, UNAVAILABLE_NAME

URL = "/api/v1/me/identity-verification"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))


def verify(client, token: str, **body: object):
    payload = {**ZHANG, "document_number": ZHANG_NUMBER, **body}
    return client.post(URL, json=payload, headers=bearer(token))


@pytest.fixture
def consenting(client, mailbox, sms) -> str:
    """A signed-in person who granted identity_verification: their token."""
    _, session = register(client, mailbox, sms)
    grant(client, session["token"])
    return str(session["token"])


def changed_tables(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def verification_rows(app) -> list[tuple]:
    return table_rows(app)["identity_verifications"]


def attempts(app) -> list[AuditEvent]:
    with app.app_context():
        from app.cli import unit_of_work

        with unit_of_work() as svc:
            events = svc.db.scalars(
                select(AuditEvent).where(AuditEvent.event_type == "identity_verification.attempt")
            )
            return [svc.db.merge(e) for e in events]


def test_a_match_keeps_the_level_reference_and_masked_number_only(app, client, consenting):
    answer = verify(client, consenting)
    assert answer.status_code == 201, answer.json
    (result,) = answer.json["results"]
    assert result["level"] == "L1" and result["status"] == "verified"
    assert result["document_masked"] == "110105**********2X"
    assert result["provider"] == "sandbox" and result["provider_reference"]
    assert result["retain_until"] > result["verified_at"]
    listed = client.get(URL, headers=bearer(consenting)).json["results"]
    assert listed == answer.json["results"]
    assert ZHANG_NUMBER not in repr(table_rows(app))


def test_liveness_token_reaches_l2(client, consenting):
    answer = verify(client, consenting, liveness_token=LIVENESS_PASS)
    assert answer.json["results"][0]["level"] == "L2"


def test_a_failed_liveness_check_keeps_l1(client, consenting):
    answer = verify(client, consenting, liveness_token="sandbox-liveness-nope")
    assert answer.status_code == 201
    assert answer.json["results"][0]["level"] == "L1"


@pytest.mark.parametrize(
    ("number", "slug"),
    [
        ("110105194912310021", "bad-check-character"),
        ("110105209912310029", "future-birth-date"),
        ("990105194912310023", "unknown-region"),
        ("810000199001011230", "wrong-document-type"),
        ("110105491231002", "obsolete-15-digit-number"),
    ],
)
def test_a_bad_number_is_refused_with_its_reason_and_nothing_is_stored(
    app, client, consenting, number, slug
):
    before = table_rows(app)
    answer = verify(client, consenting, document_number=number)
    body = assert_problem(answer, 422, slug)
    assert body["errors"][0]["pointer"] == "#/document_number"
    assert table_rows(app) == before


def test_an_unknown_document_type_is_refused(app, client, consenting):
    before = table_rows(app)
    answer = verify(client, consenting, document_type="library_card")
    assert_problem(answer, 422)
    assert table_rows(app) == before


def test_without_the_separate_consent_nothing_goes_out(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms)
    before = table_rows(app)
    answer = verify(client, session["token"])
    body = assert_problem(answer, 403, "separate-consent-required")
    assert "identity_verification" in body["detail"]
    assert table_rows(app) == before


class TestAProviderAbroad:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"verification_provider_abroad": True}

    def test_needs_cross_border_consent_too(self, app, client, consenting):
        before = table_rows(app)
        body = assert_problem(verify(client, consenting), 403, "separate-consent-required")
        assert "cross_border" in body["detail"]
        assert table_rows(app) == before
        grant(client, consenting, "cross_border")
        assert verify(client, consenting).status_code == 201


def test_an_old_sign_in_must_step_up_first(app, client, consenting, clock):
    clock.advance(minutes=11)
    before = table_rows(app)
    answer = verify(client, consenting)
    assert answer.status_code == 401
    assert 'error="insufficient_user_authentication"' in answer.headers["WWW-Authenticate"]
    assert table_rows(app) == before


def test_provider_down_is_answered_and_only_the_attempt_is_audited(app, client, consenting):
    before = table_rows(app)
    answer = verify(client, consenting, full_name=UNAVAILABLE_NAME)
    assert_problem(answer, 503, "provider-unavailable")
    assert changed_tables(before, table_rows(app)) == {"audit_events"}
    assert verification_rows(app) == []


def test_a_mismatch_is_refused_and_kept_nowhere(app, client, consenting):
    answer = verify(client, consenting, full_name="李四")
    assert_problem(answer, 422, "identity-not-confirmed")
    assert verification_rows(app) == []
    assert [e.details["result"] for e in attempts(app)] == ["not_confirmed"]


@pytest.mark.parametrize(
    "extra",
    [
        {"photo": "aGVsbG8="},
        {"face_template": [0.1, 0.2]},
        {"liveness_token": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEx8"},
        {"liveness_token": "data:image/png;base64,iVBORw0KGgo" + "A" * 80},
        {"liveness_token": "x" * 300},
    ],
)
def test_images_videos_and_templates_are_refused(app, client, consenting, extra):
    before = table_rows(app)
    answer = verify(client, consenting, **extra)
    body = assert_problem(answer, 422)
    assert "never accepted" in str(body)
    assert table_rows(app) == before


def test_one_identity_binds_one_account(app, client, mailbox, sms, consenting):
    assert verify(client, consenting).status_code == 201
    _, other = register(client, mailbox, sms)
    grant(client, other["token"])
    assert_problem(verify(client, other["token"]), 409, "identity-already-bound")
    assert attempts(app)[-1].details["result"] == "identity_already_bound"


def test_the_same_account_may_verify_again(client, consenting):
    assert verify(client, consenting).status_code == 201
    # A new level, say.
    assert verify(client, consenting, liveness_token=LIVENESS_PASS).status_code == 201


def test_two_accounts_racing_for_one_identity_bind_one(app, client, mailbox, sms):
    tokens = []
    for _ in range(2):
        _, session = register(client, mailbox, sms)
        grant(client, session["token"])
        tokens.append(session["token"])

    def attempt(index: int, own) -> int:
        return verify(own, tokens[index]).status_code

    assert sorted(race(app, 2, attempt)) == [201, 409]
    assert len(verification_rows(app)) == 1


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"limit_verification_per_document": "2/day", "limit_verification_per_account": "3/day"}


def test_attempts_are_limited_per_document_across_accounts(client, mailbox, sms, consenting):
    for _ in range(2):
        assert_problem(verify(client, consenting, full_name="李四"), 422, "identity-not-confirmed")
    _, other = register(client, mailbox, sms)
    grant(client, other["token"])
    assert_problem(verify(client, other["token"], full_name="李四"), 429, "too-many-attempts")


def test_attempts_are_limited_per_account(client, consenting):
    numbers = ["440305198507120033", "310115198001010059", "110105199003070017"]
    for number in numbers:
        verify(client, consenting, document_number=number)
    assert verify(client, consenting, document_number="110101199001010010").status_code == 429


def test_every_attempt_is_audited_without_the_number(app, client, consenting):
    verify(client, consenting)
    verify(client, consenting, full_name="李四")
    events = attempts(app)
    assert [e.outcome for e in events] == ["success", "failure"]
    assert [e.details["result"] for e in events] == ["confirmed", "not_confirmed"]
    for event in events:
        assert event.details["document_type"] == "cn_resident_id_card"
        assert ZHANG_NUMBER not in repr(event.details) and "张三" not in repr(event.details)


def test_a_child_under_14_needs_a_verified_adult_guardian(app, client, consenting):
    before = table_rows(app)
    assert_problem(verify(client, consenting, **CHILD), 422, "guardian-required")
    minor_guardian = {**CHILD}
    answer = verify(client, consenting, **CHILD, guardian=minor_guardian)
    assert_problem(answer, 422, "guardian-not-adult")
    assert table_rows(app) == before
    guardian = {**ZHANG, "document_number": ZHANG_NUMBER}
    answer = verify(client, consenting, **CHILD, guardian=guardian)
    assert answer.status_code == 201, answer.json
    roles = {r["role"]: r["document_masked"] for r in answer.json["results"]}
    assert roles == {"guardian": "110105**********2X", "self": "110105**********47"}
    with app.app_context():
        from app.cli import unit_of_work

        with unit_of_work() as svc:
            channels = svc.db.scalars(
                select(ConsentRecord.channel).where(
                    ConsentRecord.purpose == "identity_verification"
                )
            ).all()
    assert "guardian" in channels


def test_an_adult_gives_no_guardian_details(app, client, consenting):
    before = table_rows(app)
    guardian = {**ZHANG, "document_number": ZHANG_NUMBER}
    answer = verify(client, consenting, document_number="440305198507120033", guardian=guardian)
    assert_problem(answer, 422, "guardian-not-needed")
    assert table_rows(app) == before


def test_a_child_is_not_sent_out_when_the_guardian_fails(app, client, consenting):
    guardian = {**ZHANG, "full_name": "李四", "document_number": ZHANG_NUMBER}
    answer = verify(client, consenting, **CHILD, guardian=guardian)
    assert_problem(answer, 422, "identity-not-confirmed")
    assert [e.details["role"] for e in attempts(app)] == ["guardian"]


def test_withdrawing_the_purpose_erases_the_result_into_the_legal_archive(app, client, consenting):
    assert verify(client, consenting).status_code == 201
    archived = row_count(app, "legal_archive_records")
    withdrawn = client.post(
        "/api/v1/me/consent/identity_verification/withdraw", headers=bearer(consenting)
    )
    assert withdrawn.status_code == 200
    assert verification_rows(app) == []
    assert row_count(app, "legal_archive_records") == archived + 1
    assert client.get(URL, headers=bearer(consenting)).json["results"] == []


def test_cancellation_erases_the_result_into_the_legal_archive(app, client, consenting):
    assert verify(client, consenting).status_code == 201
    cancelled = client.post(
        "/api/v1/me/cancellation",
        json={"confirm": "cancel my account"},
        headers=bearer(consenting),
    )
    assert cancelled.status_code in (200, 202), cancelled.json
    assert verification_rows(app) == []
    with app.app_context():
        from app.cli import unit_of_work

        with unit_of_work() as svc:
            categories = svc.db.scalars(select(LegalArchiveRecord.category)).all()
    assert sorted(categories) == ["identity", "identity_verification"]


def test_the_export_shows_the_result(client, consenting):
    assert verify(client, consenting).status_code == 201
    exported = client.post("/api/v1/me/export", headers=bearer(consenting))
    assert exported.status_code == 200, exported.json
    section = exported.json["identity_verification"]
    (result,) = section["results"]
    assert result["document_masked"] == "110105**********2X" and result["level"] == "L1"
    assert "document_hash" not in result


def test_retention_deletes_results_past_their_date(app, client, consenting, clock):
    assert verify(client, consenting).status_code == 201
    with app.app_context():
        from app.cli import unit_of_work

        clock.advance(days=366 * 3 + 1)
        with unit_of_work() as svc:
            svc.retention.run()
    assert verification_rows(app) == []


# -- against the fake provider on 127.0.0.1 ----------------------------------------


@pytest.fixture(scope="module")
def fake_provider() -> Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.stop()


class TestAgainstTheFakeProvider:
    @pytest.fixture
    def settings_overrides(self, fake_provider) -> dict[str, object]:
        fake_provider.reset()
        fake_provider.state.identities.add(("张三", "cn_resident_id_card", ZHANG_NUMBER))
        return {
            "verification_provider": "http",
            "verification_provider_name": "fake",
            "verification_provider_url": fake_provider.url,
            "verification_provider_key_id": KEY_ID,
            "verification_provider_request_key": b64(REQUEST_KEY),
            "verification_provider_answer_key": b64(ANSWER_KEY),
            "verification_provider_timeout_seconds": 0.5,
            "verification_provider_retries": 1,
            "verification_provider_backoff_seconds": 0.01,
            "verification_breaker_fail_max": 2,
            "verification_breaker_reset_seconds": 60,
        }

    def test_a_match(self, app, client, consenting):
        answer = verify(client, consenting)
        assert answer.status_code == 201, answer.json
        assert answer.json["results"][0]["provider"] == "fake"

    def test_a_bad_answer_signature_is_answered_and_nothing_is_stored(
        self, app, client, consenting, fake_provider
    ):
        fake_provider.state.mode = "bad-signature"
        before = table_rows(app)
        assert_problem(verify(client, consenting), 502, "provider-answer-rejected")
        assert changed_tables(before, table_rows(app)) == {"audit_events"}
        assert verification_rows(app) == []

    def test_a_mismatch_and_a_malformed_answer(self, app, client, consenting, fake_provider):
        assert_problem(verify(client, consenting, full_name="李四"), 422, "identity-not-confirmed")
        fake_provider.state.mode = "malformed"
        before = table_rows(app)
        assert_problem(verify(client, consenting), 502, "provider-answer-rejected")
        assert changed_tables(before, table_rows(app)) == {"audit_events"}
        assert verification_rows(app) == []

    def test_slow_answers_are_answered_in_bounded_time(
        self, app, client, consenting, fake_provider
    ):
        fake_provider.state.mode, fake_provider.state.slow_seconds = "slow", 2.0
        started = time.monotonic()
        assert_problem(verify(client, consenting), 503, "provider-unavailable")
        # Two tries of 0.5 s each and a short back-off, not the provider's 2 s twice.
        assert time.monotonic() - started < 3.0
        assert verification_rows(app) == []

    def test_an_outage_trips_the_breaker(self, app, client, consenting, fake_provider):
        fake_provider.state.mode = "down"
        before = table_rows(app)
        for _ in range(2):
            assert_problem(verify(client, consenting), 503, "provider-unavailable")
        reached = len(fake_provider.state.requests)
        answer = verify(client, consenting)
        assert_problem(answer, 503, "provider-unavailable")
        assert len(fake_provider.state.requests) == reached
        assert changed_tables(before, table_rows(app)) == {"audit_events"}
