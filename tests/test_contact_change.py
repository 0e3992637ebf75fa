"""Changing email or phone: the current password plus a code sent to the new address."""

from __future__ import annotations

from tests.helpers import bearer, login, new_person, register


def test_email_change_needs_password_and_code_at_the_new_address(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    new_email = "moved-" + person.email

    wrong = client.post(
        "/api/v1/me/email", json={"email": new_email, "current_password": "not-my-password"},
        headers=auth,
    )  # fmt: skip
    assert wrong.status_code == 422
    assert wrong.json["errors"][0]["pointer"] == "#/current_password"

    started = client.post(
        "/api/v1/me/email", json={"email": new_email, "current_password": person.password},
        headers=auth,
    )  # fmt: skip
    assert started.status_code == 202
    code = mailbox.last_code(new_email)
    wrong_code = "000000" if code != "000000" else "111111"
    refused = client.post("/api/v1/me/email/confirm", json={"code": wrong_code}, headers=auth)
    assert refused.status_code == 400
    confirmed = client.post("/api/v1/me/email/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 204

    assert client.get("/api/v1/me", headers=auth).json["email"] == new_email
    assert login(client, new_email, person.password).status_code == 200
    assert login(client, person.email, person.password).status_code == 401
    # The code was single use.
    again = client.post("/api/v1/me/email/confirm", json={"code": code}, headers=auth)
    assert again.status_code == 400


def test_phone_change_goes_by_sms(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    new_phone = "+8613700000001"
    started = client.post(
        "/api/v1/me/phone", json={"phone": "137 0000 0001", "current_password": person.password},
        headers=auth,
    )  # fmt: skip
    assert started.status_code == 202
    code = sms.last_code(new_phone)
    confirmed = client.post("/api/v1/me/phone/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 204
    assert client.get("/api/v1/me", headers=auth).json["phone"] == new_phone
    assert login(client, new_phone, person.password).status_code == 200


def test_an_address_of_another_account_is_not_taken_and_not_revealed(client, mailbox, sms, runtime):
    owner, _ = register(client, mailbox, sms)
    person, session = register(client, mailbox, sms, new_person("Grace Hopper"))
    auth = bearer(session["token"])
    answer = client.post(
        "/api/v1/me/email", json={"email": owner.email, "current_password": person.password},
        headers=auth,
    )  # fmt: skip
    # Same answer as for a free address; the owner is told, nobody gets a code.
    assert answer.status_code == 202
    notice = mailbox.wait_for(owner.email, count=2)
    assert "another" in notice["Subject"]
    runtime.dispatcher.drain()
    for message in mailbox.to(owner.email)[1:]:
        assert "code" not in message.get_payload(decode=True).decode().lower()
    for guess in ("123456", "654321"):
        refused = client.post("/api/v1/me/email/confirm", json={"code": guess}, headers=auth)
        assert refused.status_code == 400
    assert client.get("/api/v1/me", headers=auth).json["email"] == person.email


def test_the_same_address_is_refused_with_a_reason(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    answer = client.post(
        "/api/v1/me/email",
        json={"email": person.email.upper(), "current_password": person.password},
        headers=bearer(session["token"]),
    )
    assert answer.status_code == 422
    assert "already your email" in answer.json["detail"]


def test_a_change_is_on_record_as_a_rectification(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    client.post(
        "/api/v1/me/email",
        json={"email": "fixed-" + person.email, "current_password": person.password},
        headers=auth,
    )
    code = mailbox.last_code("fixed-" + person.email)
    assert (
        client.post("/api/v1/me/email/confirm", json={"code": code}, headers=auth).status_code
        == 204
    )
    requests = client.get("/api/v1/me/requests", headers=auth).json["requests"]
    assert [(r["kind"], r["status"], r["details"]) for r in requests] == [
        ("rectification", "completed", {"field": "email"})
    ]


def test_the_old_address_is_told_of_the_change(client, mailbox, sms):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    client.post(
        "/api/v1/me/phone",
        json={"phone": "+8613700000077", "current_password": person.password},
        headers=auth,
    )
    code = sms.last_code("+8613700000077")
    assert (
        client.post("/api/v1/me/phone/confirm", json={"code": code}, headers=auth).status_code
        == 204
    )
    notice = sms.wait_for(person.phone, count=2)
    assert "changed" in notice["text"] and "+8613700000077" not in notice["text"]
