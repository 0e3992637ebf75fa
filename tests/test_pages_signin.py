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
from playwright.sync_api import Page, expect

from app.clock import FrozenClock
from app.pages.returns import DEFAULT_RETURN, RETURN_PREFIXES, allowed_return_path
from tests.helpers import (
    TOTP_START,
    assert_accessible,
    authenticator_credentials,
    baseline_consent,
    enable_totp,
    publish_policy,
    register,
    register_passkey_in_page,
    set_user_verified,
    sign_in_browser,
    virtual_authenticator,
    without_passkey_autofill,
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


def test_a_sign_in_that_owes_consent_goes_to_the_consent_step(
    app: Any, client: FlaskClient, mailbox, sms, clock: FrozenClock
):
    person, _ = register(client, mailbox, sms)
    clock.advance(minutes=1)
    publish_policy(
        app, version="2026-12", effective_at=clock.now(), material=True, changes="New purposes."
    )
    clock.advance(minutes=1)
    done = _sign_in(client, person.email, person.password, "/privacy")
    assert done.status_code == 303
    assert done.headers["Location"] == "/consent?next=%2Fprivacy"
    # The session exists, limited to the consent step.
    assert _session_cookie(client)
    assert client.get("/api/v1/me").status_code == 403


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


# -- in a browser ----------------------------------------------------------------------

PASSKEY_CONSENT = baseline_consent(device_biometrics="granted")


def _account(live_server: Any, mailbox: Any, sms: Any, **kw: Any) -> tuple[Any, dict[str, Any]]:
    """An account registered through the API, with no session in the browser."""
    api = live_server.app.test_client()
    api.environ_base["wsgi.url_scheme"] = "https"
    return register(api, mailbox, sms, **kw)


def _csrf_header(page: Page) -> dict[str, str]:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    return {"X-CSRF-Token": token or ""}


def _sign_out(page: Page) -> None:
    page.get_by_role("button", name=re.compile("Sign out|退出")).click()
    expect(page).to_have_url(re.compile(r":\d+/signin$"))
    assert page.request.get("/api/v1/me").status == 401


def _current_acr(page: Page) -> str:
    sessions = page.request.get("/api/v1/me/sessions").json()["sessions"]
    return next(s["acr"] for s in sessions if s["current"])


@pytest.mark.browser
def test_browser_password_sign_in_returns_to_next_and_signs_out(
    page: Page, live_server: Any, mailbox: Any, sms: Any
):
    person, _ = _account(live_server, mailbox, sms)
    page.goto("/signin?next=/policies")
    assert_accessible(page)
    page.get_by_label("Email or phone number").fill(person.email)
    page.get_by_label("Password").fill("wrong-password-here")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#form-error")).to_have_text("The sign-in details are not correct.")
    assert_accessible(page)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r":\d+/policies$"))
    assert page.request.get("/api/v1/me").status == 200
    _sign_out(page)


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_browser_sign_in_in_chinese_ignores_an_off_site_next(
    page: Page, live_server: Any, mailbox: Any, sms: Any, browser_locale: str
):
    person, _ = _account(live_server, mailbox, sms)
    page.goto("/signin?next=https://evil.example/")
    expect(page.get_by_role("heading", level=1)).to_have_text("登录")
    expect(page.get_by_role("button", name="使用通行密钥登录")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("邮箱或手机号码").fill(person.phone)
    page.get_by_label("密码").fill(person.password)
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page).to_have_url(re.compile(r"^http://localhost:\d+/account$"))


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_browser_sms_sign_in(
    page: Page, live_server: Any, mailbox: Any, sms: Any, browser_locale: str
):
    person, _ = _account(live_server, mailbox, sms)
    page.goto("/signin?next=/policies")
    page.get_by_role("link", name="使用短信验证码登录").click()
    assert_accessible(page)
    page.get_by_label("手机号码").fill(person.phone)
    page.get_by_role("button", name="发送验证码").click()
    expect(page.get_by_role("status")).to_contain_text(person.phone)
    page.get_by_label("短信中的验证码").fill("000000")
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page.locator("#code-error")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("短信中的验证码").fill(sms.last_code(person.phone, 2))
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page).to_have_url(re.compile(r":\d+/policies$"))
    assert page.request.get("/api/v1/me").status == 200


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_browser_second_factor_with_totp_then_step_up(
    page: Page, live_server: Any, mailbox: Any, sms: Any, clock: FrozenClock, browser_locale: str
):
    person, session = _account(live_server, mailbox, sms)
    api = live_server.app.test_client()
    totp, _ = enable_totp(api, session, at=clock.now())
    clock.advance(seconds=30)
    page.goto("/signin?next=/policies")
    page.get_by_label("邮箱或手机号码").fill(person.email)
    page.get_by_label("密码").fill(person.password)
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("确认是您本人")
    assert_accessible(page)
    page.get_by_label("六位数验证码").fill("123456")
    page.get_by_role("button", name="继续").click()
    expect(page.locator("#totp-error")).to_be_visible()
    page.get_by_label("六位数验证码").fill(totp.at(clock.now()))
    page.get_by_role("button", name="继续").click()
    expect(page).to_have_url(re.compile(r":\d+/policies$"))
    assert _current_acr(page) == "urn:privid:acr:multi-factor"
    # Later, an action that needs a fresh sign-in sends the person to step up.
    clock.advance(minutes=2)
    page.goto("/step-up?next=/policies&acr=urn:privid:acr:multi-factor")
    expect(page.get_by_role("heading", level=1)).to_have_text("确认是您本人")
    assert_accessible(page)
    page.get_by_label("密码").fill(person.password)
    page.get_by_label("身份验证器应用中的验证码").fill(totp.at(clock.now()))
    page.get_by_role("button", name="继续").click()
    expect(page).to_have_url(re.compile(r":\d+/policies$"))


