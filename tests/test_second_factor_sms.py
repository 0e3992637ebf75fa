"""The new-device check for accounts without an email address (made through
WeChat): once such an account has a bound device, a single-factor sign-in from
another one is confirmed by an SMS code to its verified phone, over the JSON
API and on the sign-in pages; an account with email keeps the email code."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.dpop_client import DpopKey
from tests.helpers import (
    APP_UA,
    HIGH_LIMITS,
    POLICY_VERSION,
    WINDOWS_FIREFOX,
    ask_challenge,
    assert_problem,
    bearer,
    bind,
    login,
    other_browser,
    register,
    row_count,
)
from tests.wechat_helpers import (
    app_login,
    fake_wechat,
    wechat,
    wechat_account,
    wechat_settings,
)

__all__ = ["fake_wechat", "wechat"]  # fixtures

PASSWORD = "quiet-harbour-lantern-77"
SECOND_FACTOR = "/api/v1/login/second-factor"
SEND_SMS = "/api/v1/login/second-factor/sms"
SEND_EMAIL = "/api/v1/login/second-factor/email"
SINGLE = "urn:privid:acr:single-factor"


@pytest.fixture
def settings_overrides(fake_wechat) -> dict[str, object]:
    # Many sign-ins from one address: the per-IP limits are not under test here.
    return {**wechat_settings(fake_wechat.url), **HIGH_LIMITS}


def bound_account_without_email(app, client: FlaskClient, sms, wechat, clock) -> str:
    """An account made through WeChat that added a password and bound its
    phone app's key: its phone number."""
    phone, token = wechat_account(client, sms, wechat)
    granted = client.post(
        "/api/v1/me/consent/security/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert granted.status_code < 300, granted.json
    added = client.post(
        "/api/v1/me/password/new", json={"new_password": PASSWORD}, headers=bearer(token)
    )
    assert added.status_code == 204, added.json
    # The app signs in (no bound device yet: no step-up) and binds its key.
    phone_app = other_browser(app, APP_UA)
    signed_in = login(phone_app, phone, PASSWORD)
    assert signed_in.status_code == 200, signed_in.json
    app_token = signed_in.json["token"]
    challenge = ask_challenge(phone_app, bearer(app_token))
    bound = bind(phone_app, app_token, DpopKey(), clock, challenge)
    assert bound.status_code == 201, bound.json
    return phone


def sms_code_after(sms, phone: str, earlier: int) -> str:
    """The code in the SMS that follows the ``earlier`` ones to this phone."""
    return str(sms.last_code(phone, earlier + 1))


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# -- the JSON API --------------------------------------------------------------------


def test_a_password_sign_in_from_an_unbound_device_needs_an_sms_code(
    app, client: FlaskClient, sms, wechat, clock
):
    phone = bound_account_without_email(app, client, sms, wechat, clock)
    laptop = other_browser(app, WINDOWS_FIREFOX)
    sessions_before = row_count(app, "sessions")
    first = login(laptop, phone, PASSWORD)
    assert first.status_code == 202, first.json
    assert first.json["methods"] == ["sms_code"]
    assert "token" not in first.json
    ticket = first.json["ticket"]
    # Nothing goes out until asked, and not to a mailbox the account lacks.
    assert_problem(laptop.post(SEND_EMAIL, json={"ticket": ticket}), 422, "validation-error")

    earlier = len(sms.to(phone))
    sent = laptop.post(SEND_SMS, json={"ticket": ticket})
    assert sent.status_code == 202, sent.json
    code = sms_code_after(sms, phone, earlier)
    assert "not bound to" in sms.to(phone)[-1]["text"]

    # An email code field is no way around it.
    by_email = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "email_code": code})
    assert_problem(by_email, 400, "invalid-code")
    wrong = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "sms_code": other_code(code)})
    assert_problem(wrong, 400, "invalid-code")
    assert row_count(app, "sessions") == sessions_before
    # Both refusals are audited as failed SMS-code attempts.
    failed = "event_type = 'login.failed' AND CAST(details AS TEXT) LIKE '%sms_code%'"
    assert row_count(app, "audit_events", failed) == 2

    done = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "sms_code": code})
    assert done.status_code == 200, done.json
    # The phone can reset the password too: confirmed, still single-factor.
    assert (done.json["acr"], done.json["amr"]) == (SINGLE, ["pwd", "sms"])
    assert laptop.get("/api/v1/me", headers=bearer(done.json["token"])).status_code == 200
    replay = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "sms_code": code})
    assert_problem(replay, 401, "mfa-ticket-invalid")


