"""The account pages: overview, profile (email, phone, name by code),
security (password, TOTP, recovery codes), passkeys, devices and sessions,
through a browser where it matters and the test client where it does not."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest
import requests
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from app.clock import FrozenClock, SystemClock
from tests.helpers import (
    ANDROID_CHROME,
    assert_accessible,
    authenticator_credentials,
    baseline_consent,
    bearer,
    login,
    new_person,
    passkey_sign_in,
    register,
    sign_in_browser,
    virtual_authenticator,
)
from tests.helpers import account_csrf as csrf_of
from tests.helpers import account_form as form
from tests.soft_authenticator import SoftAuthenticator

NEW_PASSWORD = "quartz-lantern-meadow-77"


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> SystemClock | FrozenClock:
    """The system clock, or (parametrized "frozen", test-client tests only) a
    frozen one the test moves past a step-up's age."""
    if getattr(request, "param", None) == "frozen":
        frozen: FrozenClock = request.getfixturevalue("frozen_clock")
        return frozen
    return SystemClock()


def _signed_in(client: FlaskClient, mailbox: Any, sms: Any, **consent: str) -> Any:
    person, _ = register(
        client, mailbox, sms, token_delivery="cookie", consent=baseline_consent(**consent)
    )
    return person


def _stay_active_for(client: FlaskClient, clock: FrozenClock, minutes: int) -> None:
    """Time passes while the person keeps using the site (no idle time-out)."""
    for _ in range(minutes // 20):
        clock.advance(minutes=20)
        assert client.get("/account").status_code == 200


# -- without a browser ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/account",
        "/account/profile",
        "/account/profile/email",
        "/account/security",
        "/account/security/totp",
        "/account/passkeys",
        "/account/devices",
        "/account/sessions",
    ],
)
def test_account_pages_send_strangers_to_sign_in_and_back(client: FlaskClient, path: str):
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["Location"] == "/signin?next=" + path.replace("/", "%2F")


def test_overview_shows_the_name_and_masked_contacts(client, mailbox, sms):
    person = _signed_in(client, mailbox, sms)
    page = client.get("/account").get_data(as_text=True)
    assert person.full_name in page
    assert person.email not in page and person.phone not in page
    assert f"{person.email[0]}•••@example.com" in page
    assert person.phone[-4:] in page
    for section in ("/account/profile", "/account/security", "/account/sessions"):
        assert f'href="{section}"' in page


def test_email_change_by_code_with_wrong_password_and_wrong_code_first(client, mailbox, sms):
    person = _signed_in(client, mailbox, sms)
    new_email = new_person().email
    token = csrf_of(client, "/account/profile/email")
    wrong = client.post(
        "/account/profile/email",
        data={"csrf_token": token, "email": new_email, "current_password": "not-it"},
    )
    assert wrong.status_code == 200
    text = wrong.get_data(as_text=True)
    assert "The current password is not correct." in text
    assert new_email in text  # what they typed stays in the form
    started = client.post(
        "/account/profile/email",
        data={"csrf_token": token, "email": new_email, "current_password": person.password},
    )
    assert started.status_code == 303
    assert started.headers["Location"] == "/account/profile/email/confirm"
    code = mailbox.last_code(new_email)
    wrong_code = "000000" if code != "000000" else "111111"
    refused = form(client, "/account/profile/email/confirm", code=wrong_code)
    assert refused.status_code == 200
    assert "The code is wrong, expired or already used" in refused.get_data(as_text=True)
    done = form(client, "/account/profile/email/confirm", code=code)
    assert done.status_code == 303
    assert done.headers["Location"] == "/account/profile?done=email"
    replayed = form(client, "/account/profile/email/confirm", code=code)
    assert "The code is wrong, expired or already used" in replayed.get_data(as_text=True)
    page = client.get("/account/profile?done=email").get_data(as_text=True)
    assert "Your email address has been changed." in page
    assert login(client, new_email, person.password, "bearer").status_code == 200


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(client, mailbox, sms):
    person = _signed_in(client, mailbox, sms)
    refused = client.post(
        "/account/profile/name", data={"full_name": "Mallory", "current_password": person.password}
    )
    assert refused.status_code == 403
    assert "This form has expired" in refused.get_data(as_text=True)
    assert person.full_name in client.get("/account").get_data(as_text=True)
    forged = client.post("/account/sessions/revoke-others", data={"csrf_token": "0" * 64})
    assert forged.status_code == 403


