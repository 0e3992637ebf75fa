"""TOTP under concurrency: a double click, a replayed time step, parallel
enrolments. One winner, the others a clear 409 (or a refused code), never a 500.

SQLite takes its write lock at BEGIN, so there these requests queue and the
tests check the outcome only; on PostgreSQL (PRIVID_TEST_DATABASE_URL) they race."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pyotp
import pytest

from app.clock import FrozenClock
from tests.helpers import HIGH_LIMITS, bearer, enable_totp, login, race, register

START = datetime(2026, 11, 27, 9, 0, 10, tzinfo=UTC)  # 10 s into a 30 s step


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {**HIGH_LIMITS, "login_free_attempts": 100}


@pytest.mark.parametrize("submissions", [2, 20], ids=["double-click", "twenty"])
def test_confirming_totp_twice_at_once_gives_one_set_of_recovery_codes(
    app, client, mailbox, sms, clock, submissions
):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    enrolled = client.post("/api/v1/me/mfa/totp", headers=auth)
    assert enrolled.status_code == 201
    code = pyotp.TOTP(enrolled.json["secret"]).at(clock.now())

    answers = race(
        app,
        submissions,
        lambda _, c: c.post("/api/v1/me/mfa/totp/confirm", json={"code": code}, headers=auth),
    )

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 409: submissions - 1}, [a.json for a in answers]
    for refused in (a for a in answers if a.status_code == 409):
        assert refused.json["type"].endswith("/totp-not-pending")
    [accepted] = [a for a in answers if a.status_code == 200]
    # The codes the user was shown are the ones that work.
    codes = accepted.json["recovery_codes"]
    status = client.get("/api/v1/me/mfa", headers=auth).json
    assert status == {"totp_enabled": True, "recovery_codes_remaining": 10}
    ticket = login(client, person.email, person.password).json["ticket"]
    done = client.post(
        "/api/v1/login/second-factor", json={"ticket": ticket, "recovery_code": codes[3]}
    )
    assert done.status_code == 200, done.json


@pytest.mark.parametrize("where", ["sign-in", "step-up"])
def test_a_time_step_is_accepted_once_under_twenty_concurrent_submissions(
    app, client, mailbox, sms, clock, where
):
    person, session = register(client, mailbox, sms)
    # Sessions opened before TOTP was turned on, for the step-up case.
    tokens = [login(client, person.phone, person.password).json["token"] for _ in range(20)]
    totp, _ = enable_totp(client, session, clock.now())
    clock.advance(seconds=60)
    code = totp.at(clock.now())
    if where == "sign-in":
        tickets = [login(client, person.email, person.password).json["ticket"] for _ in range(20)]

        def submit(i, own):
            body = {"ticket": tickets[i], "totp_code": code}
            return own.post("/api/v1/login/second-factor", json=body)
    else:
        # A typo first, so the throttle rows the step-ups queue on already exist.
        typo = {"password": "not-my-password-x", "totp_code": code}
        refused = client.post("/api/v1/me/step-up", json=typo, headers=bearer(tokens[0]))
        assert refused.status_code == 422, refused.json

        def submit(i, own):
            body = {"password": person.password, "totp_code": code}
            return own.post("/api/v1/me/step-up", json=body, headers=bearer(tokens[i]))

    answers = race(app, 20, submit)

    statuses = Counter(a.status_code for a in answers)
    assert statuses[200] == 1, (statuses, [a.json for a in answers if a.status_code != 400])
    assert set(statuses) <= {200, 400}


def test_ten_concurrent_enrolments_have_one_winner_and_nine_clear_refusals(
    app, client, mailbox, sms, clock
):
    _, session = register(client, mailbox, sms)
    auth = bearer(session["token"])

    answers = race(app, 10, lambda _, c: c.post("/api/v1/me/mfa/totp", headers=auth))

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: 9}, statuses
    for refused in (a for a in answers if a.status_code == 409):
        assert refused.json["type"].endswith("/totp-enrolment-in-progress")
    [winner] = [a for a in answers if a.status_code == 201]
    code = pyotp.TOTP(winner.json["secret"]).at(clock.now())
    confirmed = client.post("/api/v1/me/mfa/totp/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 200, confirmed.json
