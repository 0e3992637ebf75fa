"""Sessions: cookie and bearer transports, listing, revoking, timeouts, disabled accounts."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.clock import FrozenClock
from tests.helpers import (
    ANDROID_CHROME,
    IPHONE_SAFARI,
    WINDOWS_FIREFOX,
    assert_invalid_token,
    assert_problem,
    baseline_consent,
    bearer,
    database_text,
    login,
    new_person,
    register,
    sent_messages,
    statements_of,
    table_rows,
)

COOKIE = "__Host-privid_session"
ME = "/api/v1/me"
SESSIONS = "/api/v1/me/sessions"


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


def sign_in(client, person, delivery: str = "bearer", **kwargs: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/login/password",
        json={"identifier": person.email, "password": person.password, "token_delivery": delivery},
        **kwargs,
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def cookie_value(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def set_session_cookie(client, value: str) -> None:
    client.set_cookie(COOKIE, value, secure=True, httponly=True, samesite="Lax")


def session_ids(client, token: str) -> set[str]:
    response = client.get(SESSIONS, headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return {s["session_id"] for s in response.get_json()["sessions"]}


# -- transports ------------------------------------------------------------------


def test_cookie_sign_in_sets_a_host_cookie_and_returns_no_token(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    client.delete_cookie(COOKIE)
    response = login(client, person.email, person.password, delivery="cookie")
    assert response.status_code == 200
    body = response.get_json()
    assert body["token"] is None
    assert body["csrf_token"]
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}
    assert {"secure", "httponly", "path", "samesite"} <= attributes
    assert "domain" not in attributes  # a __Host- cookie may not name a domain
    assert "samesite=lax" in set_cookie.lower() and "path=/" in set_cookie.lower()
    token = cookie_value(client)
    assert token and token not in response.get_data(as_text=True)

    me = client.get(ME)
    assert me.status_code == 200
    assert me.get_json()["email"] == person.email


def test_a_signed_in_read_of_the_profile_is_one_query(app, client, mailbox, sms):
    """The gate reads the session, its user, the user's data key and whether a
    material policy change happened since sign-in together: reading one's own
    profile (decrypted under that key) costs a single statement."""
    person, _ = register(client, mailbox, sms)
    token = sign_in(client, person)["token"]
    answers = []
    statements = statements_of(app, lambda: answers.append(client.get(ME, headers=bearer(token))))
    assert answers[0].status_code == 200
    assert answers[0].get_json()["email"] == person.email
    # SQLite opens its transactions with a statement of its own.
    queries = [s for s in statements if not s.startswith("BEGIN")]
    assert len(queries) == 1, statements


def test_bearer_sign_in_returns_a_token_and_sets_no_cookie(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    response = login(client, person.email, person.password, delivery="bearer")
    assert response.status_code == 200
    body = response.get_json()
    assert body["token"] and body["csrf_token"] is None
    assert "Set-Cookie" not in response.headers
    assert client.get(ME, headers=bearer(body["token"])).status_code == 200
    unauthenticated = client.get(ME)
    assert_problem(unauthenticated, 401, "authentication-required")
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bearer_token_does_not_work_as_a_cookie(client, mailbox, sms):
    _, session = register(client, mailbox, sms, token_delivery="bearer")
    assert client.get(ME, headers=bearer(session["token"])).status_code == 200
    set_session_cookie(client, session["token"])
    assert_invalid_token(client.get(ME))


def test_a_cookie_token_does_not_work_as_a_bearer_token(client, mailbox, sms):
    register(client, mailbox, sms, token_delivery="cookie")
    token = cookie_value(client)
    assert token
    assert client.get(ME).status_code == 200
    client.delete_cookie(COOKIE)
    assert_invalid_token(client.get(ME, headers=bearer(token)))


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer not-a-real-token"],
)
def test_malformed_or_unknown_credentials_are_invalid_tokens(client, authorization):
    assert_invalid_token(client.get(ME, headers={"Authorization": authorization}))


def test_an_unknown_cookie_is_refused(client):
    set_session_cookie(client, "made-up-value")
    assert_invalid_token(client.get(ME))


# -- listing ---------------------------------------------------------------------


def test_sessions_list_shows_device_truncated_ip_and_the_current_one(app, client, mailbox, sms):
    # Device details are security data: this user granted the security purpose.
    person, first = register(client, mailbox, sms, consent=baseline_consent(security="granted"))
    android = sign_in(client, person, headers={"User-Agent": ANDROID_CHROME})
    iphone = sign_in(
        client,
        person,
        headers={"User-Agent": IPHONE_SAFARI},
        environ_overrides={"REMOTE_ADDR": "203.0.113.77"},
    )
    windows = sign_in(
        client,
        person,
        delivery="cookie",
        headers={"User-Agent": WINDOWS_FIREFOX},
        environ_overrides={"REMOTE_ADDR": "2001:db8:abcd:12:34::1"},
    )

    response = client.get(SESSIONS, headers=bearer(android["token"]))
    assert response.status_code == 200
    listed = {s["session_id"]: s for s in response.get_json()["sessions"]}
    assert set(listed) == {
        first["session_id"],
        android["session_id"],
        iphone["session_id"],
        windows["session_id"],
    }
    assert [sid for sid, s in listed.items() if s["current"]] == [android["session_id"]]

    assert listed[android["session_id"]]["device"] == "Chrome on Android"
    assert listed[android["session_id"]]["ip_prefix"] == "127.0.0.0/24"
    assert listed[android["session_id"]]["transport"] == "bearer"
    assert listed[android["session_id"]]["amr"] == ["pwd"]
    assert listed[iphone["session_id"]]["device"] == "Safari on iOS"
    assert listed[iphone["session_id"]]["ip_prefix"] == "203.0.113.0/24"
    assert listed[windows["session_id"]]["device"] == "Firefox on Windows"
    assert listed[windows["session_id"]]["ip_prefix"] == "2001:db8:abcd::/48"
    assert listed[windows["session_id"]]["transport"] == "cookie"
    for summary in listed.values():
        assert "token" not in summary and "token_hash" not in summary

    # Seen from another session, "current" moves with the caller.
    other_view = client.get(SESSIONS, headers=bearer(iphone["token"])).get_json()["sessions"]
    assert [s["session_id"] for s in other_view if s["current"]] == [iphone["session_id"]]

    # Neither the full address nor the raw User-Agent is kept anywhere.
    stored = database_text(app)
    for raw in ("203.0.113.77", "2001:db8:abcd:12:34::1", "Pixel 8", "rv:128.0", "15E148"):
        assert raw not in stored


def test_sessions_list_shows_only_my_sessions(client, mailbox, sms):
    _, mine = register(client, mailbox, sms)
    _, theirs = register(client, mailbox, sms)
    assert session_ids(client, mine["token"]) == {mine["session_id"]}
    assert session_ids(client, theirs["token"]) == {theirs["session_id"]}


# -- revoking --------------------------------------------------------------------


def test_revoke_one_session(client, mailbox, sms):
    person, first = register(client, mailbox, sms)
    second = sign_in(client, person)

    response = client.delete(f"{SESSIONS}/{second['session_id']}", headers=bearer(first["token"]))
    assert response.status_code == 204
    assert_invalid_token(client.get(ME, headers=bearer(second["token"])))
    assert client.get(ME, headers=bearer(first["token"])).status_code == 200
    assert session_ids(client, first["token"]) == {first["session_id"]}

    again = client.delete(f"{SESSIONS}/{second['session_id']}", headers=bearer(first["token"]))
    assert_problem(again, 404, "not-found")


def test_revoking_the_current_session_signs_it_out(client, mailbox, sms):
    _, first = register(client, mailbox, sms)
    response = client.delete(f"{SESSIONS}/{first['session_id']}", headers=bearer(first["token"]))
    assert response.status_code == 204
    assert_invalid_token(client.get(ME, headers=bearer(first["token"])))


def test_someone_elses_session_cannot_be_revoked(client, mailbox, sms):
    _, mine = register(client, mailbox, sms)
    _, theirs = register(client, mailbox, sms)
    response = client.delete(f"{SESSIONS}/{theirs['session_id']}", headers=bearer(mine["token"]))
    # The same answer as for a session that does not exist: nothing to learn.
    body = assert_problem(response, 404, "not-found")
    missing = client.delete(
        f"{SESSIONS}/00000000-0000-4000-8000-000000000000", headers=bearer(mine["token"])
    )
    assert assert_problem(missing, 404, "not-found") == body
    assert client.get(ME, headers=bearer(theirs["token"])).status_code == 200


def test_revoke_others_keeps_only_this_session(client, mailbox, sms):
    person, first = register(client, mailbox, sms)
    second = sign_in(client, person)
    third = sign_in(client, person)
    _, stranger = register(client, mailbox, sms)

    response = client.post(f"{SESSIONS}/revoke-others", headers=bearer(second["token"]))
    assert response.status_code == 200
    assert response.get_json() == {"revoked": 2}
    for gone in (first, third):
        assert_invalid_token(client.get(ME, headers=bearer(gone["token"])))
    assert client.get(ME, headers=bearer(second["token"])).status_code == 200
    assert session_ids(client, second["token"]) == {second["session_id"]}
    assert client.get(ME, headers=bearer(stranger["token"])).status_code == 200

    again = client.post(f"{SESSIONS}/revoke-others", headers=bearer(second["token"]))
    assert again.get_json() == {"revoked": 0}


def test_logout_ends_a_bearer_session(client, mailbox, sms):
    person, first = register(client, mailbox, sms)
    second = sign_in(client, person)
    response = client.post("/api/v1/logout", headers=bearer(first["token"]))
    assert response.status_code == 204
    assert response.get_data() in (b"", b"{}\n", b"{}")
    after = client.get(ME, headers=bearer(first["token"]))
    assert_invalid_token(after)
    assert_invalid_token(client.post("/api/v1/logout", headers=bearer(first["token"])))
    # Only that session ended.
    assert client.get(ME, headers=bearer(second["token"])).status_code == 200


def test_logout_ends_a_cookie_session_and_clears_the_cookie(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    client.delete_cookie(COOKIE)
    signed_in = sign_in(client, person, delivery="cookie")
    token = cookie_value(client)
    assert token
    response = client.post("/api/v1/logout", headers={"X-CSRF-Token": signed_in["csrf_token"]})
    assert response.status_code == 204
    cleared = response.headers["Set-Cookie"]
    assert cleared.startswith(f"{COOKIE}=;") and "max-age=0" in cleared.lower()
    assert cookie_value(client) is None
    # Replaying the old cookie does not bring the session back.
    set_session_cookie(client, token)
    assert_invalid_token(client.get(ME))


# -- timeouts (frozen clock) -----------------------------------------------------


def test_idle_timeout(client, mailbox, sms, clock, settings):
    person, first = register(client, mailbox, sms)
    idle = timedelta(seconds=settings.session_idle_timeout_seconds)
    assert idle == timedelta(minutes=30)
    watcher = sign_in(client, person)

    # Activity just inside the idle window keeps the session alive, again and again.
    for _ in range(3):
        clock.advance(seconds=idle.total_seconds() - 1)
        assert client.get(ME, headers=bearer(first["token"])).status_code == 200
        assert client.get(ME, headers=bearer(watcher["token"])).status_code == 200

    clock.advance(seconds=idle.total_seconds() - 1)
    assert client.get(ME, headers=bearer(watcher["token"])).status_code == 200
    clock.advance(seconds=1)  # `first` has now been idle for exactly the timeout
    assert_invalid_token(client.get(ME, headers=bearer(first["token"])))
    assert session_ids(client, watcher["token"]) == {watcher["session_id"]}


def test_idle_timeout_applies_to_cookie_sessions(client, mailbox, sms, clock, settings):
    register(client, mailbox, sms, token_delivery="cookie")
    assert client.get(ME).status_code == 200
    clock.advance(seconds=settings.session_idle_timeout_seconds)
    assert_invalid_token(client.get(ME))


def test_absolute_timeout_despite_activity(client, mailbox, sms, clock, settings):
    _, session = register(client, mailbox, sms)
    absolute = timedelta(seconds=settings.session_absolute_timeout_seconds)
    assert absolute == timedelta(hours=12)
    started = clock.now()
    assert session["expires_at"].replace("Z", "+00:00") == (started + absolute).isoformat()

    step = timedelta(minutes=20)
    while clock.now() + step < started + absolute:
        clock.advance(seconds=step.total_seconds())
        assert client.get(ME, headers=bearer(session["token"])).status_code == 200
    clock.advance(seconds=(started + absolute - clock.now()).total_seconds() - 1)
    assert client.get(ME, headers=bearer(session["token"])).status_code == 200
    clock.advance(seconds=1)
    assert_invalid_token(client.get(ME, headers=bearer(session["token"])))


# -- sign-in and tokens ----------------------------------------------------------


def test_every_sign_in_gets_a_new_token(client, mailbox, sms):
    person, first = register(client, mailbox, sms)
    tokens = {first["token"]}
    ids = {first["session_id"]}
    for _ in range(3):
        session = sign_in(client, person)
        tokens.add(session["token"])
        ids.add(session["session_id"])
    assert len(tokens) == 4 and len(ids) == 4
    for token in tokens:
        assert client.get(ME, headers=bearer(token)).status_code == 200

    # Signing out and in again does not bring back the old token.
    assert client.post("/api/v1/logout", headers=bearer(first["token"])).status_code == 204
    again = sign_in(client, person)
    assert again["token"] not in tokens


def test_cookie_sign_in_replaces_a_planted_cookie(client, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    set_session_cookie(client, "attacker-chosen-session-value")
    sign_in(client, person, delivery="cookie")
    issued = cookie_value(client)
    assert issued and issued != "attacker-chosen-session-value"
    assert client.get(ME).status_code == 200
    set_session_cookie(client, "attacker-chosen-session-value")
    assert_invalid_token(client.get(ME))


def test_session_tokens_are_stored_only_hashed(app, client, mailbox, sms):
    person, registered = register(client, mailbox, sms, token_delivery="bearer")
    signed_in = sign_in(client, person, delivery="cookie")
    cookie_token = cookie_value(client)
    bearer_token = registered["token"]
    assert cookie_token and bearer_token

    rows = table_rows(app)["sessions"]
    assert len(rows) == 2
    stored = database_text(app)
    for secret in (bearer_token, cookie_token, signed_in["csrf_token"]):
        assert secret not in stored
    for token in (bearer_token, cookie_token):
        # What is stored cannot be replayed: the stored value is not a token.
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert digest in stored
        assert_invalid_token(client.get(ME, headers=bearer(digest)))


# -- disabled accounts -----------------------------------------------------------


def disable_every_account(app) -> None:
    engine = app.extensions["privid.engine"]
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET status = 'disabled'"))


def test_a_disabled_account_loses_its_sessions_and_cannot_sign_in(
    app, client, mailbox, sms, runtime
):
    person, bearer_session = register(client, mailbox, sms, token_delivery="bearer")
    cookie_session = sign_in(client, person, delivery="cookie")
    assert client.get(ME).status_code == 200
    assert client.get(ME, headers=bearer(bearer_session["token"])).status_code == 200

    wrong = login(client, person.email, "not-the-password-at-all")
    assert_problem(wrong, 401, "invalid-credentials")

    disable_every_account(app)

    assert_invalid_token(client.get(ME, headers=bearer(bearer_session["token"])))
    assert_invalid_token(client.get(ME))
    revoke = client.post(
        f"{SESSIONS}/revoke-others", headers={"X-CSRF-Token": cookie_session["csrf_token"]}
    )
    assert_invalid_token(revoke)

    # The right password gets exactly the answer a wrong one gets.
    for identifier in (person.email, person.phone):
        refused = login(client, identifier, person.password)
        assert refused.status_code == wrong.status_code
        assert refused.get_json() == wrong.get_json()
        assert "Set-Cookie" not in refused.headers
    stranger = login(client, new_person().email, person.password)
    assert stranger.get_json() == wrong.get_json()

    # No SMS sign-in code goes to a disabled account, and the answer does not say so.
    before = sent_messages(runtime, mailbox, sms)
    code = client.post("/api/v1/login/sms/code", json={"phone": person.phone})
    assert code.status_code == 202
    assert sent_messages(runtime, mailbox, sms) == before


def test_device_details_are_kept_only_with_the_security_purpose(client, mailbox, sms):
    person, session = register(client, mailbox, sms)  # security refused
    auth = bearer(session["token"])
    phone = sign_in(client, person, headers={"User-Agent": ANDROID_CHROME})
    listed = client.get(SESSIONS, headers=auth).get_json()["sessions"]
    assert {(s["device"], s["ip_prefix"]) for s in listed} == {("unknown device", "withheld")}

    granted = client.post(
        "/api/v1/me/consent/security/grant", json={"policy_version": "2026-06"}, headers=auth
    )
    assert granted.status_code == 200
    tablet = sign_in(client, person, headers={"User-Agent": ANDROID_CHROME})
    listed = {s["session_id"]: s for s in client.get(SESSIONS, headers=auth).get_json()["sessions"]}
    assert listed[tablet["session_id"]]["device"] == "Chrome on Android"
    assert listed[tablet["session_id"]]["ip_prefix"] == "127.0.0.0/24"
    assert listed[phone["session_id"]]["device"] == "unknown device"

    # Withdrawal erases what was recorded, at once, and new sessions record nothing.
    assert client.post("/api/v1/me/consent/security/withdraw", headers=auth).status_code == 200
    listed = client.get(SESSIONS, headers=auth).get_json()["sessions"]
    assert {(s["device"], s["ip_prefix"]) for s in listed} == {("unknown device", "withheld")}
    later = sign_in(client, person, headers={"User-Agent": ANDROID_CHROME})
    listed = {s["session_id"]: s for s in client.get(SESSIONS, headers=auth).get_json()["sessions"]}
    assert listed[later["session_id"]]["device"] == "unknown device"