def test_name_change_checks_the_password_and_the_apis_bounds(client, mailbox, sms):
    person = _signed_in(client, mailbox, sms)
    too_long = form(
        client, "/account/profile/name", full_name="x" * 401, current_password=person.password
    )
    assert too_long.status_code == 200
    assert "at most 400 characters" in too_long.get_data(as_text=True)
    done = form(
        client, "/account/profile/name", full_name="Ada Lovelace", current_password=person.password
    )
    assert done.headers["Location"] == "/account/profile?done=name"
    assert "Ada Lovelace" in client.get("/account").get_data(as_text=True)


def test_name_change_left_without_the_password_changes_nothing(client, mailbox, sms):
    person = _signed_in(client, mailbox, sms)
    page = client.get("/account/profile/name").get_data(as_text=True)
    assert 'name="current_password"' in page
    refused = form(client, "/account/profile/name", full_name="Mallory")
    assert refused.status_code == 200
    assert "The current password is not correct." in refused.get_data(as_text=True)
    assert person.full_name in client.get("/account").get_data(as_text=True)


@pytest.mark.parametrize("clock", ["frozen"], indirect=True)
@pytest.mark.parametrize(
    ("path", "acr"),
    [
        ("/account/profile/email", "urn:privid:acr:single-factor"),
        ("/account/profile/phone", None),
        ("/account/security/password", None),
        ("/account/security/totp", None),
    ],
)
def test_an_old_sign_in_is_sent_to_step_up_and_back_to_the_form(
    client, mailbox, sms, clock, path: str, acr: str | None
):
    _signed_in(client, mailbox, sms)
    assert client.get(path).status_code == 200
    _stay_active_for(client, clock, minutes=80)
    response = client.get(path)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/step-up?next=" + path.replace("/", "%2F"))
    assert "acr=" in location
    if acr is not None:
        assert acr in location.replace("%3A", ":")


@pytest.mark.parametrize("clock", ["frozen"], indirect=True)
def test_turning_totp_off_after_a_while_asks_for_a_step_up_and_keeps_it_on(
    client, mailbox, sms, clock
):
    _signed_in(client, mailbox, sms)
    enrolled = csrf_of(client, "/account/security/totp")
    scan = client.post("/account/security/totp", data={"csrf_token": enrolled})
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', scan.get_data(as_text=True))
    assert secret is not None
    on = form(client, "/account/security/totp/confirm", code=pyotp.TOTP(secret[1]).at(clock.now()))
    assert on.status_code == 200
    clock.advance(minutes=10)
    refused = form(client, "/account/security/totp/off")
    assert refused.status_code == 303
    assert refused.headers["Location"].startswith(
        "/step-up?next=%2Faccount%2Fsecurity%2Ftotp%2Foff"
    )
    assert "Two-step verification with an authenticator app is on." in client.get(
        "/account/security"
    ).get_data(as_text=True)


def test_a_wrong_totp_code_does_not_turn_it_on(client, mailbox, sms):
    _signed_in(client, mailbox, sms)
    token = csrf_of(client, "/account/security/totp")
    client.post("/account/security/totp", data={"csrf_token": token})
    refused = form(client, "/account/security/totp/confirm", code="12345x")
    assert refused.status_code == 400
    assert "Enter the 6-digit code." in refused.get_data(as_text=True)
    assert "Two-step verification is off." in client.get("/account/security").get_data(as_text=True)


def test_someone_elses_session_or_passkey_cannot_be_touched(client, mailbox, sms, app):
    _signed_in(client, mailbox, sms)
    other = app.test_client()
    other.environ_base["wsgi.url_scheme"] = "https"
    _, theirs = register(other, mailbox, sms)
    their_id = other.get("/api/v1/me/sessions", headers=bearer(theirs["token"])).json["sessions"][
        0
    ]["session_id"]
    form(client, f"/account/sessions/{their_id}/revoke")
    assert other.get("/api/v1/me", headers=bearer(theirs["token"])).status_code == 200
    assert client.get(f"/account/passkeys/{their_id}/remove").status_code == 404


# -- in a browser -------------------------------------------------------------------


def _api_login(
    live_server: Any, email: str, password: str, user_agent: str = ""
) -> requests.Response:
    """Another sign-in of the same person (an app, a second browser)."""
    return requests.post(
        f"{live_server.url}/api/v1/login/password",
        json={"identifier": email, "password": password, "token_delivery": "bearer"},
        headers={"User-Agent": user_agent} if user_agent else {},
        timeout=10,
    )


def _me(live_server: Any, token: str) -> int:
    return requests.get(
        f"{live_server.url}/api/v1/me", headers=bearer(token), timeout=10
    ).status_code


