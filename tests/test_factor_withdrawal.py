"""Withdrawing consent that a sign-in protection rests on (a passkey, a bound
device) needs what removing that protection directly needs: a recent sign-in
at the account's level, and the owner is emailed. No side door."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest

from app.clock import FrozenClock
from tests.helpers import (
    ANDROID_CHROME,
    HIGH_LIMITS,
    WINDOWS_FIREFOX,
    assert_problem,
    baseline_consent,
    bearer,
    emails_to,
    login,
    other_browser,
    passkey_options,
    register,
    register_passkey,
    row_count,
)
from tests.soft_authenticator import SoftAuthenticator

WITHDRAW_BIOMETRICS = "/api/v1/me/consent/device_biometrics/withdraw"
CREDENTIALS = "/api/v1/me/credentials"
DEVICES = "/api/v1/me/devices"
REMOVED_SUBJECT = "A sign-in protection was removed"


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def phone_with_passkey(client, mailbox, sms) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """An account signed up on a phone that created a platform passkey there,
    which bound the phone."""
    client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    consent = baseline_consent(security="granted", device_biometrics="granted")
    person, session = register(client, mailbox, sms, consent=consent)
    options = passkey_options(client, session["token"])
    created = register_passkey(
        client, session["token"], SoftAuthenticator().create(options), options["challenge_id"]
    )
    assert created.status_code == 201, created.json
    return person, session, created.json


def two_hours_of_use(client, clock, token: str) -> None:
    """The session stays in use (within the idle timeout) for two hours after
    its sign-in."""
    for _ in range(8):
        clock.advance(seconds=15 * 60)
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def bound_devices(client, token: str) -> list[str]:
    listed = client.get(DEVICES, headers=bearer(token))
    assert listed.status_code == 200, listed.json
    return [d["id"] for d in listed.json["devices"] if d["trust_state"] == "bound"]


def test_withdrawing_device_biometrics_needs_what_removing_the_passkey_needs(
    app, runtime, client, mailbox, sms, clock
):
    person, session, passkey = phone_with_passkey(client, mailbox, sms)
    token = session["token"]
    assert len(bound_devices(client, token)) == 1
    two_hours_of_use(client, clock, token)

    late = client.post(WITHDRAW_BIOMETRICS, headers=bearer(token))
    problem = assert_problem(late, 401, "insufficient-user-authentication")
    # Exactly the challenge removing the passkey itself gives (RFC 9470).
    direct = client.delete(f"{CREDENTIALS}/{passkey['id']}", headers=bearer(token))
    assert_problem(direct, 401, "insufficient-user-authentication")
    assert late.headers["WWW-Authenticate"] == direct.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in late.headers["WWW-Authenticate"]
    assert problem["detail"] == direct.json["detail"]

    # Nothing was withdrawn, deleted or unbound, and nobody was told anything.
    assert row_count(app, "webauthn_credentials", "revoked_at IS NULL") == 1
    assert len(bound_devices(client, token)) == 1
    consent = client.get("/api/v1/me/consent", headers=bearer(token)).json
    decisions = {d["purpose"]: d["decision"] for d in consent["decisions"]}
    assert decisions["device_biometrics"] == "granted"
    assert emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT) == []
    # So the phone still guards the account: an unknown machine needs the emailed code.
    stranger = login(other_browser(app, WINDOWS_FIREFOX), person.email, person.password)
    assert stranger.status_code == 202, stranger.json
    assert stranger.json["methods"] == ["email_code"]

    # After a fresh sign-in the owner may withdraw, and is told.
    fresh = client.post(
        "/api/v1/me/step-up", json={"password": person.password}, headers=bearer(token)
    )
    assert fresh.status_code == 200, fresh.json
    token = fresh.json["token"]
    done = client.post(WITHDRAW_BIOMETRICS, headers=bearer(token))
    assert done.status_code == 200, done.json
    assert row_count(app, "webauthn_credentials") == 0
    assert bound_devices(client, token) == []
    [notice] = emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT)
    body = notice.get_payload(decode=True).decode()
    assert "passkey" in body and "bound" in body
    # The owner chose this: an unknown machine now signs in with the password alone.
    later = login(other_browser(app, WINDOWS_FIREFOX), person.email, person.password)
    assert later.status_code == 200, later.json


def test_removing_a_passkey_directly_tells_the_owner(app, runtime, client, mailbox, sms):
    person, session, passkey = phone_with_passkey(client, mailbox, sms)
    removed = client.delete(f"{CREDENTIALS}/{passkey['id']}", headers=bearer(session["token"]))
    assert removed.status_code == 204
    [notice] = emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT)
    assert "passkey" in notice.get_payload(decode=True).decode()


def test_withdrawing_device_biometrics_without_passkeys_needs_no_step_up(
    app, runtime, client, mailbox, sms, clock
):
    consent = baseline_consent(security="granted", device_biometrics="granted")
    person, session = register(client, mailbox, sms, consent=consent)
    two_hours_of_use(client, clock, session["token"])
    done = client.post(WITHDRAW_BIOMETRICS, headers=bearer(session["token"]))
    assert done.status_code == 200, done.json
    assert emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT) == []


def test_with_totp_the_withdrawal_needs_both_factors_as_removing_a_passkey_does(
    app, client, mailbox, sms, clock
):

    _, session, passkey = phone_with_passkey(client, mailbox, sms)
    auth = bearer(session["token"])
    secret = client.post("/api/v1/me/mfa/totp", headers=auth).json["secret"]
    code = pyotp.TOTP(secret).at(clock.now())
    confirmed = client.post("/api/v1/me/mfa/totp/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 200, confirmed.json
    # The session is fresh, but single-factor: the account now has two factors.
    late = client.post(WITHDRAW_BIOMETRICS, headers=auth)
    assert_problem(late, 401, "insufficient-user-authentication")
    direct = client.delete(f"{CREDENTIALS}/{passkey['id']}", headers=auth)
    assert late.headers["WWW-Authenticate"] == direct.headers["WWW-Authenticate"]
    assert "multi-factor" in late.headers["WWW-Authenticate"]
    assert row_count(app, "webauthn_credentials", "revoked_at IS NULL") == 1


def refuse(client, token: str, *purposes: str):
    """The consent step's batch answer, refusing ``purposes``."""
    body = {
        "policy_version": baseline_consent()["policy_version"],
        "decisions": [{"purpose": p, "decision": "refused"} for p in purposes],
    }
    return client.post("/api/v1/me/consent/decisions", json=body, headers=bearer(token))