def test_a_wechat_sign_in_from_an_unbound_device_needs_the_sms_code_too(
    app, client: FlaskClient, sms, wechat, clock
):
    phone = bound_account_without_email(app, client, sms, wechat, clock)
    tablet = other_browser(app, WINDOWS_FIREFOX)
    first = app_login(tablet, wechat)
    assert first.status_code == 202, first.json
    assert first.json["status"] == "second_factor_required"
    assert first.json["methods"] == ["sms_code"]
    earlier = len(sms.to(phone))
    assert tablet.post(SEND_SMS, json={"ticket": first.json["ticket"]}).status_code == 202
    body = {"ticket": first.json["ticket"], "sms_code": sms_code_after(sms, phone, earlier)}
    done = tablet.post(SECOND_FACTOR, json=body)
    assert done.status_code == 200, done.json
    assert done.json["amr"] == ["fed", "sms"]


def test_the_sms_code_keeps_the_code_attempt_limit(
    app, client: FlaskClient, sms, wechat, clock, settings
):
    phone = bound_account_without_email(app, client, sms, wechat, clock)
    laptop = other_browser(app, WINDOWS_FIREFOX)
    ticket = login(laptop, phone, PASSWORD).json["ticket"]
    earlier = len(sms.to(phone))
    assert laptop.post(SEND_SMS, json={"ticket": ticket}).status_code == 202
    code = sms_code_after(sms, phone, earlier)
    for _ in range(settings.code_max_attempts):
        guess = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "sms_code": other_code(code)})
        assert guess.status_code in (400, 429), guess.json
    spent = laptop.post(SECOND_FACTOR, json={"ticket": ticket, "sms_code": code})
    assert spent.status_code in (400, 429), spent.json
    # A resend within the cooldown is refused: no flood of texts.
    assert_problem(laptop.post(SEND_SMS, json={"ticket": ticket}), 429)


def test_an_account_with_email_keeps_the_email_code(app, client: FlaskClient, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    token = session["token"]
    granted = client.post(
        "/api/v1/me/consent/security/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert granted.status_code < 300, granted.json
    phone_app = other_browser(app, APP_UA)
    app_token = login(phone_app, person.email, person.password).json["token"]
    bound = bind(
        phone_app, app_token, DpopKey(), clock, ask_challenge(phone_app, bearer(app_token))
    )
    assert bound.status_code == 201, bound.json
    laptop = other_browser(app, WINDOWS_FIREFOX)
    first = login(laptop, person.phone, person.password)
    assert first.status_code == 202, first.json
    assert first.json["methods"] == ["email_code"]
    earlier = len(sms.to(person.phone))
    assert_problem(laptop.post(SEND_SMS, json={"ticket": first.json["ticket"]}), 422)
    assert len(sms.to(person.phone)) == earlier


# -- the pages -----------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return found.group(1)


def page_sign_in(browser: FlaskClient, identifier: str, password: str) -> Any:
    page = browser.get("/signin?next=/account")
    found = CSRF_RE.search(page.text)
    assert found, "the page has no form token"
    body = {"csrf_token": found.group(1), "identifier": identifier, "password": password}
    return browser.post("/signin", data={**body, "next": hidden(page.text, "next")})


def second_factor_form(html: str) -> dict[str, str]:
    return {
        "csrf_token": hidden(html, "csrf_token"),
        "ticket": hidden(html, "ticket"),
        "methods": hidden(html, "methods"),
        "next": hidden(html, "next"),
    }


@pytest.mark.parametrize(
    ("language", "heading", "sent_text", "button"),
    [
        ("en", "Code by SMS", "A code is on its way to your account", "Send me a code by SMS"),
        ("zh-CN", "短信验证码", "验证码正通过短信发送到您账户的手机号码", "通过短信发送验证码"),
    ],
)
def test_the_sign_in_page_asks_for_the_sms_code(
    app, client: FlaskClient, sms, wechat, clock, language, heading, sent_text, button
):
    phone = bound_account_without_email(app, client, sms, wechat, clock)
    browser = other_browser(app, WINDOWS_FIREFOX)
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    first = page_sign_in(browser, phone, PASSWORD)
    assert first.status_code == 200
    assert heading in first.text and button in first.text
    assert "/signin/second-factor/email" not in first.text
    form = second_factor_form(first.text)
    assert form["methods"] == "sms_code"

    earlier = len(sms.to(phone))
    sent = browser.post("/signin/second-factor/sms", data=form)
    assert sent.status_code == 200
    assert sent_text in sent.text and 'name="sms_code"' in sent.text
    code = sms_code_after(sms, phone, earlier)
    form = second_factor_form(sent.text)
    wrong = browser.post(
        "/signin/second-factor", data={**form, "method": "sms_code", "sms_code": other_code(code)}
    )
    assert wrong.status_code == 400
    assert 'aria-invalid="true"' in wrong.text and 'name="sms_code"' in wrong.text
    done = browser.post(
        "/signin/second-factor", data={**form, "method": "sms_code", "sms_code": code}
    )
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    sessions = browser.get("/api/v1/me/sessions").json["sessions"]
    assert [s["acr"] for s in sessions if s["current"]] == [SINGLE]
