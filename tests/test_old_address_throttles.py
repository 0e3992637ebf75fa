"""Failed sign-ins counted against an address stop being about the account once
the address leaves it: the count goes with the change, so it is neither kept
out of the account's export and cancellation nor handed to whoever registers
the address next."""

from __future__ import annotations

import pytest

from tests.helpers import HIGH_LIMITS, bearer, login, new_person, register, row_count

WRONG = "wrong-wrong-wrong"
CANCEL = {"confirm": "cancel my account"}


@pytest.fixture
def settings_overrides():
    return dict(HIGH_LIMITS)


def change_contact(client, mailbox, sms, auth, person, kind: str, value: str) -> None:
    body = {kind: value, "current_password": person.password}
    assert client.post(f"/api/v1/me/{kind}", json=body, headers=auth).status_code == 202
    code = mailbox.last_code(value) if kind == "email" else sms.last_code(value)
    confirmed = client.post(f"/api/v1/me/{kind}/confirm", json={"code": code}, headers=auth)
    assert confirmed.status_code == 204


def guess(client, identifier: str, times: int) -> None:
    """Someone tries passwords at ``identifier`` until it is held back."""
    for _ in range(times):
        assert login(client, identifier, WRONG).status_code in (401, 429)
    assert login(client, identifier, WRONG).status_code == 429


def test_the_next_owner_of_an_address_does_not_inherit_its_failed_sign_ins(client, mailbox, sms):
    first, session = register(client, mailbox, sms)
    guess(client, first.email, 10)
    change_contact(
        client, mailbox, sms, bearer(session["token"]), first, "email", "moved-" + first.email
    )

    # More guesses at it once it belongs to nobody.
    guess(client, first.email, 10)

    # Someone else registers the address the first account gave up.
    second = new_person("Grace Hopper")
    second.email = first.email
    assert mailbox.to(first.email)  # the old address was told of the change
    mailbox.clear()
    _, fresh = register(client, mailbox, sms, second)
    exported = client.post("/api/v1/me/export", headers=bearer(fresh["token"]))
    assert exported.status_code == 200
    # Failures typed at the address before it was theirs are not about them...
    assert exported.json["sign_in_throttles"] == []
    # ...and do not hold them back.
    assert login(client, second.email, second.password).status_code == 200


@pytest.mark.parametrize("kind", ["email", "phone"])
def test_cancelling_after_a_change_leaves_no_failed_sign_in_behind(app, client, mailbox, sms, kind):
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    old = person.email if kind == "email" else person.phone
    for _ in range(3):
        assert login(client, old, WRONG).status_code == 401
    new = "moved-" + person.email if kind == "email" else "+8613700000001"
    change_contact(client, mailbox, sms, auth, person, kind, new)
    for _ in range(2):
        assert login(client, new, WRONG).status_code == 401

    # What the account's export shows is all the service keeps about it...
    shown = client.post("/api/v1/me/export", headers=auth).json["sign_in_throttles"]
    assert shown and sum(row["failures"] for row in shown if row["counter"] == "id") == 2

    # ...and cancellation leaves none of it, old address included.
    assert client.post("/api/v1/me/cancellation", json=CANCEL, headers=auth).status_code == 200
    assert row_count(app, "login_throttles") == 0