@pytest.mark.browser
def test_browser_passkey_from_the_username_autofill(
    page: Page, live_server: Any, mailbox: Any, sms: Any
):
    virtual_authenticator(page)
    sign_in_browser(page, mailbox, sms, consent=PASSKEY_CONSENT)
    assert register_passkey_in_page(page)["status"] == 201
    page.context.clear_cookies()  # a new browser session, nobody signed in
    # Chromium's virtual authenticator answers a conditional (autofill)
    # request by itself, as if the person picked the passkey: no click here.
    page.goto("/signin?next=/policies")
    expect(page).to_have_url(re.compile(r":\d+/policies$"))
    assert _current_acr(page) == "urn:privid:acr:phishing-resistant"


@pytest.mark.browser
def test_browser_passkey_button_then_remove_and_register_again(
    page: Page, live_server: Any, mailbox: Any, sms: Any
):
    without_passkey_autofill(page)
    authenticator = virtual_authenticator(page)
    sign_in_browser(page, mailbox, sms, consent=PASSKEY_CONSENT)
    first = register_passkey_in_page(page)
    assert first["status"] == 201
    _sign_out(page)
    page.goto("/signin?next=/policies")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url(re.compile(r":\d+/policies$"))
    assert _current_acr(page) == "urn:privid:acr:phishing-resistant"
    # Removed (the passkey sign-in was just now) and made again on the same device.
    removed = page.request.delete(
        f"/api/v1/me/credentials/{first['data']['id']}", headers=_csrf_header(page)
    )
    assert removed.status == 204
    second = register_passkey_in_page(page)
    assert second["status"] == 201 and second["data"]["id"] != first["data"]["id"]
    # The device keeps one passkey per account: the new one replaced the old.
    assert len(authenticator_credentials(page, authenticator)) == 1
    _sign_out(page)
    page.goto("/signin?next=/privacy")
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page).to_have_url(re.compile(r":\d+/privacy$"))


