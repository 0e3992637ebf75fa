"""Passkeys as a real browser and a real attacker meet them: synced passkeys
prove no device, excludeCredentials names only usable passkeys, flagged ones
stay visible, a credential that cannot sign in is never stored, and one
credential answering two registration challenges gets one 201 and one 409."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import text

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
    passkey_sign_in,
    register,
    register_passkey,
    row_count,
)
from tests.soft_authenticator import (
    InvalidStateError,
    NotAllowedError,
    SoftAuthenticator,
    b64url,
)

DEVICES = "/api/v1/me/devices"
CREDENTIALS = "/api/v1/me/credentials"
NEW_SIGN_IN = "New sign-in to your privid account"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def signed_up_on_phone(client, mailbox, sms) -> tuple[Any, dict[str, Any]]:
    client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    consent = baseline_consent(security="granted", device_biometrics="granted")
    return register(client, mailbox, sms, consent=consent)


def enrol(client, token: str, authenticator: SoftAuthenticator) -> dict[str, Any]:
    options = passkey_options(client, token)
    created = register_passkey(
        client, token, authenticator.create(options), options["challenge_id"]
    )
    assert created.status_code == 201, created.json
    return dict(created.json)


def devices(client, token: str) -> list[dict[str, Any]]:
    listed = client.get(DEVICES, headers=bearer(token))
    assert listed.status_code == 200, listed.json
    return list(listed.json["devices"])


def credentials(client, token: str) -> list[dict[str, Any]]:
    listed = client.get(CREDENTIALS, headers=bearer(token))
    assert listed.status_code == 200, listed.json
    return list(listed.json["credentials"])


# -- item 7: a synced passkey proves no device ----------------------------------------


def test_a_synced_platform_passkey_neither_binds_nor_identifies_the_phone(
    app, runtime, client, mailbox, sms
):
    person, session = signed_up_on_phone(client, mailbox, sms)
    synced = SoftAuthenticator(backup_eligible=True, backed_up=True)
    created = enrol(client, session["token"], synced)
    assert created["kind"] == "synced passkey"
    [phone] = devices(client, session["token"])
    # It lives in a cloud account as much as on this phone: nothing is bound.
    assert (phone["binding_method"], phone["trust_state"]) == ("none", "recognised")
    plain = login(other_browser(app, WINDOWS_FIREFOX), person.email, person.password)
    assert plain.status_code == 200, plain.json
    notices_before = len(emails_to(runtime, mailbox, person.email, NEW_SIGN_IN))

    # The same passkey, synced to a laptop, signs in there: that is the laptop.
    laptop = other_browser(app, WINDOWS_FIREFOX)
    signed_in = passkey_sign_in(laptop, synced)[0]
    assert signed_in.status_code == 200, signed_in.json
    mine = devices(laptop, signed_in.json["token"])
    [current] = [d for d in mine if d["current"]]
    assert current["id"] != phone["id"]
    assert current["label"] == "Firefox on Windows"
    [phone_now] = [d for d in mine if d["id"] == phone["id"]]
    assert phone_now["last_seen_at"] == phone["last_seen_at"]
    assert len(emails_to(runtime, mailbox, person.email, NEW_SIGN_IN)) == notices_before + 1


def test_a_device_bound_platform_passkey_still_binds_and_identifies(
    app, runtime, client, mailbox, sms
):
    person, session = signed_up_on_phone(client, mailbox, sms)
    phone_key = SoftAuthenticator()
    enrol(client, session["token"], phone_key)
    [phone] = devices(client, session["token"])
    assert phone["trust_state"] == "bound"
    # A fresh browser on that phone (no cookie): the passkey says which device it is.
    again = passkey_sign_in(other_browser(app, ANDROID_CHROME), phone_key)[0]
    assert again.status_code == 200, again.json
    [current] = [d for d in devices(client, again.json["token"]) if d["current"]]
    assert current["id"] == phone["id"]
    assert emails_to(runtime, mailbox, person.email, NEW_SIGN_IN) == []


# -- item 9: excludeCredentials and flagged passkeys ----------------------------------


def flag_as_cloned(client, authenticator: SoftAuthenticator) -> None:
    assert passkey_sign_in(client, authenticator)[0].status_code == 200
    stored = authenticator.credentials[0]
    stored.sign_count -= 1  # a copy whose counter lags behind
    assert_problem(passkey_sign_in(client, authenticator)[0], 401, "passkey-possibly-cloned")


def test_excluded_are_only_active_passkeys(app, client, mailbox, sms):
    _, session = signed_up_on_phone(client, mailbox, sms)
    token = session["token"]
    removed_key, cloned_key, active_key = (
        SoftAuthenticator(),
        SoftAuthenticator(attachment="cross-platform"),
        SoftAuthenticator(attachment="cross-platform"),
    )
    removed = enrol(client, token, removed_key)
    enrol(client, token, cloned_key)
    enrol(client, token, active_key)
    assert client.delete(f"{CREDENTIALS}/{removed['id']}", headers=bearer(token)).status_code == 204
    flag_as_cloned(other_browser(app), cloned_key)

    options = passkey_options(client, token)
    excluded = {c["id"] for c in options["excludeCredentials"]}
    assert excluded == {b64url(active_key.credentials[0].credential_id)}
    # The browser holding the active one refuses, as Chromium does...
    with pytest.raises(InvalidStateError):
        active_key.create(options)
    # ...while the authenticators holding a removed or a flagged passkey make a new one.
    for authenticator in (removed_key, cloned_key):
        options = passkey_options(client, token)
        answer = authenticator.create(options)
        created = register_passkey(client, token, answer, options["challenge_id"])
        assert created.status_code == 201, created.json


def test_a_flagged_passkey_is_listed_with_its_state_and_can_be_removed(app, client, mailbox, sms):
    _, session = signed_up_on_phone(client, mailbox, sms)
    token = session["token"]
    authenticator = SoftAuthenticator()
    enrol(client, token, authenticator)
    assert [c["state"] for c in credentials(client, token)] == ["active"]
    flag_as_cloned(other_browser(app), authenticator)

    [flagged] = credentials(client, token)
    assert flagged["state"] == "possibly_cloned"
    assert flagged["flagged_cloned_at"] is not None
    removed = client.delete(f"{CREDENTIALS}/{flagged['id']}", headers=bearer(token))
    assert removed.status_code == 204
    assert credentials(client, token) == []


# -- item 10: only discoverable credentials, since sign-in is username-less -----------


def test_registration_asks_for_a_discoverable_credential_and_cred_props(client, mailbox, sms):
    _, session = signed_up_on_phone(client, mailbox, sms)
    options = passkey_options(client, session["token"])
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["requireResidentKey"] is True
    assert options["extensions"] == {"credProps": True}


def test_a_security_key_without_resident_keys_stores_nothing(app, client, mailbox, sms):
    _, session = signed_up_on_phone(client, mailbox, sms)
    no_storage = SoftAuthenticator(resident_keys=False, attachment="cross-platform")
    options = passkey_options(client, session["token"])
    with pytest.raises(NotAllowedError):
        answer = no_storage.create(options)
        # Had the browser let it through, the passkey could never sign in:
        register_passkey(client, session["token"], answer, options["challenge_id"])
        passkey_sign_in(other_browser(app), no_storage)[0]
    assert row_count(app, "webauthn_credentials") == 0


def test_a_credential_reported_non_discoverable_is_refused(app, client, mailbox, sms):
    _, session = signed_up_on_phone(client, mailbox, sms)
    token = session["token"]
    options = passkey_options(client, token)
    answer = SoftAuthenticator().create(options)
    # A browser or authenticator that ignored residentKey "required" says so in credProps.
    answer["clientExtensionResults"] = {"credProps": {"rk": False}}
    refused = register_passkey(client, token, answer, options["challenge_id"])
    problem = assert_problem(refused, 400, "passkey-not-discoverable")
    assert "sign in" in problem["detail"]
    assert row_count(app, "webauthn_credentials") == 0
    # The challenge is spent all the same.
    again = register_passkey(client, token, answer, options["challenge_id"])
    assert_problem(again, 400, "webauthn-challenge-invalid")


# -- item 8: one credential, two registration challenges -------------------------------


def test_one_credential_answering_two_challenges_is_a_conflict(app, client, mailbox, sms):
    _, session = signed_up_on_phone(client, mailbox, sms)
    token = session["token"]
    authenticator = SoftAuthenticator()
    first, second = passkey_options(client, token), passkey_options(client, token)
    answer = authenticator.create(first)
    created = register_passkey(client, token, answer, first["challenge_id"])
    assert created.status_code == 201, created.json
    replayed = authenticator.answer_again(answer, second)
    conflict = register_passkey(client, token, replayed, second["challenge_id"])
    assert_problem(conflict, 409, "passkey-already-registered")
    assert row_count(app, "webauthn_credentials") == 1


def test_one_credential_racing_two_challenges_gets_one_201_and_one_409(app, client, mailbox, sms):
    """Races on PostgreSQL (both requests pass the existence check, the unique
    index decides). SQLite serialises the writers at BEGIN IMMEDIATE, so there
    the second request simply sees the first one's row: same answer expected."""
    _, session = signed_up_on_phone(client, mailbox, sms)
    token = session["token"]
    authenticator = SoftAuthenticator()
    options = [passkey_options(client, token) for _ in range(2)]
    answer = authenticator.create(options[0])
    answers = [answer, authenticator.answer_again(answer, options[1])]
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    bodies: list[Any] = []

    def attempt(i: int) -> None:
        own = app.test_client()
        own.environ_base["wsgi.url_scheme"] = "https"
        barrier.wait()
        response = register_passkey(own, token, answers[i], options[i]["challenge_id"])
        statuses.append(response.status_code)
        bodies.append(response.get_json(silent=True))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409], bodies
    [conflict] = [b for b in bodies if b and b.get("status") == 409]
    assert conflict["type"].endswith("/passkey-already-registered")
    assert row_count(app, "webauthn_credentials") == 1


