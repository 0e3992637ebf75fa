"""Taking sign-in protections away at the same time from many requests:
withdrawing the consents they rest on, deleting the passkey, revoking the
device. Every removal path takes the account's lock first, so they queue:
no 500 (deadlock, stale row), each protection removed once, the owner told
once per protection, a second delete of the same passkey a 404.

SQLite takes its write lock at BEGIN, so there these requests queue and the
tests check the outcome only; on PostgreSQL (PRIVID_TEST_DATABASE_URL) they race."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.helpers import (
    ANDROID_CHROME,
    HIGH_LIMITS,
    baseline_consent,
    bearer,
    emails_to,
    passkey_options,
    race,
    register,
    register_passkey,
    row_count,
)
from tests.soft_authenticator import SoftAuthenticator

REMOVED_SUBJECT = "A sign-in protection was removed"
ROUNDS = 3


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def phone_with_passkey(client, mailbox, sms) -> tuple[Any, str, str, str]:
    """An account whose phone created a platform passkey, which bound the phone:
    (person, token, passkey id, device id)."""
    client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    consent = baseline_consent(security="granted", device_biometrics="granted")
    person, session = register(client, mailbox, sms, consent=consent)
    token = session["token"]
    options = passkey_options(client, token)
    created = register_passkey(
        client, token, SoftAuthenticator().create(options), options["challenge_id"]
    )
    assert created.status_code == 201, created.json
    [device] = client.get("/api/v1/me/devices", headers=bearer(token)).json["devices"]
    assert device["trust_state"] == "bound"
    return person, token, created.json["id"], device["id"]


def named_in(notices: list[Any]) -> Counter[str]:
    """How many of the owner's notices name each protection."""
    named: Counter[str] = Counter()
    for notice in notices:
        # "At <time>, passkeys and bound devices stopped protecting ..."
        removed = notice.get_payload(decode=True).decode().partition("stopped protecting")[0]
        named.update(p for p in ("passkeys", "bound devices") if p in removed)
    return named


def removals(token: str, passkey: str, device: str) -> Any:
    """Thread ``index`` takes away one protection, the four kinds in turn."""
    acts = [
        ("withdraw device_biometrics", "POST", "/api/v1/me/consent/device_biometrics/withdraw"),
        ("delete passkey", "DELETE", f"/api/v1/me/credentials/{passkey}"),
        ("revoke device", "DELETE", f"/api/v1/me/devices/{device}"),
        ("withdraw security", "POST", "/api/v1/me/consent/security/withdraw"),
    ]

    def attempt(index: int, own: Any) -> tuple[str, int]:
        own.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
        name, method, path = acts[index % len(acts)]
        return name, own.open(path, method=method, headers=bearer(token)).status_code

    return attempt


def test_removing_protections_at_once_queues_and_tells_the_owner_once_each(
    app, runtime, client, mailbox, sms
):
    # What each kind of request may answer: done, already gone (404, or 409
    # nothing to withdraw), or 401 once a device revocation ended the session.
    allowed = {
        "withdraw device_biometrics": {200, 409, 401},
        "delete passkey": {204, 404, 401},
        "revoke device": {200, 404, 401},
        "withdraw security": {200, 409, 401},
    }
    for _ in range(ROUNDS):
        mailbox.clear()
        person, token, passkey, device = phone_with_passkey(client, mailbox, sms)
        answers = race(app, 12, removals(token, passkey, device))
        for name, status in answers:
            assert status in allowed[name], answers
        done = Counter(name for name, status in answers if status in (200, 204))
        assert done["withdraw device_biometrics"] <= 1 and done["withdraw security"] <= 1
        assert done["delete passkey"] <= 1 and done["revoke device"] <= 1, answers
        # Whatever the order, the passkey and the binding are gone.
        assert row_count(app, "webauthn_credentials", "revoked_at IS NULL") == 0
        assert row_count(app, "devices", "trust_state = 'bound'") == 0
        # Each protection was removed once, so the owner hears of it once.
        notices = emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT)
        assert notices, answers
        assert set(named_in(notices).values()) == {1}, answers


def test_deleting_the_same_passkey_twice_at_once_deletes_it_once(
    app, runtime, client, mailbox, sms
):
    person, token, passkey, _ = phone_with_passkey(client, mailbox, sms)
    answers = race(
        app,
        8,
        lambda _, own: own.delete(f"/api/v1/me/credentials/{passkey}", headers=bearer(token)),
    )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {204: 1, 404: 7}, statuses
    assert len(emails_to(runtime, mailbox, person.email, REMOVED_SUBJECT)) == 1
