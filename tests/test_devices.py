"""Devices: records only with the security purpose, new-device notices, renaming
and revoking, binding an app key (DPoP) or a platform passkey, the email step-up
for sign-ins from unbound devices, withdrawal, export, retention, and the
per-account throttle on failed passkey sign-ins."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from app.clock import FrozenClock
from app.security.tokens import hash_token
from tests.dpop_client import DpopKey
from tests.helpers import (
    ANDROID_CHROME,
    APP_UA,
    BIND,
    CHALLENGE,
    HIGH_LIMITS,
    IPHONE_SAFARI,
    PASSKEY_AUTH_OPTIONS,
    PASSKEY_AUTH_VERIFY,
    PASSKEY_REG_OPTIONS,
    WINDOWS_FIREFOX,
    ask_challenge,
    assert_problem,
    baseline_consent,
    bearer,
    bind,
    enable_totp,
    enrol,
    login,
    passkey_sign_in,
    register,
)
from tests.soft_authenticator import SoftAuthenticator, b64url, from_b64url

ME = "/api/v1/me"
DEVICES = "/api/v1/me/devices"
LOGIN = "/api/v1/login/password"
SECOND_FACTOR = "/api/v1/login/second-factor"
SECOND_FACTOR_EMAIL = "/api/v1/login/second-factor/email"
PASSKEY_REG_VERIFY = "/api/v1/webauthn/registration/verify"
DEVICE_COOKIE = "__Host-privid_device"
NEW_SIGN_IN = "New sign-in to your privid account"
CODE_SUBJECT = "Your privid code: "
SINGLE = "urn:privid:acr:single-factor"
MULTI = "urn:privid:acr:multi-factor"
PHISHING_RESISTANT = "urn:privid:acr:phishing-resistant"


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Many sign-ins from one address: the per-IP limits are not under test here.
    return dict(HIGH_LIMITS)


# -- helpers -----------------------------------------------------------------------


def new_client(app, user_agent: str | None = None):
    """Another browser or phone: its own (empty) cookie jar."""
    other = app.test_client()
    other.environ_base["wsgi.url_scheme"] = "https"
    if user_agent:
        other.environ_base["HTTP_USER_AGENT"] = user_agent
    return other


def with_security(**extra: str) -> dict[str, Any]:
    return baseline_consent(security="granted", **extra)


def sign_up(client, mailbox, sms, user_agent: str = ANDROID_CHROME, **consent: str):
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return register(client, mailbox, sms, consent=with_security(**consent))


def query(app, sql: str, **params: Any) -> list[Any]:
    with app.extensions["privid.engine"].connect() as connection:
        return list(connection.execute(text(sql), params))


def count(app, table: str, where: str = "1=1", **params: Any) -> int:
    return int(query(app, f"SELECT COUNT(*) FROM {table} WHERE {where}", **params)[0][0])


def device_row(app, device_id: str) -> Any:
    [row] = query(app, "SELECT * FROM devices WHERE id = :id", id=device_id)
    return row


def stored_jwk(row: Any) -> Any:
    """The public_jwk column decoded (text on SQLite, already decoded on PostgreSQL)."""
    value = row.public_jwk
    return json.loads(value) if isinstance(value, str) else value


def moment(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mails(runtime, mailbox, address: str, subject_prefix: str) -> list[Any]:
    runtime.dispatcher.drain()
    return [m for m in mailbox.to(address) if str(m["Subject"]).startswith(subject_prefix)]


def notices(runtime, mailbox, address: str) -> int:
    return len(mails(runtime, mailbox, address, NEW_SIGN_IN))


def email_code(runtime, mailbox, address: str) -> str:
    sent = mails(runtime, mailbox, address, CODE_SUBJECT)
    assert sent, "no code was emailed"
    return str(sent[-1]["Subject"]).removeprefix(CODE_SUBJECT)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def set_cookies(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def dpop_auth(key: DpopKey, token: str, clock, method: str, path: str, **kw: Any):
    """A key-bound token's headers: the DPoP scheme and a fresh proof."""
    proof = key.proof(method, path, token=token, iat=clock.now().timestamp(), **kw)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def listed(client, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(DEVICES, headers=headers)
    assert response.status_code == 200, response.json
    return list(response.json["devices"])


def listed_dpop(client, key: DpopKey, token: str, clock) -> list[dict[str, Any]]:
    return listed(client, dpop_auth(key, token, clock, "GET", DEVICES))


def bound_account(client, mailbox, sms, clock):
    """A user whose phone app bound its key; the registration session is now key-bound."""
    person, session = sign_up(client, mailbox, sms, user_agent=APP_UA)
    token, key = session["token"], DpopKey()
    response = bind(client, token, key, clock, ask_challenge(client, bearer(token)))
    assert response.status_code == 201, response.json
    return person, token, key


def device_state(app) -> list[tuple[Any, ...]]:
    """What a refused binding must leave alone."""
    devices = query(
        app,
        "SELECT id, label, platform, binding_method, trust_state, cookie_hash, key_thumbprint "
        "FROM devices ORDER BY id",
    )
    keys = query(app, "SELECT id, dpop_jkt FROM sessions ORDER BY id")
    return [tuple(r) for r in devices] + [tuple(r) for r in keys]


def tampered(answer: dict[str, Any]) -> dict[str, Any]:
    signature = bytearray(from_b64url(answer["response"]["signature"]))
    signature[-1] ^= 0x01
    return {**answer, "response": {**answer["response"], "signature": b64url(bytes(signature))}}


def passkey_attempt(client, authenticator: SoftAuthenticator, *, tamper: bool = False):
    options = client.post(PASSKEY_AUTH_OPTIONS)
    assert options.status_code == 200, options.json
    answer = authenticator.get(options.json)
    if tamper:
        answer = tampered(answer)
    body = {**answer, "challenge_id": options.json["challenge_id"], "token_delivery": "bearer"}
    return client.post(PASSKEY_AUTH_VERIFY, json=body)


def enrol_roaming(client, token: str, authenticator: SoftAuthenticator) -> dict[str, Any]:
    """A security key: its credential says cross-platform, so it binds no device."""
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(token))
    assert options.status_code == 200, options.json
    answer = authenticator.create(options.json)
    body = {
        **answer,
        "authenticatorAttachment": "cross-platform",
        "challenge_id": options.json["challenge_id"],
    }
    response = client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(token))
    assert response.status_code == 201, response.json
    return dict(response.json)


