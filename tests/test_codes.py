"""One-time code rules as a user meets them: registration, SMS sign-in and password
reset codes expire after ten minutes, allow five wrong tries, work once, and are
stored only as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from sqlalchemy import select

from app.models import OneTimeCode
from tests.fakes import CODE_RE
from tests.helpers import bearer, login, new_person, register, start_registration

NEW_PASSWORD = "quartz-lantern-meadow-77"
PROBLEM_TYPE = "https://privid.dev/problems/"


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock


# -- helpers -------------------------------------------------------------------


def other_code(code: str, step: int = 1) -> str:
    return f"{(int(code) + step) % 1_000_000:06d}"


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == PROBLEM_TYPE + slug
    return body


def verify(client, flow_id: str, channel: str, code: str) -> Any:
    return client.post(
        f"/api/v1/registration/{flow_id}/verify",
        json={"channel": channel, "code": code, "token_delivery": "bearer"},
    )


# The flow handle of each client's latest code request, as a client keeps it.
_flows: dict[tuple[int, str], str] = {}


def ask_sms_code(client, phone: str) -> Any:
    response = client.post("/api/v1/login/sms/code", json={"phone": phone})
    if response.status_code == 202:
        _flows[(id(client), "sms")] = response.json["flow"]
    return response


def sms_login(client, phone: str, code: str, delivery: str = "bearer") -> Any:
    flow = _flows[(id(client), "sms")]
    return client.post(
        "/api/v1/login/sms",
        json={"phone": phone, "flow": flow, "code": code, "token_delivery": delivery},
    )


def ask_reset(client, identifier: str) -> Any:
    response = client.post("/api/v1/password-reset", json={"identifier": identifier})
    if response.status_code == 202:
        _flows[(id(client), "reset")] = response.json["flow"]
    return response


def confirm_reset(client, identifier: str, code: str, password: str = NEW_PASSWORD) -> Any:
    flow = _flows[(id(client), "reset")]
    return client.post(
        "/api/v1/password-reset/confirm",
        json={"identifier": identifier, "flow": flow, "code": code, "new_password": password},
    )


def without_flow(response: Any) -> dict[str, Any]:
    """The answer minus its random flow handle, which must look the same either way."""
    body = dict(response.get_json())
    flow = body.pop("flow")
    assert isinstance(flow, str) and len(flow) == 43, flow
    return body


def started_flow(client, person) -> str:
    response = start_registration(client, person)
    assert response.status_code == 202, response.json
    return str(response.json["flow_id"])


def one_time_code_rows(app) -> list[dict[str, Any]]:
    with app.extensions["privid.engine"].connect() as connection:
        rows = connection.execute(select(OneTimeCode.__table__)).mappings().all()
    return [dict(row) for row in rows]


def as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex() + value.decode("latin-1")
    return str(value)


# -- expiry --------------------------------------------------------------------


def test_registration_code_works_until_just_before_ten_minutes(client, mailbox, frozen_clock):
    person = new_person()
    flow = started_flow(client, person)
    code = mailbox.last_code(person.email)
    frozen_clock.advance(minutes=9, seconds=59)
    assert verify(client, flow, "email", code).status_code == 200


def test_registration_code_expires_after_ten_minutes(client, mailbox, sms, frozen_clock):
    person = new_person()
    flow = started_flow(client, person)
    email_code = mailbox.last_code(person.email)
    phone_code = sms.last_code(person.phone)
    frozen_clock.advance(minutes=10)
    assert_problem(verify(client, flow, "email", email_code), 400, "invalid-code")
    assert_problem(verify(client, flow, "phone", phone_code), 400, "invalid-code")
    # A new code is the way out, and it works.
    assert (
        client.post(f"/api/v1/registration/{flow}/resend", json={"channel": "email"}).status_code
        == 202
    )
    assert (
        verify(client, flow, "email", mailbox.last_code(person.email, count=2)).status_code == 200
    )


def test_sms_login_code_expires_after_ten_minutes(client, mailbox, sms, frozen_clock):
    person, _ = register(client, mailbox, sms)
    assert ask_sms_code(client, person.phone).status_code == 202
    code = sms.last_code(person.phone, count=2)
    frozen_clock.advance(minutes=10)
    assert_problem(sms_login(client, person.phone, code), 400, "invalid-code")


def test_sms_login_code_works_just_before_expiry(client, mailbox, sms, frozen_clock):
    person, _ = register(client, mailbox, sms)
    ask_sms_code(client, person.phone)
    code = sms.last_code(person.phone, count=2)
    frozen_clock.advance(minutes=9, seconds=59)
    assert sms_login(client, person.phone, code).status_code == 200


def test_reset_code_expires_after_ten_minutes(client, mailbox, sms, frozen_clock):
    person, _ = register(client, mailbox, sms)
    assert ask_reset(client, person.email).status_code == 202
    code = mailbox.last_code(person.email, count=2)
    frozen_clock.advance(minutes=10, seconds=1)
    assert_problem(confirm_reset(client, person.email, code), 400, "invalid-code")
    assert login(client, person.email, NEW_PASSWORD).status_code == 401
    assert login(client, person.email, person.password).status_code == 200


def test_code_message_states_the_ten_minute_lifetime(client, mailbox, sms):
    person = new_person()
    started_flow(client, person)
    body = mailbox.wait_for(person.email).get_payload(decode=True).decode()
    assert "10 minutes" in body
    assert "10 min" in sms.wait_for(person.phone)["text"]


# -- wrong tries ----------------------------------------------------------------


def test_registration_five_wrong_tries_lock_the_code(client, mailbox, sms):
    person = new_person()
    flow = started_flow(client, person)
    code = mailbox.last_code(person.email)
    for step in range(1, 6):
        assert_problem(verify(client, flow, "email", other_code(code, step)), 400, "invalid-code")
    assert_problem(verify(client, flow, "email", code), 400, "invalid-code")
    # The other channel's code is counted separately.
    assert verify(client, flow, "phone", sms.last_code(person.phone)).status_code == 200


def test_registration_four_wrong_tries_still_allow_the_right_code(client, mailbox):
    person = new_person()
    flow = started_flow(client, person)
    code = mailbox.last_code(person.email)
    for step in range(1, 5):
        assert_problem(verify(client, flow, "email", other_code(code, step)), 400, "invalid-code")
    assert verify(client, flow, "email", code).status_code == 200


def test_locked_code_is_replaced_by_a_resent_one(client, mailbox, frozen_clock):
    person = new_person()
    flow = started_flow(client, person)
    code = mailbox.last_code(person.email)
    for step in range(1, 6):
        verify(client, flow, "email", other_code(code, step))
    frozen_clock.advance(seconds=61)
    resent = client.post(f"/api/v1/registration/{flow}/resend", json={"channel": "email"})
    assert resent.status_code == 202
    assert (
        verify(client, flow, "email", mailbox.last_code(person.email, count=2)).status_code == 200
    )


def test_sms_login_five_wrong_tries_lock_the_code(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_sms_code(client, person.phone)
    code = sms.last_code(person.phone, count=2)
    for step in range(1, 6):
        assert_problem(sms_login(client, person.phone, other_code(code, step)), 400, "invalid-code")
    assert_problem(sms_login(client, person.phone, code), 400, "invalid-code")


def test_sms_login_four_wrong_tries_still_allow_the_right_code(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_sms_code(client, person.phone)
    code = sms.last_code(person.phone, count=2)
    for step in range(1, 5):
        assert_problem(sms_login(client, person.phone, other_code(code, step)), 400, "invalid-code")
    assert sms_login(client, person.phone, code).status_code == 200


def test_reset_five_wrong_tries_lock_the_code(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_reset(client, person.email)
    code = mailbox.last_code(person.email, count=2)
    for step in range(1, 6):
        assert_problem(
            confirm_reset(client, person.email, other_code(code, step)), 400, "invalid-code"
        )
    assert_problem(confirm_reset(client, person.email, code), 400, "invalid-code")
    assert login(client, person.email, NEW_PASSWORD).status_code == 401
    assert login(client, person.email, person.password).status_code == 200


def test_wrong_tries_are_counted_even_though_the_request_fails(client, mailbox, sms, app):
    person, _ = register(client, mailbox, sms)
    ask_sms_code(client, person.phone)
    code = sms.last_code(person.phone, count=2)
    for step in range(1, 4):
        sms_login(client, person.phone, other_code(code, step))
    [row] = [r for r in one_time_code_rows(app) if r["purpose"] == "login_sms"]
    assert row["failed_attempts"] == 3


# -- single use -----------------------------------------------------------------


def test_sms_login_code_works_once(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_sms_code(client, person.phone)
    code = sms.last_code(person.phone, count=2)
    assert sms_login(client, person.phone, code).status_code == 200
    assert_problem(sms_login(client, person.phone, code), 400, "invalid-code")


def test_reset_code_works_once(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_reset(client, person.email)
    code = mailbox.last_code(person.email, count=2)
    assert confirm_reset(client, person.email, code).status_code == 204
    assert_problem(
        confirm_reset(client, person.email, code, "another-fine-passphrase-9"), 400, "invalid-code"
    )
    assert login(client, person.email, NEW_PASSWORD).status_code == 200
    assert login(client, person.email, "another-fine-passphrase-9").status_code == 401


def test_registration_code_works_once(client, mailbox, sms):
    person = new_person()
    flow = started_flow(client, person)
    code = mailbox.last_code(person.email)
    assert verify(client, flow, "email", code).status_code == 200
    assert verify(client, flow, "email", code).status_code == 422  # already confirmed
    assert verify(client, flow, "phone", sms.last_code(person.phone)).status_code == 201
    assert_problem(verify(client, flow, "email", code), 404, "not-found")


def test_a_code_works_only_with_the_flow_that_asked_for_it(app, client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_sms_code(client, person.phone)
    first = sms.last_code(person.phone, count=2)
    # Someone else asks for a code for the same number: the first stays good,
    # and their flow cannot spend its tries.
    stranger = app.test_client()
    stranger.environ_base["wsgi.url_scheme"] = "https"
    assert ask_sms_code(stranger, person.phone).status_code == 202
    second = sms.last_code(person.phone, count=3)
    if first != second:
        for _ in range(5):
            assert_problem(sms_login(stranger, person.phone, first), 400, "invalid-code")
    assert sms_login(client, person.phone, first).status_code == 200


def test_codes_are_bound_to_their_purpose(client, mailbox, sms, frozen_clock):
    person, _ = register(client, mailbox, sms)
    ask_reset(client, person.phone)
    reset_code = sms.last_code(person.phone, count=2)
    # A reset code is no sign-in code.
    ask_sms_code(client, person.phone)
    login_code = sms.last_code(person.phone, count=3)
    if reset_code != login_code:
        assert_problem(sms_login(client, person.phone, reset_code), 400, "invalid-code")
    assert confirm_reset(client, person.phone, reset_code).status_code == 204


# -- storage --------------------------------------------------------------------


def test_codes_are_stored_only_as_keyed_hashes(client, mailbox, sms, app, runtime):
    person, _ = register(client, mailbox, sms)
    other = new_person()
    started_flow(client, other)
    ask_sms_code(client, person.phone)
    ask_reset(client, person.email)
    codes = {
        ("register_email", mailbox.last_code(other.email)),
        ("register_phone", sms.last_code(other.phone)),
        ("login_sms", sms.last_code(person.phone, count=2)),
        ("password_reset", mailbox.last_code(person.email, count=2)),
    }
    rows = one_time_code_rows(app)
    assert {r["purpose"] for r in rows} >= {p for p, _ in codes}

    dump = " ".join(as_text(v) for row in rows for v in row.values())
    for _, code in codes:
        assert code not in dump

    for purpose, code in codes:
        [row] = [r for r in rows if r["purpose"] == purpose and r["consumed_at"] is None]
        stored = row["code_hash"]
        subject = f"{purpose}:{row['subject']}"
        # Not a plain hash anyone could brute-force over a million codes ...
        for unkeyed in (code, f"{subject}\x00{code}", f"{subject}{code}"):
            assert stored != hashlib.sha256(unkeyed.encode()).hexdigest()
        # ... but a keyed one: the right key matches, any other key does not.
        assert runtime.code_hasher.matches(subject, code, stored)
        other_key = hmac.new(
            b"k" * 32, subject.encode() + b"\x00" + code.encode(), hashlib.sha256
        ).hexdigest()
        assert stored != other_key


def test_code_texts_contain_exactly_one_code(client, mailbox, sms):
    person = new_person()
    started_flow(client, person)
    mail = mailbox.wait_for(person.email)
    assert len(CODE_RE.findall(mail.get_payload(decode=True).decode())) == 1
    assert len(CODE_RE.findall(sms.wait_for(person.phone)["text"])) == 1


# -- password reset ----------------------------------------------------------------


def test_reset_for_unknown_address_answers_alike_and_sends_nothing(client, mailbox, sms, runtime):
    person, _ = register(client, mailbox, sms)
    stranger = new_person()
    known = ask_reset(client, person.email)
    unknown_email = ask_reset(client, stranger.email)
    unknown_phone = ask_reset(client, stranger.phone)
    for response in (known, unknown_email, unknown_phone):
        assert response.status_code == 202
        assert response.mimetype == known.mimetype
        assert without_flow(response) == without_flow(known)
        assert set(response.headers.keys()) == set(known.headers.keys())
    runtime.dispatcher.drain()
    mailbox.wait_for(person.email, count=2)  # the known one does get a code
    assert mailbox.to(stranger.email) == []
    assert sms.to(stranger.phone) == []

    # A guessed code for the unknown address fails exactly like a wrong one.
    known_wrong = confirm_reset(
        client, person.email, other_code(mailbox.last_code(person.email, count=2))
    )
    unknown_wrong = confirm_reset(client, stranger.email, "123456")
    assert known_wrong.status_code == unknown_wrong.status_code == 400
    assert known_wrong.get_json() == unknown_wrong.get_json()


def test_repeated_resets_answer_alike_for_unknown_addresses(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    stranger = new_person()
    ask_reset(client, person.email)
    ask_reset(client, stranger.email)
    known = ask_reset(client, person.email)
    unknown = ask_reset(client, stranger.email)
    assert known.status_code == unknown.status_code == 202
    assert without_flow(known) == without_flow(unknown)
    assert known.json["flow"] != unknown.json["flow"]


def test_reset_by_phone_sends_sms_code(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    national = person.phone.removeprefix("+86")
    assert ask_reset(client, national).status_code == 202
    code = sms.last_code(person.phone, count=2)
    assert confirm_reset(client, person.phone, code).status_code == 204
    assert login(client, person.phone, NEW_PASSWORD).status_code == 200


def test_reset_ends_every_session(client, mailbox, sms):
    person, first_session = register(client, mailbox, sms)
    second = login(client, person.email, person.password)
    assert second.status_code == 200
    tokens = [first_session["token"], second.json["token"]]
    for token in tokens:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200

    ask_reset(client, person.email)
    code = mailbox.last_code(person.email, count=2)
    assert confirm_reset(client, person.email, code).status_code == 204

    for token in tokens:
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert login(client, person.email, person.password).status_code == 401
    fresh = login(client, person.email, NEW_PASSWORD)
    assert fresh.status_code == 200
    assert client.get("/api/v1/me", headers=bearer(fresh.json["token"])).status_code == 200
    notice = mailbox.wait_for(person.email, count=3)
    assert "password was changed" in notice["Subject"].lower()


def test_reset_ends_cookie_sessions_too(client, mailbox, sms):
    person, _ = register(client, mailbox, sms, token_delivery="cookie")
    assert client.get("/api/v1/me").status_code == 200
    ask_reset(client, person.email)
    code = mailbox.last_code(person.email, count=2)
    assert confirm_reset(client, person.email, code).status_code == 204
    assert client.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize("weak", ["password1", "short1!", "iloveyou"])
def test_weak_new_password_is_refused_without_using_the_code(client, mailbox, sms, weak):
    person, session = register(client, mailbox, sms)
    ask_reset(client, person.email)
    code = mailbox.last_code(person.email, count=2)
    refused = confirm_reset(client, person.email, code, weak)
    assert_problem(refused, 422, "validation-error")
    assert [e["pointer"] for e in refused.json["errors"]] == ["#/new_password"]
    # Nothing changed: the old password and session still work ...
    assert client.get("/api/v1/me", headers=bearer(session["token"])).status_code == 200
    assert login(client, person.email, weak).status_code == 401
    # ... and the same code still sets a good password.
    assert confirm_reset(client, person.email, code).status_code == 204
    assert login(client, person.email, NEW_PASSWORD).status_code == 200


def test_reset_password_built_from_own_email_is_refused(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_reset(client, person.email)
    code = mailbox.last_code(person.email, count=2)
    local = person.email.split("@")[0]
    refused = confirm_reset(client, person.email, code, f"{local}{local}")
    assert_problem(refused, 422, "validation-error")
    assert "own" in refused.json["errors"][0]["detail"]


# -- SMS sign-in ---------------------------------------------------------------------


def test_sms_login_issues_session_with_amr_sms(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    sent = ask_sms_code(client, person.phone)
    assert sent.status_code == 202
    response = sms_login(client, person.phone, sms.last_code(person.phone, count=2))
    assert response.status_code == 200
    session = response.json
    assert session["amr"] == ["sms"]
    assert session["acr"] == "urn:privid:acr:single-factor"
    assert session["token"]
    profile = client.get("/api/v1/me", headers=bearer(session["token"]))
    assert profile.status_code == 200
    assert profile.json["phone"] == person.phone
    listed = client.get("/api/v1/me/sessions", headers=bearer(session["token"])).json
    [current] = [s for s in listed["sessions"] if s["current"]]
    assert current["amr"] == ["sms"]


def test_sms_login_with_cookie_delivery(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    ask_sms_code(client, person.phone)
    response = sms_login(client, person.phone, sms.last_code(person.phone, count=2), "cookie")
    assert response.status_code == 200
    assert response.json["token"] is None
    assert response.json["amr"] == ["sms"]
    assert any("__Host-privid_session=" in h for h in response.headers.getlist("Set-Cookie"))
    assert client.get("/api/v1/me").status_code == 200


def test_sms_login_accepts_national_number(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    national = person.phone.removeprefix("+86")
    ask_sms_code(client, national)
    code = sms.last_code(person.phone, count=2)
    assert sms_login(client, national, code).status_code == 200


def test_sms_code_for_unknown_number_answers_alike_and_sends_nothing(client, mailbox, sms, runtime):
    person, _ = register(client, mailbox, sms)
    stranger = new_person()
    known = ask_sms_code(client, person.phone)
    unknown = ask_sms_code(client, stranger.phone)
    assert known.status_code == unknown.status_code == 202
    assert without_flow(known) == without_flow(unknown)
    runtime.dispatcher.drain()
    assert sms.to(stranger.phone) == []
    assert_problem(sms_login(client, stranger.phone, "123456"), 400, "invalid-code")


def test_sms_login_code_of_one_number_does_not_open_another(client, mailbox, sms):
    first, _ = register(client, mailbox, sms)
    second, _ = register(client, mailbox, sms)
    ask_sms_code(client, first.phone)
    code = sms.last_code(first.phone, count=2)
    assert_problem(sms_login(client, second.phone, code), 400, "invalid-code")
    assert sms_login(client, first.phone, code).status_code == 200
