"""A one-time code works only for the account it was issued for: cancelling an
account removes its codes, and a code sent before an account existed (or
before it was cancelled and the address registered again) is refused."""

from __future__ import annotations

from sqlalchemy import text

from tests.helpers import (
    Person,
    assert_problem,
    bearer,
    finish_reset,
    login,
    new_person,
    register,
    request_sms_code,
    sms_sign_in,
    start_reset,
)

NEW_PASSWORD = "lantern-quartz-meadow-77"


def _codes_left(app) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        return int(connection.execute(text("SELECT COUNT(*) FROM one_time_codes")).scalar_one())


def _cancel(client, token: str) -> None:
    answer = client.post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"}, headers=bearer(token)
    )
    assert answer.status_code == 200, answer.json


def _same_address(person: Person) -> Person:
    return Person(email=person.email, phone=person.phone, full_name="王小明")


def test_a_reset_code_from_before_cancellation_does_not_work_on_the_new_account(
    app, client, runtime, mailbox, sms
):
    person, session = register(client, mailbox, sms)
    mailbox.clear()
    asked = start_reset(client, person.email)
    old_code = mailbox.last_code(person.email)

    _cancel(client, session["token"])
    assert _codes_left(app) == 0, "cancellation left one-time codes behind"

    runtime.dispatcher.drain()
    mailbox.clear()
    sms.clear()
    newcomer, _ = register(client, mailbox, sms, _same_address(person))
    used = finish_reset(client, asked, person.email, old_code, NEW_PASSWORD)
    assert_problem(used, 400, "invalid-code")
    # The new owner's password is untouched.
    assert login(client, newcomer.email, NEW_PASSWORD).status_code == 401
    assert login(client, newcomer.email, newcomer.password).status_code == 200


def test_an_sms_sign_in_code_from_before_cancellation_does_not_sign_in_the_new_account(
    client, runtime, mailbox, sms
):
    person, session = register(client, mailbox, sms)
    sms.clear()
    asked = request_sms_code(client, person.phone)
    assert asked.status_code == 202
    old_code = sms.last_code(person.phone)

    _cancel(client, session["token"])
    runtime.dispatcher.drain()
    mailbox.clear()
    sms.clear()
    register(client, mailbox, sms, _same_address(person))
    used = sms_sign_in(client, asked, person.phone, old_code)
    assert_problem(used, 400, "invalid-code")


def test_a_reset_code_stays_with_its_account_when_the_address_moves_on(
    client, runtime, mailbox, sms
):
    # The first owner asks for a reset code, then moves to another address;
    # someone else registers the old one. The code still names the old address,
    # but it was issued for the first account and must not reset the second.
    first, session = register(client, mailbox, sms)
    mailbox.clear()
    reset_asked = start_reset(client, first.email)
    old_code = mailbox.last_code(first.email)

    moved_to = new_person().email
    asked = client.post(
        "/api/v1/me/email",
        json={"email": moved_to, "current_password": first.password},
        headers=bearer(session["token"]),
    )
    assert asked.status_code == 202, asked.json
    confirmed = client.post(
        "/api/v1/me/email/confirm",
        json={"code": mailbox.last_code(moved_to)},
        headers=bearer(session["token"]),
    )
    assert confirmed.status_code in {200, 204}, confirmed.json

    runtime.dispatcher.drain()
    mailbox.clear()
    second = new_person()
    second.email = first.email
    register(client, mailbox, sms, second)
    used = finish_reset(client, reset_asked, first.email, old_code, NEW_PASSWORD)
    assert_problem(used, 400, "invalid-code")
    assert login(client, second.email, second.password).status_code == 200


def test_a_reset_code_works_for_the_account_it_was_sent_to(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    mailbox.clear()
    asked = start_reset(client, person.email)
    code = mailbox.last_code(person.email)
    done = finish_reset(client, asked, person.email, code, NEW_PASSWORD)
    assert done.status_code == 204, done.json
    assert login(client, person.email, NEW_PASSWORD).status_code == 200