# -- 1. records only with the security purpose -------------------------------------


def test_without_security_no_device_is_recorded_and_no_cookie_set(
    app, runtime, client, mailbox, sms
):
    client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    person, session = register(client, mailbox, sms)  # security refused
    assert client.get_cookie(DEVICE_COOKIE) is None
    assert listed(client, bearer(session["token"])) == []

    phone = new_client(app, IPHONE_SAFARI)
    signed_in = login(phone, person.email, person.password)
    assert signed_in.status_code == 200, signed_in.json
    assert not any(c.startswith(f"{DEVICE_COOKIE}=") for c in set_cookies(signed_in))
    assert phone.get_cookie(DEVICE_COOKIE) is None
    assert listed(phone, bearer(signed_in.json["token"])) == []
    assert count(app, "devices") == 0
    assert count(app, "sessions", "device_id IS NOT NULL") == 0
    assert count(app, "audit_events", "event_type = 'device.first_seen'") == 0
    assert notices(runtime, mailbox, person.email) == 0


def test_with_security_the_device_is_recorded_with_a_secure_cookie(
    app, client, mailbox, sms, clock
):
    _, session = sign_up(client, mailbox, sms, user_agent=ANDROID_CHROME)
    cookie = client.get_cookie(DEVICE_COOKIE)
    assert cookie is not None
    assert cookie.secure and cookie.http_only and cookie.path == "/"
    [device] = listed(client, bearer(session["token"]))
    assert device["current"] is True
    assert device["label"] == "Chrome on Android"
    assert device["platform"] == "Android"
    assert (device["binding_method"], device["trust_state"]) == ("none", "recognised")
    assert moment(device["first_seen_at"]) == moment(device["last_seen_at"]) == clock.now()
    assert device["revoked_at"] is None
    row = device_row(app, device["id"])
    # Only a hash of the cookie is kept; the session is tied to the device.
    assert row.cookie_hash == hash_token(cookie.value) != cookie.value
    [session_row] = query(
        app, "SELECT device_id FROM sessions WHERE id = :id", id=session["session_id"]
    )
    assert session_row.device_id == device["id"]


def test_a_sign_in_sets_the_device_cookie_with_its_attributes(app, client, mailbox, sms):
    person, _ = sign_up(client, mailbox, sms)
    laptop = new_client(app, WINDOWS_FIREFOX)
    signed_in = login(laptop, person.email, person.password, delivery="cookie")
    assert signed_in.status_code == 200, signed_in.json
    [header] = [c for c in set_cookies(signed_in) if c.startswith(f"{DEVICE_COOKIE}=")]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes
    assert "domain" not in attributes
    assert "Path=/" in header


# -- 2. new-device notice ----------------------------------------------------------


def test_only_a_new_device_is_announced(app, runtime, client, mailbox, sms, clock):
    person, _ = sign_up(client, mailbox, sms, user_agent=ANDROID_CHROME)
    registered_at = clock.now()
    assert notices(runtime, mailbox, person.email) == 0

    clock.advance(minutes=5)
    again = login(client, person.email, person.password)
    assert again.status_code == 200, again.json
    assert not any(c.startswith(f"{DEVICE_COOKIE}=") for c in set_cookies(again))
    [device] = listed(client, bearer(again.json["token"]))
    assert device["current"] is True
    assert moment(device["first_seen_at"]) == registered_at
    assert moment(device["last_seen_at"]) == clock.now()
    assert notices(runtime, mailbox, person.email) == 0

    phone = new_client(app, IPHONE_SAFARI)
    elsewhere = login(phone, person.email, person.password)
    assert elsewhere.status_code == 200, elsewhere.json
    assert phone.get_cookie(DEVICE_COOKIE) is not None
    [notice] = mails(runtime, mailbox, person.email, NEW_SIGN_IN)
    assert "Safari on iOS" in notice.get_payload(decode=True).decode()
    devices = listed(phone, bearer(elsewhere.json["token"]))
    assert len(devices) == 2
    [current] = [d for d in devices if d["current"]]
    assert (current["label"], current["platform"]) == ("Safari on iOS", "iOS")
    assert device["id"] in {d["id"] for d in devices if not d["current"]}


# -- 3. rename and revoke ----------------------------------------------------------


def test_rename_a_device(app, client, mailbox, sms):
    _, session = sign_up(client, mailbox, sms)
    auth = bearer(session["token"])
    [device] = listed(client, auth)
    rename = f"{DEVICES}/{device['id']}/rename"
    renamed = client.post(rename, json={"label": "  Work phone "}, headers=auth)
    assert renamed.status_code == 200, renamed.json
    assert renamed.json["label"] == "Work phone" and renamed.json["current"] is True
    assert listed(client, auth)[0]["label"] == "Work phone"
    blank = client.post(f"{DEVICES}/{device['id']}/rename", json={"label": "   "}, headers=auth)
    assert_problem(blank, 422, "validation-error")
    assert device_row(app, device["id"]).label == "Work phone"


