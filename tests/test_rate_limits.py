"""flask-limiter: 429 problem documents with Retry-After, keyed per IP, per
destination, and per (identifier, source) for password sign-in."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import (
    assert_problem,
    login,
    new_person,
    nothing_changes,
    register,
    request_sms_code,
    sent_messages,
)

PER_ACCOUNT = 3
PER_IP = 6
PER_DESTINATION = 2
OTHER_IP = {"REMOTE_ADDR": "198.51.100.23"}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        "limit_login_per_account": f"{PER_ACCOUNT}/minute",
        "limit_login_per_ip": f"{PER_IP}/minute",
        "limit_code_send_per_destination": f"{PER_DESTINATION}/hour",
        # The service's own resend cooldown would answer first; take it out of the way.
        "code_resend_cooldown_seconds": 0,
    }


def assert_rate_limited(response: Any, window_seconds: int) -> dict[str, Any]:
    body = assert_problem(response, 429, "rate-limited")
    retry_after = response.headers.get("Retry-After", "")
    assert retry_after.isdigit(), response.headers
    assert 1 <= int(retry_after) <= window_seconds
    return body


WRONG_PASSWORD = "not-the-password-x"


def password_attempt(client, identifier: str, password: str = WRONG_PASSWORD, **kw: Any):
    return client.post(
        "/api/v1/login/password",
        json={"identifier": identifier, "password": password, "token_delivery": "bearer"},
        **kw,
    )


@pytest.mark.parametrize(
    "spellings",
    [
        ["Person@Example.com", "person@example.com", "PERSON@EXAMPLE.COM", "person@EXAMPLE.com"],
        ["+8613900000001", "13900000001", "+86 139 0000 0001", "139-0000-0001"],
    ],
    ids=["email-case", "phone-format"],
)
def test_sign_in_is_limited_per_account_however_it_is_typed(client, spellings):
    for spelling in spellings[:PER_ACCOUNT]:
        assert_problem(password_attempt(client, spelling), 401, "invalid-credentials")
    limited = password_attempt(client, spellings[PER_ACCOUNT])
    assert_rate_limited(limited, 60)
    # The key is the identifier *and* where the guesses come from: one address
    # using up its requests does not hold up the owner elsewhere.
    elsewhere = password_attempt(client, spellings[0], environ_overrides=OTHER_IP)
    assert_problem(elsewhere, 401, "invalid-credentials")
    # Another account from the same address is not held up.
    assert_problem(password_attempt(client, "someone-else@example.com"), 401, "invalid-credentials")


def test_the_account_limit_holds_even_for_the_right_password(app, client, mailbox, sms, runtime):
    person, _ = register(client, mailbox, sms)
    for _ in range(PER_ACCOUNT):
        assert password_attempt(client, person.email.upper()).status_code == 401
    verifications = runtime.passwords.verifications
    with nothing_changes(app, runtime, mailbox, sms, "a rate-limited sign-in"):
        refused = password_attempt(client, person.email, person.password)
        assert_rate_limited(refused, 60)
    # Refused before any password hashing work was done.
    assert runtime.passwords.verifications == verifications
    assert "Set-Cookie" not in refused.headers and "token" not in refused.get_json()


def test_sign_in_is_limited_per_ip(client):
    for i in range(PER_IP):
        response = password_attempt(client, f"guess{i}@example.com")
        assert_problem(response, 401, "invalid-credentials")
    assert_rate_limited(password_attempt(client, "fresh-guess@example.com"), 60)
    # Another address is not affected.
    other = password_attempt(client, "fresh-guess@example.com", environ_overrides=OTHER_IP)
    assert_problem(other, 401, "invalid-credentials")


def test_junk_sms_codes_for_a_number_do_not_limit_its_owner(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    spellings = [person.phone, person.phone.removeprefix("+86"), "+86 " + person.phone[3:]]
    for n in range(PER_IP):
        junk = {"phone": spellings[n % 3], "flow": f"made-up-flow-{n:06d}", "code": "123456"}
        assert_problem(client.post("/api/v1/login/sms", json=junk), 400, "invalid-code")
    # The junk sender meets the per-address limit...
    assert_rate_limited(client.post("/api/v1/login/sms", json=junk), 60)
    # ...while the owner, elsewhere, asks for a code and signs in with it.
    started = request_sms_code(client, person.phone, environ_overrides=OTHER_IP)
    code = sms.last_code(person.phone, count=2)
    body = {"phone": person.phone, "flow": started.json["flow"], "code": code}
    signed_in = client.post("/api/v1/login/sms", json=body, environ_overrides=OTHER_IP)
    assert signed_in.status_code == 200, signed_in.json


def test_sms_codes_are_limited_per_destination(app, client, mailbox, sms, runtime):
    person, _ = register(client, mailbox, sms)
    sms.clear()
    spellings = [person.phone, person.phone.removeprefix("+86"), "+86 " + person.phone[3:]]
    for i in range(PER_DESTINATION):
        response = client.post("/api/v1/login/sms/code", json={"phone": spellings[i]})
        assert response.status_code == 202, response.get_json()
        sms.wait_for(person.phone, count=i + 1)
    with nothing_changes(app, runtime, mailbox, sms, "a rate-limited code request"):
        for spelling in spellings:
            limited = client.post("/api/v1/login/sms/code", json={"phone": spelling})
            assert_rate_limited(limited, 3600)
    assert len(sms.to(person.phone)) == PER_DESTINATION

    # Other numbers, and other addresses, still get their codes.
    other_person, _ = register(client, mailbox, sms)
    response = client.post("/api/v1/login/sms/code", json={"phone": other_person.phone})
    assert response.status_code == 202
    sms.wait_for(other_person.phone, count=2)  # the registration code, then this one
    # The limit is per (destination, network): whoever filled it from here
    # cannot stop the owner asking from another network (NIST SP 800-63B-4).
    elsewhere = client.post(
        "/api/v1/login/sms/code", json={"phone": person.phone}, environ_overrides=OTHER_IP
    )
    assert elsewhere.status_code == 202
    sms.wait_for(person.phone, count=PER_DESTINATION + 1)


def test_password_reset_codes_are_limited_per_destination(app, client, mailbox, sms, runtime):
    person, _ = register(client, mailbox, sms)
    mailbox.clear()
    spellings = [person.email, person.email.upper(), person.email.capitalize()]
    for i in range(PER_DESTINATION):
        response = client.post("/api/v1/password-reset", json={"identifier": spellings[i]})
        assert response.status_code == 202
        mailbox.wait_for(person.email, count=i + 1)
    with nothing_changes(app, runtime, mailbox, sms, "a rate-limited reset"):
        assert_rate_limited(
            client.post("/api/v1/password-reset", json={"identifier": spellings[2]}), 3600
        )
    assert len(mailbox.to(person.email)) == PER_DESTINATION


def test_registration_codes_are_limited_per_destination(client, mailbox, sms, runtime):
    email = new_person().email
    for _ in range(PER_DESTINATION):
        person = new_person()
        person.email = email
        response = client.post(
            "/api/v1/registration",
            json={
                "email": person.email,
                "phone": person.phone,
                "full_name": person.full_name,
                "password": person.password,
            },
        )
        assert response.status_code == 202, response.get_json()
    person = new_person()
    limited = client.post(
        "/api/v1/registration",
        json={
            "email": email.upper(),
            "phone": person.phone,
            "full_name": person.full_name,
            "password": person.password,
        },
    )
    assert_rate_limited(limited, 3600)
    assert sent_messages(runtime, mailbox, sms)[0] == PER_DESTINATION
    assert sms.to(person.phone) == []


def test_rate_limited_answers_carry_limit_headers(client):
    for _ in range(PER_ACCOUNT):
        password_attempt(client, "headers@example.com")
    limited = password_attempt(client, "headers@example.com")
    assert_rate_limited(limited, 60)
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["Cache-Control"] == "no-store"


def test_a_successful_sign_in_is_still_counted(client, mailbox, sms):
    """The limit counts attempts, not failures: it bounds the request rate."""
    person, _ = register(client, mailbox, sms)
    for _ in range(PER_ACCOUNT):
        assert login(client, person.phone, person.password).status_code == 200
    assert_rate_limited(login(client, person.phone, person.password), 60)


def test_a_limit_for_a_whole_blueprint_stops_the_app_from_starting(settings):
    """Limits are checked by the routes that declare them (app/extensions.py:
    flask-limiter's per-request pass is skipped). A limit that would need that
    pass, one on a whole blueprint, must stop the service starting rather than
    go unenforced."""
    from flask import Blueprint

    from app import create_app
    from app.extensions import limiter

    unchecked = Blueprint("unchecked_by_routes", __name__)
    limiter.limit("1/hour")(unchecked)
    try:
        with pytest.raises(RuntimeError, match="per route"):
            create_app(settings)
    finally:
        limiter.limit_manager._blueprint_limits.pop("unchecked_by_routes", None)
    create_app(settings).extensions["privid.engine"].dispose()
