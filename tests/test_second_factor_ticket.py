"""The ticket between the password and the second factor finishes one sign-in,
once, and only while the account's credentials are what they were when it was
issued."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from app.clock import FrozenClock
from tests.helpers import (
    HIGH_LIMITS,
    assert_problem,
    bearer,
    enable_totp,
    login,
    race,
    register,
    reset_password,
)

START = datetime(2026, 11, 27, 9, 0, 10, tzinfo=UTC)
SECOND_FACTOR = "/api/v1/login/second-factor"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def sessions_of(app: Any, user_id: str) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        query = text("SELECT COUNT(*) FROM sessions WHERE user_id = :u")
        return int(connection.execute(query, {"u": user_id}).scalar_one())


def with_totp(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    totp, codes = enable_totp(client, session, clock.now())
    return person, session, totp, codes


def test_a_ticket_finishes_one_sign_in_and_is_refused_after(client, mailbox, sms, clock):
    person, _, totp, codes = with_totp(client, mailbox, sms, clock)
    clock.advance(seconds=30)
    ticket = login(client, person.email, person.password).json["ticket"]
    done = client.post(SECOND_FACTOR, json={"ticket": ticket, "totp_code": totp.at(clock.now())})
    assert done.status_code == 200, done.json
    # Replayed with a fresh TOTP code, or with a recovery code: refused.
    clock.advance(seconds=30)
    again = client.post(SECOND_FACTOR, json={"ticket": ticket, "totp_code": totp.at(clock.now())})
    assert_problem(again, 401, "mfa-ticket-invalid")
    again = client.post(SECOND_FACTOR, json={"ticket": ticket, "recovery_code": codes[0]})
    assert_problem(again, 401, "mfa-ticket-invalid")
    # The recovery code was not spent by the refused replay.
    ticket = login(client, person.email, person.password).json["ticket"]
    assert (
        client.post(SECOND_FACTOR, json={"ticket": ticket, "recovery_code": codes[0]}).status_code
        == 200
    )


def test_a_wrong_second_factor_does_not_spend_the_ticket(client, mailbox, sms, clock):
    person, _, totp, _ = with_totp(client, mailbox, sms, clock)
    clock.advance(seconds=30)
    ticket = login(client, person.email, person.password).json["ticket"]
    typo = client.post(SECOND_FACTOR, json={"ticket": ticket, "totp_code": "000000"})
    assert_problem(typo, 400, "invalid-code")
    done = client.post(SECOND_FACTOR, json={"ticket": ticket, "totp_code": totp.at(clock.now())})
    assert done.status_code == 200, done.json


def _reset(client, mailbox, person, mfa_token):
    assert reset_password(client, mailbox, person.email, "fresh-lilac-harbor-9").status_code == 204


def _change_password(client, mailbox, person, mfa_token):
    body = {"current_password": person.password, "new_password": "fresh-lilac-harbor-9"}
    changed = client.post("/api/v1/me/password", json=body, headers=bearer(mfa_token))
    assert changed.status_code == 200, changed.json


def _new_recovery_codes(client, mailbox, person, mfa_token):
    renewed = client.post("/api/v1/me/mfa/recovery-codes", headers=bearer(mfa_token))
    assert renewed.status_code == 200, renewed.json


def _totp_off(client, mailbox, person, mfa_token):
    assert client.delete("/api/v1/me/mfa/totp", headers=bearer(mfa_token)).status_code == 204


@pytest.mark.parametrize(
    "change", [_reset, _change_password, _new_recovery_codes, _totp_off],
    ids=["password-reset", "password-change", "recovery-codes", "totp-off"],
)  # fmt: skip
def test_a_ticket_is_void_once_the_credentials_change(client, mailbox, sms, clock, change):
    person, _, totp, codes = with_totp(client, mailbox, sms, clock)
    # A multi-factor session of the owner, to make the change with.
    first = login(client, person.email, person.password).json["ticket"]
    mfa = client.post(SECOND_FACTOR, json={"ticket": first, "recovery_code": codes[0]}).json
    # Step one by someone who knows the password...
    ticket = login(client, person.email, person.password).json["ticket"]
    # ...then the owner changes what signs them in.
    change(client, mailbox, person, mfa["token"])
    clock.advance(seconds=30)
    late = client.post(SECOND_FACTOR, json={"ticket": ticket, "totp_code": totp.at(clock.now())})
    assert_problem(late, 401, "mfa-ticket-invalid")
    late = client.post(SECOND_FACTOR, json={"ticket": ticket, "recovery_code": codes[1]})
    assert_problem(late, 401, "mfa-ticket-invalid")


def test_two_finishes_at_once_open_exactly_one_session(app, client, mailbox, sms, clock):
    person, session, _, codes = with_totp(client, mailbox, sms, clock)
    ticket = login(client, person.email, person.password).json["ticket"]
    user_id = client.get("/api/v1/me", headers=bearer(session["token"])).json["user_id"]
    before = sessions_of(app, user_id)

    answers = race(
        app, 2,
        lambda i, own: own.post(SECOND_FACTOR, json={"ticket": ticket, "recovery_code": codes[i]}),
    )  # fmt: skip

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 401: 1}, [a.json for a in answers]
    assert sessions_of(app, user_id) == before + 1
