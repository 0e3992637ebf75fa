"""CSRF protection of cookie sessions, and the security headers on every response."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.services.audit import AuditTrail
from tests.helpers import (
    assert_problem,
    bearer,
    login,
    new_person,
    nothing_changes,
    register,
)

COOKIE = "__Host-privid_session"
ME = "/api/v1/me"
SESSIONS = "/api/v1/me/sessions"
NEW_PASSWORD = "amber-quartz-meadow-77"


@pytest.fixture
def cookie_user(client, mailbox, sms, runtime):
    """A person with a bearer session (made at registration) and a cookie session."""
    person, first = register(client, mailbox, sms, token_delivery="bearer")
    response = login(client, person.email, person.password, delivery="cookie")
    assert response.status_code == 200
    runtime.dispatcher.drain()
    return person, first, response.get_json()


def csrf(token: str) -> dict[str, str]:
    return {"X-CSRF-Token": token}


STATE_CHANGES = ["logout", "password", "delete-session", "revoke-others", "email", "phone"]


def state_change(name: str, person, other_session: dict[str, Any]) -> tuple[str, str, Any]:
    return {
        "logout": ("POST", "/api/v1/logout", None),
        "password": (
            "POST",
            "/api/v1/me/password",
            {"current_password": person.password, "new_password": NEW_PASSWORD},
        ),
        "delete-session": ("DELETE", f"{SESSIONS}/{other_session['session_id']}", None),
        "revoke-others": ("POST", f"{SESSIONS}/revoke-others", None),
        "email": (
            "POST",
            "/api/v1/me/email",
            {"email": new_person().email, "current_password": person.password},
        ),
        "phone": (
            "POST",
            "/api/v1/me/phone",
            {"phone": new_person().phone, "current_password": person.password},
        ),
    }[name]


@pytest.mark.parametrize("name", STATE_CHANGES)
@pytest.mark.parametrize("sent", ["missing", "empty", "wrong", "other-session", "bearer-token"])
def test_cookie_state_change_without_the_right_csrf_token_is_refused(
    app, client, mailbox, sms, runtime, cookie_user, name, sent
):
    person, first, _ = cookie_user
    # The CSRF token of another cookie session of the same person.
    other = login(client.application.test_client(), person.email, person.password, "cookie")
    headers = {
        "missing": {},
        "empty": csrf(""),
        "wrong": csrf("0" * 64),
        "other-session": csrf(other.get_json()["csrf_token"]),
        "bearer-token": csrf(first["token"]),
    }[sent]
    method, path, body = state_change(name, person, first)
    with nothing_changes(app, runtime, mailbox, sms, f"{name} with {sent} CSRF token"):
        response = client.open(path, method=method, json=body, headers=headers)
        problem = assert_problem(response, 403, "csrf-failed")
    assert "X-CSRF-Token" in problem["detail"]
    assert "Set-Cookie" not in response.headers
    # Both sessions still work and the password is unchanged.
    assert client.get(ME).status_code == 200
    assert client.get(ME, headers=bearer(first["token"])).status_code == 200
    assert login(client.application.test_client(), person.email, person.password).status_code == 200


def test_cookie_logout_with_the_csrf_token_works(client, cookie_user):
    _, _, cookie_session = cookie_user
    response = client.post("/api/v1/logout", headers=csrf(cookie_session["csrf_token"]))
    assert response.status_code == 204
    assert client.get_cookie(COOKIE) is None


def test_cookie_password_change_with_the_csrf_token_works(client, cookie_user):
    person, first, cookie_session = cookie_user
    response = client.post(
        "/api/v1/me/password",
        json={"current_password": person.password, "new_password": NEW_PASSWORD},
        headers=csrf(cookie_session["csrf_token"]),
    )
    assert response.status_code == 200
    assert response.get_json() == {"revoked": 1}
    other = client.application.test_client()
    assert login(other, person.email, NEW_PASSWORD).status_code == 200
    assert login(other, person.email, person.password).status_code == 401
    assert client.get(ME, headers=bearer(first["token"])).status_code == 401
    assert client.get(ME).status_code == 200


def test_cookie_session_revocation_with_the_csrf_token_works(client, cookie_user):
    _, first, cookie_session = cookie_user
    response = client.delete(
        f"{SESSIONS}/{first['session_id']}", headers=csrf(cookie_session["csrf_token"])
    )
    assert response.status_code == 204
    assert client.get(ME, headers=bearer(first["token"])).status_code == 401
    response = client.post(f"{SESSIONS}/revoke-others", headers=csrf(cookie_session["csrf_token"]))
    assert response.status_code == 200 and response.get_json() == {"revoked": 0}


def test_cookie_email_change_with_the_csrf_token_sends_the_code(client, mailbox, cookie_user):
    person, _, cookie_session = cookie_user
    new_email = new_person().email
    response = client.post(
        "/api/v1/me/email",
        json={"email": new_email, "current_password": person.password},
        headers=csrf(cookie_session["csrf_token"]),
    )
    assert response.status_code == 202
    assert mailbox.last_code(new_email)


def test_the_csrf_token_from_registration_works_too(client, mailbox, sms):
    _, session = register(client, mailbox, sms, token_delivery="cookie")
    assert session["csrf_token"] and session["token"] is None
    assert client.post("/api/v1/logout").status_code == 403
    assert client.post("/api/v1/logout", headers=csrf(session["csrf_token"])).status_code == 204


def test_reads_need_no_csrf_token(client, cookie_user):
    assert client.get(ME).status_code == 200
    assert client.get(SESSIONS).status_code == 200
    assert client.head(ME).status_code == 200


def test_bearer_state_changes_need_no_csrf_token(client, cookie_user):
    person, first, _ = cookie_user
    second = login(client.application.test_client(), person.email, person.password).get_json()
    no_cookies = client.application.test_client()
    no_cookies.environ_base["wsgi.url_scheme"] = "https"
    response = no_cookies.post(
        "/api/v1/me/password",
        json={"current_password": person.password, "new_password": NEW_PASSWORD},
        headers=bearer(first["token"]),
    )
    assert response.status_code == 200
    # The cookie session and the second bearer session ended with the change.
    assert response.get_json() == {"revoked": 2}
    assert no_cookies.get(ME, headers=bearer(second["token"])).status_code == 401
    assert no_cookies.post("/api/v1/logout", headers=bearer(first["token"])).status_code == 204
    assert no_cookies.get(ME, headers=bearer(first["token"])).status_code == 401


def test_an_invalid_bearer_header_does_not_fall_back_to_the_cookie(client, cookie_user):
    """With both present the Authorization header decides who is calling: a forged
    bearer token cannot be used to slip a cookie request past the CSRF check."""
    response = client.post("/api/v1/logout", headers=bearer("stale-or-forged"))
    assert_problem(response, 401)
    assert client.get(ME).status_code == 200


# -- security headers ------------------------------------------------------------


def assert_security_headers(response: Any, label: str) -> None:
    headers = response.headers
    hsts = headers.get("Strict-Transport-Security", "")
    max_age = [p.strip() for p in hsts.split(";") if p.strip().startswith("max-age=")]
    assert max_age and int(max_age[0].split("=")[1]) >= 31536000, (label, hsts)
    assert "includesubdomains" in hsts.lower(), (label, hsts)
    assert headers.get("X-Content-Type-Options") == "nosniff", label
    assert headers.get("X-Frame-Options") == "DENY", label
    directives = {
        d.strip().split()[0]: d.strip().split()[1:]
        for d in headers.get("Content-Security-Policy", "").split(";")
        if d.strip()
    }
    assert directives.get("default-src") == ["'none'"], (label, directives)
    assert directives.get("frame-ancestors") == ["'none'"], (label, directives)
    cache = {p.strip().lower() for p in headers.get("Cache-Control", "").split(",")}
    assert "no-store" in cache, (label, headers.get("Cache-Control"))


def test_security_headers_on_every_kind_of_response(app, client, mailbox, sms, monkeypatch):
    seen: dict[int, str] = {}

    def check(label: str, response: Any) -> Any:
        assert_security_headers(response, label)
        seen[response.status_code] = label
        return response

    check("healthz", client.get("/healthz"))
    check("openapi", client.get("/openapi.json"))
    check("options", client.options("/api/v1/login/password"))
    check("head", client.head("/healthz"))
    person = new_person()
    registration = {
        "email": person.email,
        "phone": person.phone,
        "full_name": person.full_name,
        "password": person.password,
    }
    started = check("registration", client.post("/api/v1/registration", json=registration))
    flow = started.get_json()["flow_id"]
    check(
        "first code",
        client.post(
            f"/api/v1/registration/{flow}/verify",
            json={"channel": "email", "code": mailbox.last_code(person.email)},
        ),
    )
    check(
        "account created",
        client.post(
            f"/api/v1/registration/{flow}/verify",
            json={
                "channel": "phone",
                "code": sms.last_code(person.phone),
                "token_delivery": "cookie",
            },
        ),
    )
    signed_in = check("sign-in", login(client, person.email, person.password, "cookie"))
    check("profile", client.get(ME))
    check("csrf refused", client.post("/api/v1/logout"))
    check("sms code", client.post("/api/v1/login/sms/code", json={"phone": person.phone}))
    guesses = [login(client, person.phone, f"wrong-guess-{n}-xyz") for n in range(6)]
    check("back-off", guesses[-1])
    check(
        "malformed",
        client.post("/api/v1/login/password", data="{", content_type="application/json"),
    )
    check("invalid fields", client.post("/api/v1/login/password", json={}))
    check("wrong password", login(client, person.email, "not-the-password-x"))
    check("media type", client.post("/api/v1/login/password", data="x", content_type="text/plain"))
    check(
        "too large",
        client.post("/api/v1/login/password", data=" " * 70_000, content_type="application/json"),
    )
    check("not found", client.get("/api/v1/nothing-here"))
    check("method", client.get("/api/v1/logout"))
    check(
        "logout",
        client.post("/api/v1/logout", headers=csrf(signed_in.get_json()["csrf_token"])),
    )

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(AuditTrail, "record", explode)
    check(
        "server error",
        client.post("/api/v1/registration", json={**registration, "email": new_person().email}),
    )

    expected = {200, 201, 202, 204, 400, 401, 403, 404, 405, 413, 415, 422, 429, 500}
    assert expected <= set(seen), sorted(set(expected) - set(seen))


def test_security_headers_on_rate_limited_responses(client):
    responses = [
        client.post("/api/v1/password-reset", json={"identifier": f"x{i}@example.com"})
        for i in range(12)
    ]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]  # limit_reset_per_ip is 10/hour
    for response in limited:
        assert_problem(response, 429, "rate-limited")
        assert_security_headers(response, "rate limited")


def test_problem_documents_are_json_not_html(client):
    for response in (client.get("/nothing"), client.post("/api/v1/login/password", json=[])):
        assert response.mimetype == "application/problem+json"
        assert not response.get_data(as_text=True).lstrip().startswith("<")
        json.loads(response.get_data(as_text=True))


def test_flask_s_own_signed_cookie_session_is_off(app, client, mailbox, sms):
    """Browser state lives in the service's revocable cookies only: a sign-up
    sets none of Flask's, and code that tried to keep state in Flask's session
    would fail at once rather than write an irrevocable cookie."""
    from flask import session as flask_session

    register(client, mailbox, sms, token_delivery="cookie")
    assert client.get_cookie("session") is None
    with app.test_request_context("/"), pytest.raises(RuntimeError):
        flask_session["kept"] = "state"