def test_revoking_a_device_ends_exactly_its_sessions(app, runtime, client, mailbox, sms):
    person, session = sign_up(client, mailbox, sms, user_agent=ANDROID_CHROME)
    auth = bearer(session["token"])
    phone = new_client(app, IPHONE_SAFARI)
    tokens = []
    for _ in range(2):
        signed_in = login(phone, person.email, person.password)
        assert signed_in.status_code == 200, signed_in.json
        tokens.append(signed_in.json["token"])
    [mine] = [d for d in listed(client, auth) if d["current"]]
    [theirs] = [d for d in listed(client, auth) if not d["current"]]
    assert device_row(app, theirs["id"]).cookie_hash is not None

    revoked = client.delete(f"{DEVICES}/{theirs['id']}", headers=auth)
    assert revoked.status_code == 200, revoked.json
    assert revoked.json == {"sessions_ended": 2}
    for token in tokens:
        assert client.get(ME, headers=bearer(token)).status_code == 401
    assert client.get(ME, headers=bearer(session["token"])).status_code == 200

    shown = {d["id"]: d for d in listed(client, auth)}
    assert shown[theirs["id"]]["trust_state"] == "revoked"
    assert shown[theirs["id"]]["revoked_at"] is not None
    assert shown[theirs["id"]]["label"] == "Safari on iOS"
    assert shown[mine["id"]]["trust_state"] == "recognised"
    row = device_row(app, theirs["id"])
    assert row.cookie_hash is None and row.key_thumbprint is None
    assert stored_jwk(row) is None and row.credential_ref is None
    assert device_row(app, mine["id"]).cookie_hash is not None
    assert count(app, "audit_events", "event_type = 'device.revoked'") == 1
    # Gone for managing: no second revocation, no renaming.
    assert_problem(client.delete(f"{DEVICES}/{theirs['id']}", headers=auth), 404, "not-found")
    renamed = client.post(f"{DEVICES}/{theirs['id']}/rename", json={"label": "x"}, headers=auth)
    assert_problem(renamed, 404, "not-found")

    # The revoked browser's old cookie means nothing now: it is a new device.
    before = notices(runtime, mailbox, person.email)
    back = login(phone, person.email, person.password)
    assert back.status_code == 200, back.json
    assert notices(runtime, mailbox, person.email) == before + 1
    devices = listed(phone, bearer(back.json["token"]))
    assert len(devices) == 3
    [current] = [d for d in devices if d["current"]]
    assert current["id"] not in {mine["id"], theirs["id"]}
    assert current["trust_state"] == "recognised"


def test_revoking_needs_a_recent_sign_in(app, client, mailbox, sms, clock):
    person, session = sign_up(client, mailbox, sms)
    auth = bearer(session["token"])
    [device] = listed(client, auth)
    clock.advance(minutes=16)
    stale = client.delete(f"{DEVICES}/{device['id']}", headers=auth)
    assert_problem(stale, 401, "insufficient-user-authentication")
    challenge = stale.headers.get("WWW-Authenticate", "")
    assert 'error="insufficient_user_authentication"' in challenge
    assert f'acr_values="{SINGLE}"' in challenge and "max_age=900" in challenge
    assert device_row(app, device["id"]).trust_state == "recognised"
    assert client.get(ME, headers=auth).status_code == 200

    fresh = login(client, person.email, person.password)
    assert fresh.status_code == 200, fresh.json
    revoked = client.delete(f"{DEVICES}/{device['id']}", headers=bearer(fresh.json["token"]))
    assert revoked.status_code == 200, revoked.json
    # Both sessions were opened on this browser.
    assert revoked.json == {"sessions_ended": 2}


def test_someone_elses_device_is_not_found(app, client, mailbox, sms):
    _, alice = sign_up(client, mailbox, sms)
    [device] = listed(client, bearer(alice["token"]))
    _, bob = sign_up(new_client(app), mailbox, sms, user_agent=IPHONE_SAFARI)
    as_bob = bearer(bob["token"])
    assert_problem(client.delete(f"{DEVICES}/{device['id']}", headers=as_bob), 404, "not-found")
    renamed = client.post(
        f"{DEVICES}/{device['id']}/rename", json={"label": "Mine"}, headers=as_bob
    )
    assert_problem(renamed, 404, "not-found")
    unknown = "00000000-0000-0000-0000-000000000000"
    assert_problem(client.delete(f"{DEVICES}/{unknown}", headers=as_bob), 404, "not-found")
    row = device_row(app, device["id"])
    assert (row.label, row.trust_state) == ("Chrome on Android", "recognised")
    assert client.get(ME, headers=bearer(alice["token"])).status_code == 200
    assert device["id"] not in {d["id"] for d in listed(client, as_bob)}


# -- 4. binding an app key ---------------------------------------------------------


def test_binding_an_app_key(app, client, mailbox, sms, clock):
    _, session = sign_up(client, mailbox, sms, user_agent=APP_UA)
    token, key = session["token"], DpopKey()
    [before] = listed(client, bearer(token))
    challenge = ask_challenge(client, bearer(token))
    assert set(challenge) == {"challenge_id", "nonce", "expires_in"}
    assert challenge["expires_in"] == 300

    bound = bind(client, token, key, clock, challenge, label="Li Wei's phone", platform="android")
    assert bound.status_code == 201, bound.json
    assert bound.json["token_type"] == "DPoP"
    assert bound.json["session_id"] == session["session_id"]
    assert bound.json["token"] == token

    # The token is useless without the key now.
    plain = client.get(ME, headers=bearer(token))
    assert_problem(plain, 401)
    assert plain.headers["WWW-Authenticate"].startswith("DPoP ")
    assert_problem(client.get(ME, headers={"Authorization": f"DPoP {token}"}), 401)
    stolen = dpop_auth(DpopKey(), token, clock, "GET", ME)
    assert_problem(client.get(ME, headers=stolen), 401, "invalid-dpop-proof")
    assert client.get(ME, headers=dpop_auth(key, token, clock, "GET", ME)).status_code == 200

    [device] = listed_dpop(client, key, token, clock)
    assert device["id"] == before["id"]  # the session's own device became the bound one
    assert (device["binding_method"], device["trust_state"]) == ("app_key", "bound")
    assert (device["label"], device["platform"]) == ("Li Wei's phone", "android")
    assert device["current"] is True
    row = device_row(app, device["id"])
    assert row.key_thumbprint == key.thumbprint
    assert stored_jwk(row) == key.key.as_dict(private=False)  # the public half only
    assert row.cookie_hash is None  # the key identifies it from now on
    [session_row] = query(
        app, "SELECT dpop_jkt FROM sessions WHERE id = :id", id=session["session_id"]
    )
    assert session_row.dpop_jkt == key.thumbprint
    assert count(app, "audit_events", "event_type = 'device.bound'") == 1


