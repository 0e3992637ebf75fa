"""TOTP as a second factor, recovery codes, and step-up (RFC 9470)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyotp
import pytest
from sqlalchemy import text

from app.clock import FrozenClock
from tests.helpers import bearer, emails_to, enable_totp, login, register, reset_password

START = datetime(2026, 11, 27, 9, 0, 10, tzinfo=UTC)  # 10 s into a 30 s step


def code_at(totp: pyotp.TOTP, moment: datetime, steps: int = 0) -> str:
    return totp.generate_otp(totp.timecode(moment) + steps)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


def second_factor(client, ticket, **proof):
    return client.post("/api/v1/login/second-factor", json={"ticket": ticket, **proof})


def test_sign_in_with_totp_is_multi_factor(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session)
    clock.advance(seconds=30)
    first = login(client, person.email, person.password)
    assert first.status_code == 202
    assert first.json["status"] == "second_factor_required"
    assert "token" not in first.json
    done = second_factor(client, first.json["ticket"], totp_code=totp.at(clock.now()))
    assert done.status_code == 200, done.json
    assert done.json["acr"] == "urn:privid:acr:multi-factor"
    assert {"pwd", "otp", "mfa"} <= set(done.json["amr"])
    assert client.get("/api/v1/me", headers=bearer(done.json["token"])).status_code == 200


def test_a_time_step_is_accepted_once_and_the_window_is_one_step(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session)
    clock.advance(seconds=300)
    now = clock.now()
    ticket = login(client, person.email, person.password).json["ticket"]
    for outside in (code_at(totp, now, -2), code_at(totp, now, 2)):
        assert second_factor(client, ticket, totp_code=outside).status_code == 400
    assert second_factor(client, ticket, totp_code=code_at(totp, now, -1)).status_code == 200
    # The same step again, or an older one, is a replay.
    ticket = login(client, person.email, person.password).json["ticket"]
    assert second_factor(client, ticket, totp_code=code_at(totp, now, -1)).status_code == 400
    assert second_factor(client, ticket, totp_code=code_at(totp, now, 1)).status_code == 200
    ticket = login(client, person.email, person.password).json["ticket"]
    assert second_factor(client, ticket, totp_code=totp.at(now)).status_code == 400


def test_recovery_codes_work_once_each(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    _, codes = enable_totp(client, session)
    ticket = login(client, person.email, person.password).json["ticket"]
    assert second_factor(client, ticket, recovery_code=codes[0]).status_code == 200
    ticket = login(client, person.email, person.password).json["ticket"]
    assert second_factor(client, ticket, recovery_code=codes[0]).status_code == 400
    assert second_factor(client, ticket, recovery_code=codes[1].upper()).status_code == 200
    status = client.get("/api/v1/me/mfa", headers=bearer(session["token"])).json
    assert status == {"totp_enabled": True, "recovery_codes_remaining": 8}


def test_a_forged_or_expired_ticket_signs_nobody_in(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session)
    ticket = login(client, person.email, person.password).json["ticket"]
    forged = second_factor(client, ticket[:-2] + "xx", totp_code=totp.at(clock.now()))
    assert forged.status_code == 401 and forged.json["type"].endswith("/mfa-ticket-invalid")
    clock.advance(seconds=301)
    late = second_factor(client, ticket, totp_code=totp.at(clock.now()))
    assert late.status_code == 401


def test_password_reset_does_not_bypass_the_second_factor(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    enable_totp(client, session)
    reset = reset_password(client, mailbox, person.email, "fresh-lilac-harbor-9")
    assert reset.status_code == 204
    after = login(client, person.email, "fresh-lilac-harbor-9")
    assert after.status_code == 202 and after.json["status"] == "second_factor_required"


def test_managing_factors_needs_a_fresh_step_up_that_rotates_the_token(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session)
    auth = bearer(session["token"])
    clock.advance(minutes=10)
    refused = client.delete("/api/v1/me/mfa/totp", headers=auth)
    assert refused.status_code == 401
    challenge = refused.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="urn:privid:acr:multi-factor"' in challenge and "max_age=300" in challenge

    without_code = client.post(
        "/api/v1/me/step-up", json={"password": person.password}, headers=auth
    )
    assert without_code.status_code == 422
    stepped = client.post(
        "/api/v1/me/step-up",
        json={"password": person.password, "totp_code": totp.at(clock.now())},
        headers=auth,
    )
    assert stepped.status_code == 200, stepped.json
    assert stepped.json["acr"] == "urn:privid:acr:multi-factor"
    assert stepped.json["token"] != session["token"]
    assert client.get("/api/v1/me", headers=auth).status_code == 401  # the old token is gone
    fresh = bearer(stepped.json["token"])
    assert client.delete("/api/v1/me/mfa/totp", headers=fresh).status_code == 204
    assert login(client, person.email, person.password).status_code == 200


def test_the_secret_is_encrypted_at_rest(app, client, mailbox, sms, clock):
    _, session = register(client, mailbox, sms)
    totp, codes = enable_totp(client, session)
    with app.extensions["privid.engine"].connect() as connection:
        rows = connection.execute(text("SELECT * FROM totp_factors")).all()
        recovery = connection.execute(text("SELECT code_hash FROM recovery_codes")).all()
    assert len(rows) == 1
    assert totp.secret.encode() not in repr(rows).encode()
    assert not any(code in repr(recovery) for code in codes)


def test_second_factor_guesses_are_throttled(client, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    enable_totp(client, session)
    ticket = login(client, person.email, person.password).json["ticket"]
    statuses = [second_factor(client, ticket, totp_code=f"{n:06d}").status_code for n in range(12)]
    assert 429 in statuses
    assert statuses.count(400) <= 6


def test_changing_what_signs_you_in_needs_a_recent_strong_enough_sign_in(
    client, mailbox, sms, clock
):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    for minutes in (25, 25, 11):  # active all along, so only the sign-in is old
        clock.advance(minutes=minutes)
        assert client.get("/api/v1/me", headers=auth).status_code == 200
    change = {"current_password": person.password, "new_password": "amber-quartz-meadow-77"}
    stale = client.post("/api/v1/me/password", json=change, headers=auth)
    assert stale.status_code == 401
    challenge = stale.headers["WWW-Authenticate"]
    assert 'acr_values="urn:privid:acr:single-factor"' in challenge and "max_age=3600" in challenge
    # With TOTP on, the same change needs multi-factor.
    stepped = client.post("/api/v1/me/step-up", json={"password": person.password}, headers=auth)
    fresh = bearer(stepped.json["token"])
    totp, _ = enable_totp(client, {"token": stepped.json["token"]}, at=clock.now())
    single = client.post("/api/v1/me/password", json=change, headers=fresh)
    assert single.status_code == 401
    assert 'acr_values="urn:privid:acr:multi-factor"' in single.headers["WWW-Authenticate"]
    strong = client.post(
        "/api/v1/me/step-up",
        json={"password": person.password, "totp_code": code_at(totp, clock.now(), 1)},
        headers=fresh,
    )
    assert strong.status_code == 200, strong.json
    done = client.post("/api/v1/me/password", json=change, headers=bearer(strong.json["token"]))
    assert done.status_code == 200, done.json


REMOVED_SUBJECT = "A sign-in protection was removed"


def test_turning_totp_off_or_replacing_recovery_codes_needs_a_fresh_proof_and_tells_the_owner(
    runtime, client, mailbox, sms, clock
):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session)
    auth = bearer(session["token"])
    clock.advance(minutes=6)
    assert client.get("/api/v1/me", headers=auth).status_code == 200
    for stale in (
        client.post("/api/v1/me/mfa/recovery-codes", headers=auth),
        client.delete("/api/v1/me/mfa/totp", headers=auth),
    ):
        assert stale.status_code == 401
        challenge = stale.headers["WWW-Authenticate"]
        assert 'acr_values="urn:privid:acr:multi-factor"' in challenge
        assert "max_age=300" in challenge
    assert emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT) == []

    stepped = client.post(
        "/api/v1/me/step-up",
        json={"password": person.password, "totp_code": totp.at(clock.now())},
        headers=auth,
    )
    assert stepped.status_code == 200, stepped.json
    fresh = bearer(stepped.json["token"])
    replaced = client.post("/api/v1/me/mfa/recovery-codes", headers=fresh)
    assert replaced.status_code == 200, replaced.json
    [notice] = emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT)
    assert "recovery codes" in notice.get_payload(decode=True).decode()

    assert client.delete("/api/v1/me/mfa/totp", headers=fresh).status_code == 204
    notices = emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT)
    assert len(notices) == 2
    assert "authenticator app" in notices[1].get_payload(decode=True).decode()
    # Off means off: the password alone signs in again.
    assert login(client, person.email, person.password).status_code == 200
