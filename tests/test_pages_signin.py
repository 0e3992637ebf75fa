"""The sign-in pages: password, SMS code, second factor, passkeys (button and
autofill), step-up and sign-out, with and without a browser; and the one rule
every ``next`` goes through."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from app.clock import FrozenClock
from app.pages.returns import DEFAULT_RETURN, RETURN_PREFIXES, allowed_return_path
from tests.helpers import (
    TOTP_START,
    baseline_consent,
    enable_totp,
    register,
)

SESSION_COOKIE = "__Host-privid_session"


@pytest.fixture
def clock() -> FrozenClock:
    # TOTP codes are computed for known instants; the clock is moved by hand.
    return FrozenClock(TOTP_START)


# -- the return-path rule -----------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/account",
        "/account/security",
        "/privacy/export?format=json",
        "/policies/2026-06",
        "/consent?next=%2Faccount",
        "/oauth/authorize?client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
    ],
)
def test_paths_under_the_pages_are_returned_to(target: str):
    assert allowed_return_path(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "account",
        "//evil.example",
        "///evil.example",
        "//evil.example/account",
        "/\\evil.example",
        "\\\\evil.example",
        "/\\/evil.example",
        "https://evil.example/account",
        "HTTPS://evil.example",
        "javascript:alert(1)",
        "/account\\..\\..\\evil",
        "/%2f%2fevil.example",
        "/%2F%2Fevil.example",
        "/%5cevil.example",
        "/account/%2e%2e/signin",
        "/account/../signin",
        "/account/./security",
        "/account//security",
        "/account/",
        "/accounts",
        "/signin",
        "/signin?next=/account",
        "/signup",
        "/step-up?next=/account",
        "/signout",
        "/api/v1/me",
        "/account\r\nSet-Cookie: a=b",
        "/account\x00",
        "/account\t",
        " /account",
        "/account?x=a b",
        "/account?x=\\evil",
        "/account#//evil.example",
        "/аccount",  # a Cyrillic a
        "/account\u2028",
        "/" + "a" * 3000,
    ],
)
def test_anything_else_goes_to_the_account_page(target: str | None):
    assert allowed_return_path(target) == DEFAULT_RETURN


@given(st.text())
def test_no_input_leaves_the_site(target: str):
    found = allowed_return_path(target)
    resolved = urlsplit(urljoin("https://privid.example/somewhere/page", found))
    assert resolved.scheme == "https" and resolved.netloc == "privid.example"
    assert found.isascii() and found.isprintable() and " " not in found
    assert any(found == p or found.startswith((p + "/", p + "?")) for p in RETURN_PREFIXES)
    assert allowed_return_path(found) == found


SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_~", min_size=1, max_size=12)


@given(st.sampled_from(RETURN_PREFIXES), st.lists(SEGMENT, max_size=4))
def test_every_plain_path_under_an_area_is_kept(prefix: str, segments: list[str]):
    target = "/".join([prefix, *segments])
    assert allowed_return_path(target) == target


@given(st.sampled_from(["/account", "/privacy"]), st.sampled_from(["%2f", "%2F", "%5c", "%2e"]))
def test_encoded_separators_in_the_path_are_refused(prefix: str, encoded: str):
    assert allowed_return_path(f"{prefix}/{encoded}{encoded}evil") == DEFAULT_RETURN


# -- pages without a browser ---------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _token(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "the page has no form token"
    return found.group(1)


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return found.group(1)


def _sign_in(client: FlaskClient, identifier: str, password: str, next_path: str = "") -> Any:
    page = client.get(f"/signin?next={next_path}")
    body = {"csrf_token": _token(page.text), "identifier": identifier, "password": password}
    return client.post("/signin", data={**body, "next": _hidden(page.text, "next")})


def _session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(SESSION_COOKIE)
    return cookie.value if cookie else None


def test_the_signin_page_offers_passkeys_in_the_username_autofill(client: FlaskClient):
    page = client.get("/signin?next=https://evil.example/account")
    assert page.status_code == 200
    assert 'autocomplete="username webauthn"' in page.text
    assert "Sign in with a passkey" in page.text
    # An off-site next never reaches the form.
    assert _hidden(page.text, "next") == "/account"
    assert 'data-next="/account"' in page.text


def test_password_sign_in_returns_to_next(client: FlaskClient, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    done = _sign_in(client, person.email, person.password, "/privacy/export")
    assert done.status_code == 303
    assert done.headers["Location"] == "/privacy/export"
    assert _session_cookie(client)
    me = client.get("/api/v1/me")
    assert me.status_code == 200 and me.json["email"] == person.email


def test_sign_in_with_the_phone_number_as_identifier(client: FlaskClient, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    done = _sign_in(client, person.phone, person.password)
    assert done.status_code == 303 and done.headers["Location"] == "/account"


def test_an_off_site_next_posted_with_the_form_is_ignored(client: FlaskClient, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    page = client.get("/signin")
    done = client.post(
        "/signin",
        data={
            "csrf_token": _token(page.text),
            "identifier": person.email,
            "password": person.password,
            "next": "//evil.example/account",
        },
    )
    assert done.status_code == 303 and done.headers["Location"] == "/account"


def test_a_wrong_password_says_so_and_opens_no_session(client: FlaskClient, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    done = _sign_in(client, person.email, "not-the-password-at-all")
    assert done.status_code == 400
    assert "The sign-in details are not correct." in done.text
    # The identifier stays in the field; the password never comes back.
    assert f'value="{person.email}"' in done.text
    assert "not-the-password-at-all" not in done.text
    assert _session_cookie(client) is None


def test_an_unknown_account_gets_the_same_message(client: FlaskClient):
    done = _sign_in(client, "nobody@example.com", "whatever-password-1")
    assert done.status_code == 400
    assert "The sign-in details are not correct." in done.text


def test_a_sign_in_form_without_its_token_is_refused(client: FlaskClient, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    client.get("/signin")
    forged = client.post("/signin", data={"identifier": person.email, "password": person.password})
    assert forged.status_code == 403
    assert "This form has expired" in forged.text
    assert _session_cookie(client) is None


def test_second_factor_by_totp_then_the_ticket_cannot_be_replayed(
    client: FlaskClient, mailbox, sms, clock: FrozenClock
):
    person, session = register(client, mailbox, sms)
    totp, _codes = enable_totp(client, session, at=clock.now())
    clock.advance(seconds=30)
    first = _sign_in(client, person.email, person.password, "/privacy")
    assert first.status_code == 200
    assert "Confirm it is you" in first.text and _session_cookie(client) is None
    form = {
        "csrf_token": _token(first.text),
        "ticket": _hidden(first.text, "ticket"),
        "methods": _hidden(first.text, "methods"),
        "next": _hidden(first.text, "next"),
        "method": "totp",
    }
    wrong = client.post("/signin/second-factor", data={**form, "totp": "000000"})
    assert wrong.status_code == 400
    assert "The code is wrong, expired or already used." in wrong.text
    assert 'aria-invalid="true"' in wrong.text
    done = client.post("/signin/second-factor", data={**form, "totp": totp.at(clock.now())})
    assert done.status_code == 303 and done.headers["Location"] == "/privacy"
    assert _session_cookie(client)
    sessions = client.get("/api/v1/me/sessions").json["sessions"]
    assert [s["acr"] for s in sessions if s["current"]] == ["urn:privid:acr:multi-factor"]
    # The same form again (back button, resend): its pre-sign-in token is void now.
    clock.advance(seconds=30)
    again = client.post("/signin/second-factor", data={**form, "totp": totp.at(clock.now())})
    assert again.status_code == 403
    # Without the new session, the ticket itself is spent, whatever the code.
    client.delete_cookie(SESSION_COOKIE)
    again = client.post("/signin/second-factor", data={**form, "totp": totp.at(clock.now())})
    assert again.status_code == 400
    assert "This sign-in has expired or was already finished." in again.text


def test_second_factor_by_recovery_code(client: FlaskClient, mailbox, sms, clock: FrozenClock):
    person, session = register(client, mailbox, sms)
    _totp, codes = enable_totp(client, session, at=clock.now())
    first = _sign_in(client, person.email, person.password)
    done = client.post(
        "/signin/second-factor",
        data={
            "csrf_token": _token(first.text),
            "ticket": _hidden(first.text, "ticket"),
            "methods": "totp,recovery_code",
            "next": "/account",
            "method": "recovery_code",
            "recovery_code": codes[0],
        },
    )
    assert done.status_code == 303 and done.headers["Location"] == "/account"


def test_the_second_factor_page_needs_a_first_step(client: FlaskClient):
    response = client.get("/signin/second-factor?next=/privacy")
    assert response.status_code == 303
    assert response.headers["Location"] == "/signin?next=%2Fprivacy"


def test_sms_sign_in_keeps_the_flow_in_the_form(client: FlaskClient, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    page = client.get("/signin/sms?next=/privacy")
    sent = client.post(
        "/signin/sms",
        data={"csrf_token": _token(page.text), "phone": person.phone, "next": "/privacy"},
    )
    assert sent.status_code == 200
    flow = _hidden(sent.text, "flow")
    form = {"csrf_token": _token(sent.text), "phone": person.phone, "flow": flow}
    form["next"] = "/privacy"
    wrong = client.post("/signin/sms/code", data={**form, "code": "000000"})
    assert wrong.status_code == 400 and "The code is wrong" in wrong.text
    assert _hidden(wrong.text, "flow") == flow
    done = client.post("/signin/sms/code", data={**form, "code": sms.last_code(person.phone, 2)})
    assert done.status_code == 303 and done.headers["Location"] == "/privacy"
    assert client.get("/api/v1/me").status_code == 200


def test_sms_sign_in_explains_a_bad_phone_number(client: FlaskClient):
    page = client.get("/signin/sms")
    sent = client.post("/signin/sms", data={"csrf_token": _token(page.text), "phone": "12"})
    assert sent.status_code == 400
    assert "Enter a mobile phone number" in sent.text
    assert 'id="phone-error"' in sent.text


def test_step_up_by_password_lets_a_stale_session_act_again(
    client: FlaskClient, mailbox, sms, clock: FrozenClock
):
    consent = baseline_consent(device_biometrics="granted")
    person, _ = register(client, mailbox, sms, consent=consent)
    _sign_in(client, person.email, person.password)
    csrf = {"X-CSRF-Token": _token(client.get("/signin").text)}
    clock.advance(minutes=20)  # older than adding a passkey allows
    stale = client.post("/api/v1/webauthn/registration/options", headers=csrf)
    assert stale.status_code == 401
    page = client.get("/step-up?next=/account/passkeys&acr=urn:privid:acr:single-factor")
    assert page.status_code == 200 and "Confirm it is you" in page.text
    form = {"csrf_token": _token(page.text), "next": "/account/passkeys"}
    wrong = client.post("/step-up", data={**form, "password": "not-my-password-1"})
    assert wrong.status_code == 400 and "The password is not correct." in wrong.text
    assert 'id="password-error"' in wrong.text
    done = client.post("/step-up", data={**form, "password": person.password})
    assert done.status_code == 303 and done.headers["Location"] == "/account/passkeys"
    assert client.post("/api/v1/webauthn/registration/options", headers=csrf).status_code == 200


def test_step_up_asks_for_the_totp_code_when_the_account_has_one(
    client: FlaskClient, mailbox, sms, clock: FrozenClock
):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session, at=clock.now())
    clock.advance(seconds=30)
    first = _sign_in(client, person.email, person.password)
    client.post(
        "/signin/second-factor",
        data={
            "csrf_token": _token(first.text),
            "ticket": _hidden(first.text, "ticket"),
            "method": "totp",
            "totp": totp.at(clock.now()),
        },
    )
    clock.advance(minutes=2)
    page = client.get("/step-up?next=/account/security")
    assert 'name="totp_code"' in page.text
    form = {"csrf_token": _token(page.text), "next": "/account/security"}
    missing = client.post("/step-up", data={**form, "password": person.password})
    assert missing.status_code == 400
    assert "enter its code too" in missing.text and 'id="totp_code-error"' in missing.text
    done = client.post(
        "/step-up", data={**form, "password": person.password, "totp_code": totp.at(clock.now())}
    )
    assert done.status_code == 303 and done.headers["Location"] == "/account/security"


def test_step_up_needs_a_session(client: FlaskClient):
    response = client.get("/step-up?next=/account")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/signin?next=")


def test_sign_out_ends_the_session_and_needs_the_form_token(client: FlaskClient, mailbox, sms):
    person, _ = register(client, mailbox, sms)
    _sign_in(client, person.email, person.password)
    token = _session_cookie(client)
    assert client.post("/signout").status_code == 403
    assert client.get("/api/v1/me").status_code == 200
    page = client.get("/signin")
    done = client.post("/signout", data={"csrf_token": _token(page.text)})
    assert done.status_code == 303 and done.headers["Location"] == "/signin"
    assert _session_cookie(client) is None
    # The old cookie, sent again, opens nothing: the session itself ended.
    client.set_cookie(SESSION_COOKIE, token or "", secure=True)
    assert client.get("/api/v1/me").status_code == 401