def test_a_binding_challenge_is_single_use(app, client, mailbox, sms, clock):
    _, session = sign_up(client, mailbox, sms, user_agent=APP_UA)
    token, key = session["token"], DpopKey()
    challenge = ask_challenge(client, bearer(token))
    assert bind(client, token, key, clock, challenge).status_code == 201
    state = device_state(app)
    again = bind(client, token, key, clock, challenge, scheme="DPoP")
    assert_problem(again, 400, "binding-challenge-invalid")
    assert device_state(app) == state


def test_a_proof_without_the_challenge_as_nonce_spends_it_and_binds_nothing(
    app, client, mailbox, sms, clock
):
    _, session = sign_up(client, mailbox, sms, user_agent=APP_UA)
    token, key = session["token"], DpopKey()
    state = device_state(app)
    challenge = ask_challenge(client, bearer(token))
    wrong = bind(client, token, key, clock, challenge, nonce=b64url(b"not the challenge"))
    assert_problem(wrong, 400, "invalid-dpop-proof")
    assert device_state(app) == state
    assert client.get(ME, headers=bearer(token)).status_code == 200
    # The challenge was spent by the refused attempt.
    retry = bind(client, token, key, clock, challenge)
    assert_problem(retry, 400, "binding-challenge-invalid")
    assert device_state(app) == state


@pytest.mark.parametrize("flaw", ["no-proof", "ath-of-another-token", "other-url"])
def test_a_binding_without_a_proper_proof_binds_nothing(app, client, mailbox, sms, clock, flaw):
    _, session = sign_up(client, mailbox, sms, user_agent=APP_UA)
    token, key = session["token"], DpopKey()
    challenge = ask_challenge(client, bearer(token))
    state = device_state(app)
    body = {"challenge_id": challenge["challenge_id"], "label": "Phone", "platform": "ios"}
    headers = bearer(token)
    if flaw != "no-proof":
        path = CHALLENGE if flaw == "other-url" else BIND
        proof_token = "another-token" if flaw == "ath-of-another-token" else token
        iat = clock.now().timestamp()
        headers["DPoP"] = key.proof(
            "POST", path, token=proof_token, nonce=challenge["nonce"], iat=iat
        )
    assert_problem(client.post(BIND, json=body, headers=headers), 400, "invalid-dpop-proof")
    assert device_state(app) == state
    # Nothing spent: the challenge still binds with a proper proof.
    assert bind(client, token, key, clock, challenge).status_code == 201


def test_an_expired_binding_challenge_is_refused(app, client, mailbox, sms, clock):
    _, session = sign_up(client, mailbox, sms, user_agent=APP_UA)
    token, key = session["token"], DpopKey()
    challenge = ask_challenge(client, bearer(token))
    clock.advance(seconds=301)
    state = device_state(app)
    late = bind(client, token, key, clock, challenge)
    assert_problem(late, 400, "binding-challenge-invalid")
    assert device_state(app) == state
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_a_challenge_belongs_to_its_session(app, client, mailbox, sms, clock):
    person, session = sign_up(client, mailbox, sms, user_agent=APP_UA)
    second = login(client, person.email, person.password)
    assert second.status_code == 200, second.json
    _, stranger = sign_up(new_client(app), mailbox, sms)
    key = DpopKey()
    challenge = ask_challenge(client, bearer(session["token"]))
    state = device_state(app)
    for token in (second.json["token"], stranger["token"]):
        other = bind(client, token, key, clock, challenge)
        assert_problem(other, 400, "binding-challenge-invalid")
        assert device_state(app) == state
    # Not spent by the others: its own session still binds with it.
    assert bind(client, session["token"], key, clock, challenge).status_code == 201


def test_binding_needs_the_security_purpose(app, client, mailbox, sms, clock):
    client.environ_base["HTTP_USER_AGENT"] = APP_UA
    _, session = register(client, mailbox, sms)  # security refused
    token = session["token"]
    refused = client.post(CHALLENGE, headers=bearer(token))
    assert_problem(refused, 403, "purpose-not-granted")
    made_up = {"challenge_id": "00000000-0000-0000-0000-000000000000", "nonce": "AAAA"}
    assert_problem(bind(client, token, DpopKey(), clock, made_up), 403, "purpose-not-granted")
    assert count(app, "devices") == 0
    assert count(app, "webauthn_challenges") == 0
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_a_cookie_session_cannot_bind_an_app_key(app, client, mailbox, sms, clock):
    client.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    _, session = register(client, mailbox, sms, token_delivery="cookie", consent=with_security())
    csrf = {"X-CSRF-Token": session["csrf_token"]}
    state = device_state(app)
    assert_problem(client.post(CHALLENGE, headers=csrf), 409, "app-key-needs-bearer")
    body = {"challenge_id": "00000000-0000-0000-0000-000000000000", "label": "x", "platform": "ios"}
    proof = DpopKey().proof("POST", BIND, iat=clock.now().timestamp(), nonce="AAAA")
    refused = client.post(BIND, json=body, headers={**csrf, "DPoP": proof})
    assert_problem(refused, 409, "app-key-needs-bearer")
    assert device_state(app) == state
    assert count(app, "webauthn_challenges") == 0


def test_the_same_key_cannot_be_bound_twice(app, client, mailbox, sms, clock):
    _, token, key = bound_account(client, mailbox, sms, clock)
    state = device_state(app)
    challenge = ask_challenge(client, dpop_auth(key, token, clock, "POST", CHALLENGE))
    again = bind(client, token, key, clock, challenge, scheme="DPoP", label="Second try")
    assert_problem(again, 409, "device-already-bound")
    assert device_state(app) == state
    [device] = listed_dpop(client, key, token, clock)
    assert (device["label"], device["trust_state"]) == ("Li Wei's phone", "bound")
    assert count(app, "audit_events", "event_type = 'device.bound'") == 1