def run_migration(app, name: str) -> None:
    """One migration's upgrade() on the app's database, whatever it is chained to."""
    path = Path(__file__).resolve().parent.parent / "migrations" / "versions" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    engine = app.extensions["privid.engine"]
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        module.upgrade()


def test_bindings_made_by_synced_passkeys_before_are_undone(app, client, mailbox, sms):
    person, session = signed_up_on_phone(client, mailbox, sms)
    created = enrol(client, session["token"], SoftAuthenticator(backup_eligible=True))
    [phone] = devices(client, session["token"])
    # What the old code stored: the phone bound by the synced passkey.
    with app.extensions["privid.engine"].begin() as connection:
        connection.execute(
            text(
                "UPDATE devices SET binding_method = 'webauthn', trust_state = 'bound', "
                "credential_ref = :ref WHERE id = :id"
            ),
            {"ref": created["id"], "id": phone["id"]},
        )
    laptop = login(other_browser(app, WINDOWS_FIREFOX), person.email, person.password)
    assert laptop.status_code == 202, laptop.json

    run_migration(app, "0009_synced_passkeys_bind_nothing.py")
    [phone] = devices(client, session["token"])
    assert (phone["binding_method"], phone["trust_state"]) == ("none", "recognised")
    laptop = login(other_browser(app, WINDOWS_FIREFOX), person.email, person.password)
    assert laptop.status_code == 200, laptop.json
