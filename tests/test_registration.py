"""Registration through the JSON API: two proofs, then an account and a session.

Registered addresses get the same answers as new ones, a notice instead of a code,
and a flow that can never finish.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from tests.fakes import CODE_RE
from tests.helpers import (
    GOOD_PASSWORD,
    Person,
    bearer,
    login,
    new_person,
    register,
    start_registration,
)

FLOW_KEYS = {"flow_id", "expires_at", "email_confirmed", "phone_confirmed"}
PROBLEM_TYPE = "https://privid.dev/problems/"
COOKIE_NAME = "__Host-privid_session"


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock


# -- helpers -------------------------------------------------------------------


def verify(client, flow_id: str, channel: str, code: str, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/registration/{flow_id}/verify",
        json={"channel": channel, "code": code, **extra},
    )


def resend(client, flow_id: str, channel: str) -> Any:
    return client.post(f"/api/v1/registration/{flow_id}/resend", json={"channel": channel})


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == PROBLEM_TYPE + slug
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def pointers(response: Any) -> list[str]:
    return [error["pointer"] for error in response.get_json().get("errors", [])]


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    first, *attributes = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    attrs: dict[str, str] = {}
    for attribute in attributes:
        key, _, val = attribute.partition("=")
        attrs[key.lower()] = val
    return name, value, attrs


def me(client, token: str) -> Any:
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 200, response.json
    return response.json


def start(client, person: Person) -> str:
    response = start_registration(client, person)
    assert response.status_code == 202, response.json
    return str(response.json["flow_id"])


# -- the full flow ---------------------------------------------------------------


def test_full_registration_creates_account_and_bearer_session(client, mailbox, sms):
    person = new_person("Ada Lovelace")
    started = start_registration(client, person)
    assert started.status_code == 202
    assert set(started.json) == FLOW_KEYS
    assert started.json["email_confirmed"] is False
    assert started.json["phone_confirmed"] is False
    flow = started.json["flow_id"]

    first = verify(client, flow, "email", mailbox.last_code(person.email))
    assert first.status_code == 200
    assert first.json["session"] is None
    assert first.json["flow"]["email_confirmed"] is True
    assert first.json["flow"]["phone_confirmed"] is False
    assert "Set-Cookie" not in first.headers

    done = verify(client, flow, "phone", sms.last_code(person.phone), token_delivery="bearer")
    assert done.status_code == 201
    assert done.json["flow"]["email_confirmed"] is True
    assert done.json["flow"]["phone_confirmed"] is True
    session = done.json["session"]
    assert session["token"]
    assert session["csrf_token"] is None
    assert session["amr"] == ["pwd", "otp"]
    assert "Set-Cookie" not in done.headers

    profile = me(client, session["token"])
    assert profile["email"] == person.email
    assert profile["phone"] == person.phone
    assert profile["full_name"] == "Ada Lovelace"
    # The password typed at registration signs in, by email and by phone.
    assert login(client, person.email, person.password).status_code == 200
    assert login(client, person.phone, person.password).status_code == 200


def test_phone_first_then_email_also_completes(client, mailbox, sms):
    person = new_person()
    flow = start(client, person)
    first = verify(client, flow, "phone", sms.last_code(person.phone))
    assert first.status_code == 200
    assert first.json["flow"]["phone_confirmed"] is True
    assert first.json["session"] is None
    done = verify(client, flow, "email", mailbox.last_code(person.email), token_delivery="bearer")
    assert done.status_code == 201
    assert me(client, done.json["session"]["token"])["email"] == person.email


def test_cookie_delivery_sets_host_prefixed_hardened_cookie(client, mailbox, sms):
    person = new_person()
    flow = start(client, person)
    assert verify(client, flow, "email", mailbox.last_code(person.email)).status_code == 200
    done = verify(client, flow, "phone", sms.last_code(person.phone), token_delivery="cookie")
    assert done.status_code == 201
    session = done.json["session"]
    # The token travels only in the cookie; the body carries the CSRF token.
    assert session["token"] is None
    assert session["csrf_token"]

    cookies = [parse_set_cookie(h) for h in done.headers.getlist("Set-Cookie") if COOKIE_NAME in h]
    assert len(cookies) == 1
    name, value, attrs = cookies[0]
    assert name == COOKIE_NAME
    assert len(value) >= 32
    assert "httponly" in attrs
    assert "secure" in attrs
    assert attrs["samesite"].lower() == "lax"
    assert attrs["path"] == "/"
    assert "domain" not in attrs  # __Host- cookies must not name a domain

    # The browser's cookie alone is enough to read the profile.
    profile = client.get("/api/v1/me")
    assert profile.status_code == 200
    assert profile.json["email"] == person.email
    # ... but the cookie value is not a bearer token.
    assert client.get("/api/v1/me", headers=bearer(value)).status_code == 401


def test_default_token_delivery_is_cookie(client, mailbox, sms):
    person = new_person()
    flow = start(client, person)
    verify(client, flow, "email", mailbox.last_code(person.email))
    done = verify(client, flow, "phone", sms.last_code(person.phone))
    assert done.status_code == 201
    assert done.json["session"]["token"] is None
    assert any(COOKIE_NAME in h for h in done.headers.getlist("Set-Cookie"))


def test_completed_flow_is_gone(client, mailbox, sms):
    person = new_person()
    flow = start(client, person)
    email_code = mailbox.last_code(person.email)
    phone_code = sms.last_code(person.phone)
    verify(client, flow, "email", email_code)
    assert verify(client, flow, "phone", phone_code, token_delivery="bearer").status_code == 201
    assert_problem(verify(client, flow, "phone", phone_code), 404, "not-found")
    assert_problem(resend(client, flow, "email"), 404, "not-found")


def test_confirming_a_channel_twice_is_refused(client, mailbox, sms):
    person = new_person()
    flow = start(client, person)
    code = mailbox.last_code(person.email)
    assert verify(client, flow, "email", code).status_code == 200
    again = verify(client, flow, "email", code)
    assert_problem(again, 422, "validation-error")
    assert pointers(again) == ["#/channel"]
    assert_problem(resend(client, flow, "email"), 422, "validation-error")


def test_wrong_code_is_refused_and_creates_nothing(client, mailbox, sms):
    person = new_person()
    flow = start(client, person)
    verify(client, flow, "email", mailbox.last_code(person.email))
    wrong = verify(client, flow, "phone", other_code(sms.last_code(person.phone)))
    assert_problem(wrong, 400, "invalid-code")
    assert login(client, person.email, person.password).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "email", "code": "12345"},
        {"channel": "email", "code": "1234567"},
        {"channel": "email", "code": "abcdef"},
        {"channel": "fax", "code": "123456"},
        {"channel": "email", "code": 123456},
    ],
)
def test_malformed_verify_bodies_are_422(client, mailbox, sms, body):
    flow = start(client, new_person())
    response = client.post(f"/api/v1/registration/{flow}/verify", json=body)
    assert_problem(response, 422, "validation-error")
    assert pointers(response)


# -- registered addresses ----------------------------------------------------------


def test_registered_email_gets_same_answer_notice_and_a_dead_flow(
    client, mailbox, sms, runtime, monkeypatch
):
    owner, _ = register(client, mailbox, sms)
    fresh_start = start_registration(client, new_person())

    # Every code issued from here on is known to the test, so "the right code"
    # for the taken channel can be tried too.
    monkeypatch.setattr("app.services.codes.new_code", lambda: "424242")
    stranger = Person(email=owner.email, phone=new_person().phone, full_name="Mallory")
    taken = start_registration(client, stranger)

    assert taken.status_code == fresh_start.status_code == 202
    assert set(taken.json) == set(fresh_start.json) == FLOW_KEYS
    assert taken.mimetype == fresh_start.mimetype
    assert taken.json["email_confirmed"] is False
    assert taken.json["phone_confirmed"] is False

    notice = mailbox.wait_for(owner.email, count=2)
    assert "tried to register" in notice["Subject"].lower()
    body = notice.get_payload(decode=True).decode()
    assert not CODE_RE.search(body)
    assert not CODE_RE.search(notice["Subject"])
    runtime.dispatcher.drain()
    assert len(mailbox.to(owner.email)) == 2  # the original code and the notice, no more

    flow = taken.json["flow_id"]
    # The new phone is proven normally; it does not finish anything.
    phone_ok = verify(client, flow, "phone", sms.last_code(stranger.phone))
    assert phone_ok.status_code == 200
    assert phone_ok.json["session"] is None
    # The email channel refuses any code, even the one the service generated.
    refused = verify(client, flow, "email", "424242", token_delivery="bearer")
    assert_problem(refused, 400, "invalid-code")
    for guess in ("000000", "123456", "999999"):
        assert_problem(verify(client, flow, "email", guess), 400, "invalid-code")

    # The owner's account is untouched; the stranger's password does nothing.
    assert login(client, owner.email, owner.password).status_code == 200
    assert login(client, stranger.phone, stranger.password).status_code == 401


def test_registered_email_wrong_code_answer_matches_fresh_flow(client, mailbox, sms):
    owner, _ = register(client, mailbox, sms)
    fresh = new_person()
    fresh_flow = start(client, fresh)
    taken_flow = start(client, Person(owner.email, new_person().phone, "Mallory"))
    fresh_wrong = verify(client, fresh_flow, "email", other_code(mailbox.last_code(fresh.email)))
    taken_wrong = verify(client, taken_flow, "email", "123456")
    assert fresh_wrong.status_code == taken_wrong.status_code == 400
    assert fresh_wrong.get_json() == taken_wrong.get_json()


def test_registered_email_in_other_case_counts_as_registered(client, mailbox, sms, runtime):
    owner, _ = register(client, mailbox, sms)
    shouted = Person(owner.email.upper(), new_person().phone, "Mallory")
    assert start_registration(client, shouted).status_code == 202
    notice = mailbox.wait_for(owner.email, count=2)
    assert "tried to register" in notice["Subject"].lower()


def test_registered_phone_gets_sms_notice_without_code(client, mailbox, sms, runtime, monkeypatch):
    owner, _ = register(client, mailbox, sms)
    monkeypatch.setattr("app.services.codes.new_code", lambda: "424242")
    stranger = Person(email=new_person().email, phone=owner.phone, full_name="Mallory")
    taken = start_registration(client, stranger)
    assert taken.status_code == 202
    assert set(taken.json) == FLOW_KEYS

    notice = sms.wait_for(owner.phone, count=2)
    assert "tried to register" in notice["text"].lower()
    assert not CODE_RE.search(notice["text"])
    runtime.dispatcher.drain()
    assert len(sms.to(owner.phone)) == 2

    flow = taken.json["flow_id"]
    email_ok = verify(client, flow, "email", mailbox.last_code(stranger.email))
    assert email_ok.status_code == 200
    assert email_ok.json["session"] is None
    assert_problem(
        verify(client, flow, "phone", "424242", token_delivery="bearer"), 400, "invalid-code"
    )
    assert login(client, owner.phone, owner.password).status_code == 200


def test_both_registered_both_owners_notified_and_nothing_completes(
    client, mailbox, sms, runtime, monkeypatch
):
    first, _ = register(client, mailbox, sms)
    second, _ = register(client, mailbox, sms)
    monkeypatch.setattr("app.services.codes.new_code", lambda: "424242")
    taken = start_registration(client, Person(first.email, second.phone, "Mallory"))
    assert taken.status_code == 202
    assert set(taken.json) == FLOW_KEYS
    email_notice = mailbox.wait_for(first.email, count=2)
    sms_notice = sms.wait_for(second.phone, count=2)
    assert not CODE_RE.search(email_notice.get_payload(decode=True).decode())
    assert not CODE_RE.search(sms_notice["text"])
    flow = taken.json["flow_id"]
    assert_problem(verify(client, flow, "email", "424242"), 400, "invalid-code")
    assert_problem(verify(client, flow, "phone", "424242"), 400, "invalid-code")


def test_resend_on_registered_address_sends_another_notice_not_a_code(
    client, mailbox, sms, runtime, frozen_clock
):
    owner, _ = register(client, mailbox, sms)
    flow = start(client, Person(owner.email, new_person().phone, "Mallory"))
    mailbox.wait_for(owner.email, count=2)
    frozen_clock.advance(seconds=61)
    assert resend(client, flow, "email").status_code == 202
    again = mailbox.wait_for(owner.email, count=3)
    assert "tried to register" in again["Subject"].lower()
    assert not CODE_RE.search(again.get_payload(decode=True).decode())


# -- resend and cooldown --------------------------------------------------------------


def test_resend_is_refused_during_cooldown_then_works(client, mailbox, sms, frozen_clock, runtime):
    person = new_person()
    flow = start(client, person)
    first_code = mailbox.last_code(person.email)

    early = resend(client, flow, "email")
    assert_problem(early, 429, "too-many-attempts")
    retry = int(early.headers["Retry-After"])
    assert 1 <= retry <= 61

    frozen_clock.advance(seconds=30)
    still = resend(client, flow, "email")
    assert_problem(still, 429, "too-many-attempts")
    assert int(still.headers["Retry-After"]) <= 31
    runtime.dispatcher.drain()
    assert len(mailbox.to(person.email)) == 1  # nothing sent during the cooldown

    frozen_clock.advance(seconds=31)
    later = resend(client, flow, "email")
    assert later.status_code == 202
    assert set(later.json) == FLOW_KEYS
    assert later.json["flow_id"] == flow
    second_code = mailbox.last_code(person.email, count=2)
    if second_code != first_code:
        assert_problem(verify(client, flow, "email", first_code), 400, "invalid-code")
    assert verify(client, flow, "email", second_code).status_code == 200


def test_resend_phone_sends_new_sms(client, mailbox, sms, frozen_clock):
    person = new_person()
    flow = start(client, person)
    sms.wait_for(person.phone)
    assert_problem(resend(client, flow, "phone"), 429, "too-many-attempts")
    frozen_clock.advance(seconds=60)
    assert resend(client, flow, "phone").status_code == 202
    code = sms.last_code(person.phone, count=2)
    assert verify(client, flow, "email", mailbox.last_code(person.email)).status_code == 200
    done = verify(client, flow, "phone", code, token_delivery="bearer")
    assert done.status_code == 201


def test_cooldown_is_per_channel(client, mailbox, sms, frozen_clock):
    person = new_person()
    flow = start(client, person)
    frozen_clock.advance(seconds=61)
    assert resend(client, flow, "email").status_code == 202
    # The phone's own cooldown is independent of the email resend just made.
    assert resend(client, flow, "phone").status_code == 202
    assert_problem(resend(client, flow, "email"), 429, "too-many-attempts")


# -- unknown and expired flows -----------------------------------------------------


def test_unknown_flow_is_404_problem(client):
    unknown = "7d8f3c1e-0000-4000-8000-000000000000"
    assert_problem(verify(client, unknown, "email", "123456"), 404, "not-found")
    assert_problem(resend(client, unknown, "phone"), 404, "not-found")


def test_expired_flow_is_404_problem_and_cannot_finish(client, mailbox, sms, frozen_clock):
    person = new_person()
    flow = start(client, person)
    email_code = mailbox.last_code(person.email)
    phone_code = sms.last_code(person.phone)
    frozen_clock.advance(minutes=59)
    # Codes expire long before the flow; a fresh one keeps the flow usable.
    assert resend(client, flow, "email").status_code == 202
    frozen_clock.advance(minutes=1, seconds=1)
    assert_problem(verify(client, flow, "email", email_code), 404, "not-found")
    assert_problem(verify(client, flow, "phone", phone_code), 404, "not-found")
    assert_problem(resend(client, flow, "phone"), 404, "not-found")
    assert login(client, person.email, person.password).status_code == 401


def test_flow_expiry_is_reported_one_hour_ahead(client, frozen_clock):
    response = start_registration(client, new_person())
    expires = response.json["expires_at"]
    assert expires.startswith("2026-11-27T10:00:00")


# -- full names -------------------------------------------------------------------


def complete(client, mailbox, sms, person: Person) -> dict[str, Any]:
    _, session = register(client, mailbox, sms, person, token_delivery="bearer")
    return me(client, session["token"])


def test_decomposed_name_is_stored_composed(client, mailbox, sms):
    typed = "Ame\u0301lie Poulain"
    profile = complete(client, mailbox, sms, new_person(typed))
    assert profile["full_name"] == "Am\u00e9lie Poulain"
    assert unicodedata.is_normalized("NFC", profile["full_name"])


def test_name_surrounding_whitespace_is_trimmed(client, mailbox, sms):
    profile = complete(client, mailbox, sms, new_person("  Grace Hopper \t"))
    assert profile["full_name"] == "Grace Hopper"


@pytest.mark.parametrize("name", ["欧阳娜娜", "李小龙", "王 芳", "司马 相如"])
def test_chinese_names_round_trip(client, mailbox, sms, name):
    assert complete(client, mailbox, sms, new_person(name))["full_name"] == name


def test_name_limit_counts_composed_characters(client, mailbox, sms):
    # 200 code points as typed, 100 characters once composed: accepted.
    typed = "e\u0301" * 100
    profile = complete(client, mailbox, sms, new_person(typed))
    assert profile["full_name"] == "\u00e9" * 100


def test_name_of_100_characters_is_accepted(client, mailbox, sms):
    name = "王" * 100
    assert complete(client, mailbox, sms, new_person(name))["full_name"] == name


@pytest.mark.parametrize("name", ["\u00e9" * 101, "e\u0301" * 101, "王" * 101])
def test_name_over_100_characters_is_refused(client, runtime, mailbox, name):
    person = new_person(name)
    response = start_registration(client, person)
    assert_problem(response, 422, "validation-error")
    assert pointers(response) == ["#/full_name"]
    assert "100" in response.json["errors"][0]["detail"]
    runtime.dispatcher.drain()
    assert mailbox.to(person.email) == []


@pytest.mark.parametrize("name", ["   ", "Bob\u0000by", "Bob\u200bby", "Bob\u0007"])
def test_blank_or_control_character_names_are_refused(client, name):
    response = start_registration(client, new_person(name))
    assert response.status_code in {400, 422}
    assert response.mimetype == "application/problem+json"


# -- phone numbers and emails -----------------------------------------------------


@pytest.mark.parametrize("style", ["{n}", "{a} {b} {c}", "{a}-{b}-{c}", "0086{n}", "+86 {n}"])
def test_phone_without_plus_is_read_in_china_and_stored_e164(client, mailbox, sms, style):
    person = new_person()
    national = person.phone.removeprefix("+86")
    typed = style.format(n=national, a=national[:3], b=national[3:7], c=national[7:])
    typed_person = Person(person.email, typed, person.full_name)
    started = start_registration(client, typed_person)
    assert started.status_code == 202, started.json
    flow = started.json["flow_id"]
    verify(client, flow, "email", mailbox.last_code(person.email))
    # The code goes to, and the account holds, the E.164 number.
    done = verify(client, flow, "phone", sms.last_code(person.phone), token_delivery="bearer")
    assert done.status_code == 201
    assert me(client, done.json["session"]["token"])["phone"] == person.phone
    # Signing in with the national form finds the same account.
    assert login(client, national, person.password).status_code == 200


def test_foreign_number_with_plus_keeps_its_country(client, mailbox, sms):
    person = Person(new_person().email, "+44 7911 123456", "Alan Turing")
    started = start_registration(client, person)
    assert started.status_code == 202
    code = sms.last_code("+447911123456")
    verify(client, started.json["flow_id"], "email", mailbox.last_code(person.email))
    done = verify(client, started.json["flow_id"], "phone", code, token_delivery="bearer")
    assert me(client, done.json["session"]["token"])["phone"] == "+447911123456"


def test_email_is_stored_lowercased(client, mailbox, sms):
    person = new_person()
    typed = Person(person.email.replace("person", "PerSon").upper(), person.phone, "Li Lei")
    started = start_registration(client, typed)
    assert started.status_code == 202
    flow = started.json["flow_id"]
    verify(client, flow, "email", mailbox.last_code(person.email))
    done = verify(client, flow, "phone", sms.last_code(person.phone), token_delivery="bearer")
    assert me(client, done.json["session"]["token"])["email"] == person.email


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "two@@example.com"),
        ("email", "nobody@"),
        ("email", "@example.com"),
        ("email", ""),
        ("phone", "12345"),
        ("phone", "not a number"),
        ("phone", "+86 123"),
        ("phone", "+999 1234567890"),
        ("phone", ""),
    ],
)
def test_invalid_email_or_phone_is_422_with_pointer(client, mailbox, sms, runtime, field, value):
    person = new_person()
    body = {
        "email": person.email,
        "phone": person.phone,
        "full_name": person.full_name,
        "password": GOOD_PASSWORD,
        field: value,
    }
    response = client.post("/api/v1/registration", json=body)
    problem = assert_problem(response, 422, "validation-error")
    assert pointers(response) == [f"#/{field}"]
    assert all(error["detail"] for error in problem["errors"])
    runtime.dispatcher.drain()
    assert mailbox.to(person.email) == []
    assert sms.to(person.phone) == []


@pytest.mark.parametrize("missing", ["email", "phone", "full_name", "password"])
def test_missing_field_is_422_with_pointer(client, missing):
    person = new_person()
    body = {
        "email": person.email,
        "phone": person.phone,
        "full_name": person.full_name,
        "password": GOOD_PASSWORD,
    }
    del body[missing]
    response = client.post("/api/v1/registration", json=body)
    assert_problem(response, 422, "validation-error")
    assert pointers(response) == [f"#/{missing}"]


def test_unknown_field_is_refused(client):
    person = new_person()
    body = {
        "email": person.email,
        "phone": person.phone,
        "full_name": person.full_name,
        "password": GOOD_PASSWORD,
        "is_admin": True,
    }
    response = client.post("/api/v1/registration", json=body)
    assert_problem(response, 422, "validation-error")
    assert pointers(response) == ["#/is_admin"]