def test_revoking_a_bound_app_erases_its_key_and_ends_its_session(app, client, mailbox, sms, clock):
    person, token, key = bound_account(client, mailbox, sms, clock)
    [device] = listed_dpop(client, key, token, clock)
    path = f"{DEVICES}/{device['id']}"
    revoked = client.delete(path, headers=dpop_auth(key, token, clock, "DELETE", path))
    assert revoked.status_code == 200, revoked.json
    assert revoked.json == {"sessions_ended": 1}
    assert client.get(ME, headers=dpop_auth(key, token, clock, "GET", ME)).status_code == 401
    row = device_row(app, device["id"])
    assert row.trust_state == "revoked" and row.revoked_at is not None
    assert row.key_thumbprint is None and stored_jwk(row) is None
    assert row.cookie_hash is None and row.credential_ref is None
    # Nothing bound is left: a plain password sign-in elsewhere is single-factor again.
    other = login(new_client(app, IPHONE_SAFARI), person.email, person.password)
    assert other.status_code == 200, other.json
    assert other.json["acr"] == SINGLE


# -- 5. step-up for unbound devices -------------------------------------------------


def test_a_password_sign_in_from_an_unbound_device_needs_an_email_code(
    app, runtime, client, mailbox, sms, clock
):
    person, _, _ = bound_account(client, mailbox, sms, clock)
    laptop = new_client(app, WINDOWS_FIREFOX)
    sessions_before, devices_before = count(app, "sessions"), count(app, "devices")
    first = login(laptop, person.email, person.password)
    assert first.status_code == 202, first.json
    assert first.json["status"] == "second_factor_required"
    assert first.json["methods"] == ["email_code"]
    assert "token" not in first.json
    ticket = first.json["ticket"]
    assert laptop.get_cookie(DEVICE_COOKIE) is None
    assert (count(app, "sessions"), count(app, "devices")) == (sessions_before, devices_before)

    sent = laptop.post(SECOND_FACTOR_EMAIL, json={"ticket": ticket})
    assert sent.status_code == 202, sent.json
    code = email_code(runtime, mailbox, person.email)

    totp = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "totp_code": "123456"})
    assert_problem(totp, 400, "invalid-code")
    wrong = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "email_code": other_code(code)})
    assert_problem(wrong, 400, "invalid-code")
    assert count(app, "sessions") == sessions_before
    assert count(app, "audit_events", "event_type = 'login.failed'") == 2

    done = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "email_code": code})
    assert done.status_code == 200, done.json
    # A confirmed mailbox is not a second factor (it can reset the password too).
    assert done.json["acr"] == SINGLE
    assert done.json["amr"] == ["pwd", "mca"]
    assert done.json["token_type"] == "Bearer"
    assert laptop.get(ME, headers=bearer(done.json["token"])).status_code == 200
    # The laptop is now a recognised (not bound) device, and the user was told.
    [current] = [d for d in listed(laptop, bearer(done.json["token"])) if d["current"]]
    assert (current["label"], current["trust_state"]) == ("Firefox on Windows", "recognised")
    assert notices(runtime, mailbox, person.email) == 1
    # The ticket (and the code) were used up.
    replay = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "email_code": code})
    assert_problem(replay, 401, "mfa-ticket-invalid")


def test_the_bound_key_signs_in_without_a_second_factor(app, runtime, client, mailbox, sms, clock):
    person, _, key = bound_account(client, mailbox, sms, clock)
    reinstalled = new_client(app, APP_UA)  # no cookie: only the key says who it is
    body = {"identifier": person.email, "password": person.password, "token_delivery": "bearer"}
    proof = {"DPoP": key.proof("POST", LOGIN, iat=clock.now().timestamp())}
    signed_in = reinstalled.post(LOGIN, json=body, headers=proof)
    assert signed_in.status_code == 200, signed_in.json
    assert signed_in.json["token_type"] == "DPoP"
    assert signed_in.json["acr"] == SINGLE
    token = signed_in.json["token"]
    [device] = listed_dpop(reinstalled, key, token, clock)
    assert device["current"] is True and device["trust_state"] == "bound"
    assert notices(runtime, mailbox, person.email) == 0

    # Another key is another (unbound) device, and must finish with the same key.
    other_key, other_app = DpopKey(), new_client(app, APP_UA)
    stranger = {"DPoP": other_key.proof("POST", LOGIN, iat=clock.now().timestamp())}
    stepped = other_app.post(LOGIN, json=body, headers=stranger)
    assert stepped.status_code == 202, stepped.json
    assert stepped.json["methods"] == ["email_code"]
    ticket = stepped.json["ticket"]
    assert other_app.post(SECOND_FACTOR_EMAIL, json={"ticket": ticket}).status_code == 202
    finish = {"ticket": ticket, "email_code": email_code(runtime, mailbox, person.email)}
    keyless = other_app.post(SECOND_FACTOR, json=finish)
    assert_problem(keyless, 401, "mfa-ticket-invalid")
    proof = {"DPoP": other_key.proof("POST", SECOND_FACTOR, iat=clock.now().timestamp())}
    done = other_app.post(SECOND_FACTOR, json=finish, headers=proof)
    assert done.status_code == 200, done.json
    assert (done.json["acr"], done.json["token_type"]) == (SINGLE, "DPoP")


def test_recognised_devices_alone_do_not_step_up(app, client, mailbox, sms):
    person, _ = sign_up(client, mailbox, sms)
    signed_in = login(new_client(app, IPHONE_SAFARI), person.email, person.password)
    assert signed_in.status_code == 200, signed_in.json
    assert signed_in.json["acr"] == SINGLE
    assert count(app, "devices", "trust_state = 'recognised'") == 2


def test_an_sms_sign_in_from_an_unbound_device_is_stepped_up(
    app, runtime, client, mailbox, sms, clock
):
    person, _, _ = bound_account(client, mailbox, sms, clock)
    laptop = new_client(app, WINDOWS_FIREFOX)
    sessions_before = count(app, "sessions")
    started = laptop.post("/api/v1/login/sms/code", json={"phone": person.phone})
    assert started.status_code == 202
    code = sms.last_code(person.phone, count=2)
    body = {"phone": person.phone, "flow": started.json["flow"], "code": code,
            "token_delivery": "bearer"}  # fmt: skip
    first = laptop.post("/api/v1/login/sms", json=body)
    assert first.status_code == 202, first.json
    assert first.json["methods"] == ["email_code"]
    assert count(app, "sessions") == sessions_before
    ticket = first.json["ticket"]
    assert laptop.post(SECOND_FACTOR_EMAIL, json={"ticket": ticket}).status_code == 202
    emailed = email_code(runtime, mailbox, person.email)
    done = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "email_code": emailed})
    assert done.status_code == 200, done.json
    assert (done.json["acr"], done.json["amr"]) == (SINGLE, ["sms", "mca"])