@pytest.mark.browser
def test_browser_an_authenticator_without_resident_keys_cannot_make_a_passkey(
    page: Page, live_server: Any, mailbox: Any, sms: Any
):
    without_passkey_autofill(page)
    virtual_authenticator(page, resident_key=False)
    person = sign_in_browser(page, mailbox, sms, consent=PASSKEY_CONSENT)
    # The options require a resident key: the browser refuses before anything
    # reaches the server (were it to answer rk=false, the API refuses it too).
    refused = register_passkey_in_page(page)
    assert refused == {"ok": False, "status": 0, "error": "NotAllowedError"}
    assert page.request.get("/api/v1/me/credentials").json()["credentials"] == []
    _sign_out(page)
    # Sign-in asks for no username, so typing one first changes nothing: the
    # device has no passkey to offer, and the page says so.
    page.goto("/signin")
    page.get_by_label("Email or phone number").fill(person.email)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("#passkey-error")).to_contain_text("The passkey check did not finish")
    assert page.request.get("/api/v1/me").status == 401


@pytest.mark.browser
def test_browser_step_up_by_passkey_needs_user_verification(
    page: Page, live_server: Any, mailbox: Any, sms: Any, clock: FrozenClock
):
    without_passkey_autofill(page)
    authenticator = virtual_authenticator(page)
    sign_in_browser(page, mailbox, sms, consent=PASSKEY_CONSENT)
    credential = register_passkey_in_page(page)["data"]["id"]
    clock.advance(minutes=6)  # older than removing a passkey allows
    remove = f"/api/v1/me/credentials/{credential}"
    assert page.request.delete(remove, headers=_csrf_header(page)).status == 401
    page.goto("/step-up?next=/policies&acr=urn:privid:acr:phishing-resistant")
    assert_accessible(page)
    # Only a passkey reaches this level: no password form.
    expect(page.get_by_label("Password")).to_have_count(0)
    set_user_verified(page, authenticator, False)
    page.get_by_role("button", name="Confirm with a passkey").click()
    # Chromium refuses an assertion its authenticator could not verify (the
    # server never sees it); the page says what may have gone wrong.
    expect(page.locator("#step-up-passkey-error")).to_contain_text(
        "your device could not confirm it is you"
    )
    assert _current_acr(page) == "urn:privid:acr:single-factor"
    set_user_verified(page, authenticator, True)
    page.get_by_role("button", name="Confirm with a passkey").click()
    expect(page).to_have_url(re.compile(r":\d+/policies$"))
    assert _current_acr(page) == "urn:privid:acr:phishing-resistant"
    assert page.request.delete(remove, headers=_csrf_header(page)).status == 204


@pytest.mark.browser
def test_browser_password_sign_in_works_without_javascript(
    browser: Any, live_server: Any, mailbox: Any, sms: Any
):
    person, _ = _account(live_server, mailbox, sms)
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/signin?next=/policies")
        page.get_by_label("Email or phone number").fill(person.email)
        page.get_by_label("Password").fill(person.password)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(re.compile(r":\d+/policies$"))
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r":\d+/signin$"))
        assert page.request.get("/api/v1/me").status == 401
    finally:
        context.close()


@pytest.mark.browser
def test_browser_second_factor_by_email_code_after_a_device_was_bound(
    page: Page, live_server: Any, mailbox: Any, sms: Any
):
    without_passkey_autofill(page)
    virtual_authenticator(page)
    consent = baseline_consent(device_biometrics="granted", security="granted")
    person = sign_in_browser(page, mailbox, sms, consent=consent)
    # A passkey on this device binds it: a password alone no longer signs in.
    assert register_passkey_in_page(page)["status"] == 201
    _sign_out(page)
    page.goto("/signin?next=/policies")
    page.get_by_label("Email or phone number").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")
    assert page.get_by_label("Six-digit code").count() == 0
    mails_before = len(mailbox.to(person.email))
    page.get_by_role("button", name="Email me a code").click()
    expect(page.get_by_role("status")).to_have_text(
        "A code is on its way to your account's email address."
    )
    assert_accessible(page)
    page.get_by_label("Code from the email").fill(mailbox.last_code(person.email, mails_before + 1))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r":\d+/policies$"))
    assert page.request.get("/api/v1/me").status == 200