@pytest.mark.browser
def test_email_and_phone_change_with_the_codes_sent(page: Page, mailbox, sms):
    person = sign_in_browser(page, mailbox, sms)
    page.goto("/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("My account")
    assert_accessible(page)
    page.get_by_role("link", name="Change your email, mobile number or name").click()
    assert_accessible(page)
    page.get_by_role("link", name="Change email").click()
    new = new_person()
    page.get_by_label("New email address").fill(new.email)
    page.get_by_label("Current password").fill(person.password)
    assert_accessible(page)
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your new email address")
    page.get_by_label("Code").fill(mailbox.last_code(new.email))
    assert_accessible(page)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_have_text("Your email address has been changed.")
    expect(page.locator("main")).to_contain_text(f"{new.email[0]}•••@example.com")

    page.get_by_role("link", name="Change mobile number").click()
    page.get_by_label("New mobile number").fill(new.phone)
    page.get_by_label("Current password").fill("wrong password")
    page.get_by_role("button", name="Send code").click()
    # The error sits next to the field it is about, and the number typed stays.
    expect(page.locator("#current_password-error")).to_have_text(
        "The current password is not correct."
    )
    expect(page.get_by_label("New mobile number")).to_have_value(new.phone)
    assert_accessible(page)
    page.get_by_label("Current password").fill(person.password)
    page.get_by_role("button", name="Send code").click()
    page.get_by_label("Code").fill(sms.last_code(new.phone))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_have_text("Your mobile number has been changed.")
    expect(page.locator("main")).to_contain_text(new.phone[-4:])


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_name_change_in_chinese(page: Page, mailbox, sms, browser_locale: str):
    person = sign_in_browser(page, mailbox, sms)
    page.goto("/account/profile/name")
    expect(page.get_by_role("heading", level=1)).to_have_text("更改姓名")
    page.get_by_label("姓名").fill("王小明")
    page.get_by_label("当前密码").fill(person.password)
    assert_accessible(page)
    page.get_by_role("button", name="保存姓名").click()
    expect(page.get_by_role("status")).to_have_text("您的姓名已更改。")
    page.goto("/account")
    expect(page.locator("main")).to_contain_text("王小明")
    assert_accessible(page)


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_every_account_section_speaks_chinese_and_is_accessible(
    page: Page, mailbox, sms, browser_locale: str
):
    sign_in_browser(page, mailbox, sms, consent=baseline_consent(security="granted"))
    for path, heading in [
        ("/account", "我的账户"),
        ("/account/profile", "个人资料"),
        ("/account/security", "安全"),
        ("/account/security/password", "更改密码"),
        ("/account/security/totp", "设置两步验证"),
        ("/account/passkeys", "通行密钥"),
        ("/account/devices", "设备"),
        ("/account/sessions", "会话"),
    ]:
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        assert_accessible(page)


@pytest.mark.browser
def test_password_change_ends_other_sessions_and_the_old_password(
    page: Page, live_server, mailbox, sms
):
    person = sign_in_browser(page, mailbox, sms)
    other = _api_login(live_server, person.email, person.password)
    assert other.status_code == 200, other.text
    other_token = other.json()["token"]
    page.goto("/account/security")
    page.get_by_role("link", name="Change password").click()
    expect(page.locator("main")).to_contain_text(
        "every other session on your account is signed out"
    )
    page.get_by_label("Current password").fill(person.password)
    page.get_by_label("New password").fill("short")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#new_password-error")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Current password").fill(person.password)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").first).to_have_text("Your password has been changed.")
    expect(page.locator("main")).to_contain_text("Other sessions signed out: 1.")
    assert _me(live_server, other_token) == 401
    assert _api_login(live_server, person.email, person.password).status_code == 401
    assert _api_login(live_server, person.email, NEW_PASSWORD).status_code == 200
    page.goto("/account")  # this browser stays signed in
    expect(page.get_by_role("heading", level=1)).to_have_text("My account")


@pytest.mark.browser
def test_totp_enrol_from_the_qr_page_recovery_codes_then_off(page: Page, mailbox, sms):
    person = sign_in_browser(page, mailbox, sms)
    page.goto("/account/security")
    page.get_by_role("link", name="Set up an authenticator app").click()
    page.get_by_role("button", name="Start set-up").click()
    qr = page.get_by_role("img", name=re.compile("QR code for your authenticator app"))
    expect(qr).to_be_visible()
    assert (qr.bounding_box() or {}).get("width", 0) > 50
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml;base64,")
    secret = page.locator("#totp-secret").inner_text()
    assert_accessible(page)
    totp = pyotp.TOTP(secret)
    page.get_by_label("6-digit code from the app").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    codes = page.locator(".recovery-codes li")
    expect(codes).to_have_count(10)
    assert_accessible(page)
    page.get_by_role("link", name="I have saved them").click()
    expect(page.locator("main")).to_contain_text("Recovery codes left: 10.")
    # Turning it off needs every factor the account now has: step up with
    # both (the JSON API's step-up, as the step-up page will).
    raised = page.request.post(
        "/api/v1/me/step-up",
        data={"password": person.password, "totp_code": totp.at(time.time() + 30)},
        headers={"X-CSRF-Token": page.locator('meta[name="csrf-token"]').get_attribute("content")},
    )
    assert raised.status == 200, raised.text()
    page.goto("/account/security")
    page.get_by_role("link", name="Turn two-step verification off").click()
    assert_accessible(page)
    page.get_by_role("button", name="Turn off").click()
    expect(page.get_by_role("status")).to_have_text("Two-step verification is off.")


@pytest.mark.browser
def test_passkey_add_shows_its_kind_then_rename_and_remove(page: Page, mailbox, sms):
    sign_in_browser(page, mailbox, sms, consent=baseline_consent(device_biometrics="granted"))
    authenticator = virtual_authenticator(page)
    page.goto("/account/passkeys")
    expect(page.locator("main")).to_contain_text("You have no passkeys yet.")
    page.get_by_label("Name for the new passkey").fill("Laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("status")).to_have_text("The passkey has been added.")
    assert len(authenticator_credentials(page, authenticator)) == 1
    listed = page.request.get("/api/v1/me/credentials").json()["credentials"]
    assert [c["nickname"] for c in listed] == ["Laptop"]
    expected = "Synced passkey" if listed[0]["kind"] == "synced passkey" else "Bound to one device"
    section = page.locator("section.passkey", has=page.get_by_role("heading", name="Laptop"))
    expect(section.locator(".passkey-kind")).to_have_text(expected)
    assert_accessible(page)
    page.get_by_label("New name for Laptop").fill("Work laptop")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", name="Work laptop")).to_be_visible()
    page.get_by_role("link", name="Remove Work laptop").click()
    assert_accessible(page)
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status")).to_have_text("The passkey has been removed.")
    expect(page.locator("main")).to_contain_text("You have no passkeys yet.")


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_passkeys_need_the_biometrics_purpose(page: Page, mailbox, sms, browser_locale: str):
    sign_in_browser(page, mailbox, sms)  # device_biometrics refused
    virtual_authenticator(page)
    page.goto("/account/passkeys")
    page.get_by_role("button", name="添加通行密钥").click()
    expect(page.locator("#passkey-add-error")).to_contain_text("设备生物识别")


@pytest.mark.browser
def test_sessions_listed_one_revoked_then_everywhere_else(page: Page, live_server, mailbox, sms):
    person = sign_in_browser(page, mailbox, sms)
    tokens = [
        _api_login(live_server, person.email, person.password).json()["token"] for _ in range(2)
    ]
    page.goto("/account/sessions")
    expect(page.locator("section.session")).to_have_count(3)
    expect(page.locator("section.session-current")).to_contain_text("This session")
    assert_accessible(page)
    page.get_by_role("button", name="Sign out this session").first.click()
    expect(page.get_by_role("status")).to_have_text("The session has been signed out.")
    expect(page.locator("section.session")).to_have_count(2)
    assert sorted(_me(live_server, t) for t in tokens) == [200, 401]
    page.get_by_role("button", name="Sign out everywhere else").click()
    expect(page.get_by_role("status")).to_have_text("Every other session has been signed out.")
    expect(page.locator("section.session")).to_have_count(1)
    assert [_me(live_server, t) for t in tokens] == [401, 401]


@pytest.mark.browser
def test_devices_listed_renamed_and_revoked(page: Page, live_server, mailbox, sms):
    person = sign_in_browser(page, mailbox, sms, consent=baseline_consent(security="granted"))
    phone = _api_login(live_server, person.email, person.password, ANDROID_CHROME)
    assert phone.status_code == 200, phone.text
    page.goto("/account/devices")
    devices = page.locator("section.device")
    expect(devices.first).to_be_visible()
    count = devices.count()
    assert_accessible(page)
    other = page.locator("section.device", has_not=page.locator(".badge-current")).first
    other.get_by_role("textbox").fill("My phone")
    other.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("status")).to_have_text("The device has been renamed.")
    page.get_by_role("link", name="Revoke My phone").click()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_have_text("The device has been revoked.")
    expect(page.locator("section.device")).to_have_count(count - 1)
    assert _me(live_server, phone.json()["token"]) == 401


def _add_passkey(client: FlaskClient, authenticator: SoftAuthenticator, nickname: str) -> Any:
    """A passkey made from this cookie session, through the JSON API as passkeys.js does."""
    token = {"X-CSRF-Token": csrf_of(client)}
    options = client.post("/api/v1/webauthn/registration/options", headers=token)
    assert options.status_code == 200, options.json
    made = client.post(
        "/api/v1/webauthn/registration/verify",
        json={
            **authenticator.create(options.json),
            "challenge_id": options.json["challenge_id"],
            "nickname": nickname,
        },
        headers=token,
    )
    assert made.status_code == 201, made.json
    return made


def test_a_possibly_cloned_passkey_is_listed_with_why_it_is_blocked(client, mailbox, sms, app):
    _signed_in(client, mailbox, sms, device_biometrics="granted")
    authenticator = SoftAuthenticator()
    _add_passkey(client, authenticator, "Desk key")
    elsewhere = app.test_client()
    elsewhere.environ_base["wsgi.url_scheme"] = "https"
    assert passkey_sign_in(elsewhere, authenticator)[0].status_code == 200
    authenticator.credentials[0].sign_count -= 1  # a copy whose counter lags behind
    assert passkey_sign_in(elsewhere, authenticator)[0].status_code == 401
    listed = client.get("/account/passkeys").get_data(as_text=True)
    assert "Desk key" in listed and "Bound to one device" in listed
    assert "its use counter went backwards" in listed


@pytest.mark.parametrize("clock", ["frozen"], indirect=True)
def test_a_synced_passkey_is_listed_as_synced_and_removing_it_later_needs_a_step_up(
    client, mailbox, sms, clock
):
    _signed_in(client, mailbox, sms, device_biometrics="granted")
    authenticator = SoftAuthenticator(backup_eligible=True, backed_up=True)
    made = _add_passkey(client, authenticator, "Cloud key")
    listed = client.get("/account/passkeys").get_data(as_text=True)
    assert "Cloud key" in listed and "Synced passkey" in listed
    assert "Bound to one device" not in listed
    clock.advance(minutes=6)
    removing = form(client, f"/account/passkeys/{made.json['id']}/remove")
    assert removing.status_code == 303
    assert removing.headers["Location"].startswith(
        "/step-up?next=" + f"/account/passkeys/{made.json['id']}/remove".replace("/", "%2F")
    )
    assert "Cloud key" in client.get("/account/passkeys").get_data(as_text=True)


@pytest.mark.browser
def test_adding_a_passkey_after_a_while_goes_to_step_up(page: Page, mailbox, sms):
    sign_in_browser(page, mailbox, sms, consent=baseline_consent(device_biometrics="granted"))
    virtual_authenticator(page)
    # The API's answer for a sign-in too old to add a passkey (RFC 9470).
    page.route(
        "**/api/v1/webauthn/registration/options",
        lambda route: route.fulfill(
            status=401,
            content_type="application/problem+json",
            body='{"type": "https://privid.dev/problems/insufficient-user-authentication",'
            ' "status": 401, "title": "Sign in again"}',
        ),
    )
    page.goto("/account/passkeys")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page).to_have_url(re.compile(r"/step-up\?next=%2Faccount%2Fpasskeys$"))