def test_a_totp_account_is_asked_for_totp_not_an_email_code(
    app, runtime, client, mailbox, sms, clock
):
    person, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    enrol(client, session["token"], SoftAuthenticator())  # binds this phone
    assert count(app, "devices", "trust_state = 'bound'") == 1
    laptop = new_client(app, WINDOWS_FIREFOX)
    # Before TOTP, an email code is what the laptop would need; one is sent and kept.
    early = login(laptop, person.email, person.password)
    assert early.json["methods"] == ["email_code"]
    assert (
        laptop.post(SECOND_FACTOR_EMAIL, json={"ticket": early.json["ticket"]}).status_code == 202
    )
    unused_email_code = email_code(runtime, mailbox, person.email)
    totp, _ = enable_totp(client, session, at=clock.now())
    clock.advance(seconds=30)

    sessions_before = count(app, "sessions")
    codes_before = len(mails(runtime, mailbox, person.email, CODE_SUBJECT))
    first = login(laptop, person.email, person.password)
    assert first.status_code == 202, first.json
    assert first.json["methods"] == ["totp", "recovery_code"]
    ticket = first.json["ticket"]
    refused = laptop.post(SECOND_FACTOR_EMAIL, json={"ticket": ticket})
    assert_problem(refused, 422, "validation-error")
    assert len(mails(runtime, mailbox, person.email, CODE_SUBJECT)) == codes_before
    by_email = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "email_code": unused_email_code})
    assert_problem(by_email, 400, "invalid-code")
    assert count(app, "sessions") == sessions_before
    done = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "totp_code": totp.at(clock.now())})
    assert done.status_code == 200, done.json
    assert done.json["acr"] == MULTI and done.json["amr"] == ["pwd", "otp", "mfa"]


# -- 6. passkeys bind the device they live on ---------------------------------------


def test_a_platform_passkey_binds_the_device_until_it_is_removed(app, client, mailbox, sms):
    person, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    auth = bearer(session["token"])
    [before] = listed(client, auth)
    assert before["trust_state"] == "recognised"
    created = enrol(client, session["token"], SoftAuthenticator())
    [device] = listed(client, auth)
    assert device["id"] == before["id"]
    assert (device["binding_method"], device["trust_state"]) == ("webauthn", "bound")
    assert device_row(app, device["id"]).credential_ref == created["id"]
    stepped = login(new_client(app, IPHONE_SAFARI), person.email, person.password)
    assert stepped.status_code == 202, stepped.json

    removed = client.delete(f"/api/v1/me/credentials/{created['id']}", headers=auth)
    assert removed.status_code == 204
    [device] = listed(client, auth)
    assert (device["binding_method"], device["trust_state"]) == ("none", "recognised")
    row = device_row(app, device["id"])
    assert row.credential_ref is None and row.cookie_hash is not None
    again = login(new_client(app, IPHONE_SAFARI), person.email, person.password)
    assert again.status_code == 200, again.json


def test_withdrawing_device_biometrics_unbinds_the_device(app, client, mailbox, sms):
    _, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    auth = bearer(session["token"])
    enrol(client, session["token"], SoftAuthenticator())
    assert listed(client, auth)[0]["trust_state"] == "bound"
    withdrawn = client.post("/api/v1/me/consent/device_biometrics/withdraw", headers=auth)
    assert withdrawn.status_code == 200, withdrawn.json
    [device] = listed(client, auth)
    assert (device["binding_method"], device["trust_state"]) == ("none", "recognised")
    assert device_row(app, device["id"]).credential_ref is None
    assert count(app, "webauthn_credentials") == 0


def test_revoking_a_passkey_bound_phone_removes_its_passkey(app, client, mailbox, sms):
    _, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    auth = bearer(session["token"])
    phone = SoftAuthenticator()
    created = enrol(client, session["token"], phone)
    [device] = listed(client, auth)
    assert device["trust_state"] == "bound"
    revoked = client.delete(f"{DEVICES}/{device['id']}", headers=auth)
    assert revoked.status_code == 200, revoked.json
    # The lost phone's passkey no longer signs anyone in.
    finder = new_client(app, IPHONE_SAFARI)
    refused, _ = passkey_sign_in(finder, phone)
    assert_problem(refused, 401, "invalid-credentials")
    assert count(app, "audit_events", "event_type = 'webauthn.revoked'") == 1, (
        "the passkey's removal is audited"
    )
    assert query(app, "SELECT id FROM webauthn_credentials WHERE revoked_at IS NOT NULL") == [
        (created["id"],)
    ]


def test_a_passkey_binds_nothing_without_the_security_purpose(app, client, mailbox, sms):
    consent = baseline_consent(device_biometrics="granted")
    _, session = register(client, mailbox, sms, consent=consent)
    enrol(client, session["token"], SoftAuthenticator())
    assert count(app, "devices") == 0
    assert listed(client, bearer(session["token"])) == []
    assert client.get_cookie(DEVICE_COOKIE) is None