def test_refusing_a_granted_purpose_is_a_withdrawal_and_needs_the_same_proof(
    app, runtime, client, mailbox, sms, clock
):
    person, session, _ = phone_with_passkey(client, mailbox, sms)
    old_token = session["token"]
    two_hours_of_use(client, clock, old_token)

    late = refuse(client, old_token, "device_biometrics", "security")
    assert_problem(late, 401, "insufficient-user-authentication")
    # The same challenge the withdraw action gives.
    withdraw = client.post(WITHDRAW_BIOMETRICS, headers=bearer(old_token))
    assert late.headers["WWW-Authenticate"] == withdraw.headers["WWW-Authenticate"]
    # Nothing changed: the ledger, the passkey, the binding; nobody was told.
    consent = client.get("/api/v1/me/consent", headers=bearer(old_token)).json
    decisions = {d["purpose"]: d["decision"] for d in consent["decisions"]}
    assert decisions["device_biometrics"] == decisions["security"] == "granted"
    assert row_count(app, "webauthn_credentials", "revoked_at IS NULL") == 1
    assert len(bound_devices(client, old_token)) == 1
    assert emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT) == []
    stranger = login(other_browser(app, WINDOWS_FIREFOX), person.email, person.password)
    assert stranger.status_code == 202, stranger.json

    fresh = client.post(
        "/api/v1/me/step-up", json={"password": person.password}, headers=bearer(session["token"])
    )
    assert fresh.status_code == 200, fresh.json
    token = fresh.json["token"]
    done = refuse(client, token, "device_biometrics", "security")
    assert done.status_code == 200, done.json
    consent = client.get("/api/v1/me/consent", headers=bearer(token)).json
    decisions = {d["purpose"]: d["decision"] for d in consent["decisions"]}
    assert decisions["device_biometrics"] == decisions["security"] == "refused"
    # What a withdrawal stops has stopped: the passkey and every device record.
    assert row_count(app, "webauthn_credentials") == 0
    assert client.get(DEVICES, headers=bearer(token)).json["devices"] == []
    [notice] = emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT)
    body = notice.get_payload(decode=True).decode()
    assert "passkey" in body and "bound" in body and "refused" in body
    later = login(other_browser(app, WINDOWS_FIREFOX), person.email, person.password)
    assert later.status_code == 200, later.json


def test_refusing_a_purpose_that_holds_no_protection_needs_no_step_up(
    app, runtime, client, mailbox, sms, clock
):
    consent = baseline_consent(security="granted", device_biometrics="refused")
    person, session = register(client, mailbox, sms, consent=consent)
    two_hours_of_use(client, clock, session["token"])
    done = refuse(client, session["token"], "device_biometrics", "security")
    assert done.status_code == 200, done.json
    assert emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT) == []