def test_revoking_this_device_signs_this_browser_out(client, mailbox, sms, settings):
    _signed_in(client, mailbox, sms, security="granted")
    listed = client.get("/account/devices").get_data(as_text=True)
    current = re.search(
        r'id="device-([0-9a-f-]{36})">[^<]*<span class="badge badge-current">', listed
    )
    assert current is not None
    revoked = form(client, f"/account/devices/{current[1]}/revoke")
    assert revoked.status_code == 303 and revoked.headers["Location"] == "/signin"
    cleared = [c for c in revoked.headers.getlist("Set-Cookie") if settings.device_cookie_name in c]
    assert cleared and "Max-Age=0" in cleared[0]
    assert client.get("/account").headers["Location"] == "/signin?next=%2Faccount"


@pytest.mark.parametrize("settings_overrides", [{"limit_code_send_per_destination": "1/hour"}])
def test_codes_to_a_new_address_are_limited_as_in_the_api(client, mailbox, sms):
    person = _signed_in(client, mailbox, sms)
    new_email = new_person().email
    fields = {"email": new_email, "current_password": person.password}
    assert form(client, "/account/profile/email", **fields).status_code == 303
    again = form(client, "/account/profile/email", **fields)
    assert again.status_code == 429
    assert "Too many requests" in again.get_data(as_text=True)
    assert form(client, "/account/profile/email", **fields).status_code == 429