def test_passkey_sign_ins_from_a_new_client(app, runtime, client, mailbox, sms):
    person, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    phone = SoftAuthenticator()
    enrol(client, session["token"], phone)  # binds this phone
    security_key = SoftAuthenticator(user_verifying=False)
    enrol_roaming(client, session["token"], security_key)
    assert count(app, "devices") == 1
    assert count(app, "devices", "trust_state = 'bound'") == 1

    # Without user verification, from a client that is not the bound device: refused.
    laptop = new_client(app, WINDOWS_FIREFOX)
    sessions_before = count(app, "sessions")
    refused, _ = passkey_sign_in(laptop, security_key)
    assert_problem(refused, 401, "user-verification-required")
    assert count(app, "sessions") == sessions_before
    assert count(app, "devices") == 1
    assert laptop.get_cookie(DEVICE_COOKIE) is None
    # Nor on the bound phone's browser: its device cookie alone proves nothing
    # (a cookie can be copied), only its own passkey or key does.
    on_phone, _ = passkey_sign_in(client, security_key)
    assert_problem(on_phone, 401, "user-verification-required")

    # With user verification a passkey is phishing-resistant and passes anywhere.
    signed_in, _ = passkey_sign_in(new_client(app, IPHONE_SAFARI), phone)
    assert signed_in.status_code == 200, signed_in.json
    assert signed_in.json["acr"] == PHISHING_RESISTANT
    security_key.user_verifying = True
    verified, _ = passkey_sign_in(laptop, security_key)
    assert verified.status_code == 200, verified.json
    assert verified.json["acr"] == PHISHING_RESISTANT
    assert laptop.get_cookie(DEVICE_COOKIE) is not None
    assert count(app, "devices") == 2
    assert notices(runtime, mailbox, person.email) == 1


# -- 7. withdrawing security ---------------------------------------------------------


def test_withdrawing_security_forgets_every_device(app, runtime, client, mailbox, sms, clock):
    person, app_token, key = bound_account(client, mailbox, sms, clock)
    laptop = new_client(app, WINDOWS_FIREFOX)
    ticket = login(laptop, person.email, person.password).json["ticket"]
    assert laptop.post(SECOND_FACTOR_EMAIL, json={"ticket": ticket}).status_code == 202
    code = email_code(runtime, mailbox, person.email)
    done = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "email_code": code})
    assert done.status_code == 200, done.json
    token = done.json["token"]
    assert count(app, "devices") == 2

    withdrawn = laptop.post("/api/v1/me/consent/security/withdraw", headers=bearer(token))
    assert withdrawn.status_code == 200, withdrawn.json
    assert count(app, "devices") == 0
    assert count(app, "sessions", "device_id IS NOT NULL") == 0
    # Sessions go on (the app's token is still bound to its key).
    assert laptop.get(ME, headers=bearer(token)).status_code == 200
    assert client.get(ME, headers=dpop_auth(key, app_token, clock, "GET", ME)).status_code == 200
    assert listed(laptop, bearer(token)) == []

    notices_before = notices(runtime, mailbox, person.email)
    tablet = new_client(app, IPHONE_SAFARI)
    later = login(tablet, person.email, person.password)
    assert later.status_code == 200, later.json  # nothing bound any more: no step-up
    assert later.json["acr"] == SINGLE
    assert tablet.get_cookie(DEVICE_COOKIE) is None
    assert count(app, "devices") == 0
    assert notices(runtime, mailbox, person.email) == notices_before


# -- 8. export and retention ---------------------------------------------------------


def test_the_export_lists_my_devices(app, client, mailbox, sms):
    person, session = sign_up(client, mailbox, sms)
    assert login(new_client(app, IPHONE_SAFARI), person.email, person.password).status_code == 200
    sign_up(new_client(app), mailbox, sms, user_agent=WINDOWS_FIREFOX)  # someone else
    auth = bearer(session["token"])
    mine = {d["id"] for d in listed(client, auth)}
    exported = client.post("/api/v1/me/export", headers=auth)
    assert exported.status_code == 200, exported.json
    section = exported.json["devices"]
    assert section["about"]
    assert {d["id"] for d in section["devices"]} == mine
    assert {d["label"] for d in section["devices"]} == {"Chrome on Android", "Safari on iOS"}
    assert all(d["trust_state"] == "recognised" for d in section["devices"])


def test_retention_forgets_old_revoked_and_long_unseen_devices(app, client, mailbox, sms, clock):
    person, _ = sign_up(client, mailbox, sms)  # device A, then never seen again
    [old] = query(app, "SELECT id FROM devices")
    clock.advance(days=370)
    clients = [new_client(app, ua) for ua in (IPHONE_SAFARI, WINDOWS_FIREFOX)]
    tokens = []
    for each in clients:
        signed_in = login(each, person.email, person.password)
        assert signed_in.status_code == 200, signed_in.json
        tokens.append(signed_in.json["token"])
    [kept] = [d["id"] for d in listed(clients[0], bearer(tokens[0])) if d["current"]]
    [revoked] = [d["id"] for d in listed(clients[1], bearer(tokens[1])) if d["current"]]
    response = clients[0].delete(f"{DEVICES}/{revoked}", headers=bearer(tokens[0]))
    assert response.status_code == 200, response.json
    clock.advance(days=31)  # A unseen for 401 days, the revoked one revoked 31 days ago
    fresh = login(new_client(app, ANDROID_CHROME), person.email, person.password)
    assert fresh.status_code == 200, fresh.json
    assert count(app, "devices") == 4

    first = app.test_cli_runner().invoke(args=["retention-run"])
    assert first.exit_code == 0, first.output
    assert "devices: 2 deleted" in first.output
    remaining = {r.id for r in query(app, "SELECT id FROM devices")}
    assert old not in remaining and revoked not in remaining
    assert kept in remaining and len(remaining) == 2
    # A session once tied to a deleted device is just without a device.
    assert count(app, "sessions", "device_id NOT IN (SELECT id FROM devices)") == 0
    second = app.test_cli_runner().invoke(args=["retention-run"])
    assert "devices: 0 deleted" in second.output


def test_retention_keeps_a_device_revoked_a_day_too_recently(app, client, mailbox, sms, clock):
    person, session = sign_up(client, mailbox, sms)
    phone = new_client(app, IPHONE_SAFARI)
    assert login(phone, person.email, person.password).status_code == 200
    auth = bearer(session["token"])
    [theirs] = [d["id"] for d in listed(client, auth) if not d["current"]]
    assert client.delete(f"{DEVICES}/{theirs}", headers=auth).status_code == 200
    clock.advance(days=29)
    result = app.test_cli_runner().invoke(args=["retention-run"])
    assert "devices: 0 deleted" in result.output
    assert count(app, "devices") == 2


# -- 9. the passkey throttle ---------------------------------------------------------


def test_failed_passkey_sign_ins_back_their_source_off(app, client, mailbox, sms, clock):
    _, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    attacker = new_client(app, WINDOWS_FIREFOX)
    sessions_before = count(app, "sessions")
    for _ in range(5):
        failed = passkey_attempt(attacker, authenticator, tamper=True)
        assert_problem(failed, 401, "invalid-credentials")
    blocked = passkey_attempt(attacker, authenticator, tamper=True)
    assert_problem(blocked, 429, "too-many-attempts")
    assert int(blocked.headers["Retry-After"]) >= 1
    assert count(app, "sessions") == sessions_before
    assert count(app, "audit_events", "event_type = 'login.failed'") == 6
    failures = "SELECT details FROM audit_events WHERE event_type = 'login.failed'"
    reasons = [r.details for r in query(app, failures)]
    assert any("too-many-attempts" in str(r) for r in reasons)

    # A valid signature is never refused by the back-off, even from there.
    good = passkey_attempt(attacker, authenticator)
    assert good.status_code == 200, good.json
    # The good sign-in cleared that source's count: failures start from zero again.
    for _ in range(5):
        assert_problem(passkey_attempt(attacker, authenticator, tamper=True), 401)
    assert_problem(passkey_attempt(attacker, authenticator, tamper=True), 429)


def test_passkey_failures_do_not_lock_the_password(app, client, mailbox, sms, clock):
    person, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    attacker = new_client(app, WINDOWS_FIREFOX)
    for _ in range(6):
        passkey_attempt(attacker, authenticator, tamper=True)
    assert_problem(passkey_attempt(attacker, authenticator, tamper=True), 429, "too-many-attempts")
    # Junk assertions back off passkey sign-in only: the owner's password still works.
    step_up = client.post(
        "/api/v1/me/step-up",
        json={"password": person.password},
        headers=bearer(session["token"]),
    )
    assert step_up.status_code == 200, step_up.json


# -- review fixes: bindings that must not be bypassed --------------------------------


def test_revoking_a_device_ends_sessions_bound_to_its_key_without_a_device(
    app, client, mailbox, sms, clock
):
    person, first, key = bound_account(client, mailbox, sms, clock)
    withdraw, grant = "/api/v1/me/consent/security/withdraw", "/api/v1/me/consent/security/grant"
    withdrawn = client.post(withdraw, headers=dpop_auth(key, first, clock, "POST", withdraw))
    assert withdrawn.status_code == 200, withdrawn.json
    # The first session is still key-bound but now belongs to no device.
    body = {"policy_version": "2026-06"}
    granted = client.post(grant, json=body, headers=dpop_auth(key, first, clock, "POST", grant))
    assert granted.status_code == 200, granted.json
    phone = new_client(app, APP_UA)
    proof = {"DPoP": key.proof("POST", LOGIN, iat=clock.now().timestamp())}
    second = phone.post(
        LOGIN,
        json={"identifier": person.email, "password": person.password, "token_delivery": "bearer"},
        headers=proof,
    )
    assert second.status_code == 200, second.json
    token = second.json["token"]
    challenge = phone.post(CHALLENGE, headers=dpop_auth(key, token, clock, "POST", CHALLENGE))
    assert challenge.status_code == 200, challenge.json
    assert bind(phone, token, key, clock, challenge.json, scheme="DPoP").status_code == 201
    [device] = listed_dpop(phone, key, token, clock)
    path = f"{DEVICES}/{device['id']}"
    revoked = phone.delete(path, headers=dpop_auth(key, token, clock, "DELETE", path))
    assert revoked.json == {"sessions_ended": 2}
    # The lost phone holds the key and the first token: that session ends too.
    assert client.get(ME, headers=dpop_auth(key, first, clock, "GET", ME)).status_code == 401


def test_a_copied_device_cookie_does_not_skip_the_step_up(app, client, mailbox, sms):
    person, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    enrol(client, session["token"], SoftAuthenticator())
    assert listed(client, bearer(session["token"]))[0]["trust_state"] == "bound"
    thief = new_client(app, WINDOWS_FIREFOX)
    thief.set_cookie(DEVICE_COOKIE, client.get_cookie(DEVICE_COOKIE).value, domain="localhost")
    stolen = login(thief, person.email, person.password)
    assert stolen.status_code == 202, stolen.json
    assert stolen.json["methods"] == ["email_code"]


def test_withdrawing_security_with_bound_devices_needs_a_recent_sign_in_and_tells_the_owner(
    app, runtime, client, mailbox, sms, clock
):
    person, token, key = bound_account(client, mailbox, sms, clock)
    withdraw = "/api/v1/me/consent/security/withdraw"
    clock.advance(seconds=16 * 60)
    late = client.post(withdraw, headers=dpop_auth(key, token, clock, "POST", withdraw))
    assert_problem(late, 401, "insufficient-user-authentication")
    assert late.headers["WWW-Authenticate"].startswith("DPoP ")
    assert count(app, "devices") == 1
    step_up = client.post(
        "/api/v1/me/step-up",
        json={"password": person.password},
        headers=dpop_auth(key, token, clock, "POST", "/api/v1/me/step-up"),
    )
    assert step_up.status_code == 200, step_up.json
    token = step_up.json["token"]
    done = client.post(withdraw, headers=dpop_auth(key, token, clock, "POST", withdraw))
    assert done.status_code == 200, done.json
    assert count(app, "devices") == 0
    assert any(DEVICE_COOKIE in c and "Max-Age=0" in c for c in done.headers.getlist("Set-Cookie"))
    assert len(mails(runtime, mailbox, person.email, "A sign-in protection was removed")) == 1


def test_adding_a_passkey_needs_a_recent_sign_in(app, client, mailbox, sms, clock):
    _, session = sign_up(client, mailbox, sms, device_biometrics="granted")
    clock.advance(seconds=16 * 60)
    late = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"]))
    assert_problem(late, 401, "insufficient-user-authentication")


def test_an_unknown_token_under_the_dpop_scheme_gets_a_dpop_challenge(client):
    response = client.get(ME, headers={"Authorization": "DPoP not-a-token"})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("DPoP ")
