"""The QR-code flow in headless Chromium, from the sign-in page to a signed-in
account, against the fake WeChat: the button, WeChat's page (the fake approves
at once and sends the browser back), the page that creates an account with a
phone and its SMS code, the consent step, the account; then WeChat alone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app.services.purposes import load_catalogue
from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import (
    baseline_consent,
    register_passkey_in_page,
    sign_in_browser,
    virtual_authenticator,
    without_passkey_autofill,
)
from tests.wechat_helpers import fake_wechat, new_person, settings_overrides, wechat

__all__ = ["fake_wechat", "settings_overrides", "wechat"]  # fixtures
REQUIRED = [p.code for p in load_catalogue().decided_at_sign_in() if p.required]


@pytest.mark.browser
def test_qr_sign_in_creates_an_account_and_signs_in_again(page: Page, sms: SmsOutbox, wechat):
    phone = new_person().phone
    page.goto("/signin?next=/account/wechat")
    page.locator("#wechat-button").click()
    # Back from WeChat: nobody has this WeChat account yet.
    expect(page.get_by_role("heading", name="Finish signing in with WeChat")).to_be_visible()
    assert "/signin/wechat/callback" in page.url
    page.get_by_label("Mobile phone number").fill(phone)
    page.get_by_role("button", name="Send code").click()
    page.get_by_label("Code from the SMS").fill(sms.last_code(phone))
    page.get_by_label("Full name (only for a new account)").fill("王小明")
    page.get_by_role("button", name="Continue").click()

    # A new account: the consent step first (wechat_login was granted by signing in).
    expect(page).to_have_url(re.compile(r"/consent\?next=%2Faccount%2Fwechat$"))
    expect(page.locator("#purpose-wechat_login")).to_have_count(0)
    for code in REQUIRED:
        page.locator(f"#purpose-{code}").check()
    page.get_by_role("button", name="Save my choices and continue").click()
    expect(page).to_have_url(re.compile(r"/account/wechat$"))
    expect(page.locator("#wechat-linked")).to_be_visible()
    assert page.request.get("/api/v1/me").json()["phone"] == phone

    # Signed out, WeChat alone signs the same account in.
    page.context.clear_cookies()
    page.goto("/signin?next=/account")
    page.locator("#wechat-button").click()
    # (Browsers keep WeChat's "#wechat_redirect" fragment across the redirects.)
    expect(page).to_have_url(re.compile(r"/account(#wechat_redirect)?$"))
    assert page.request.get("/api/v1/me").json()["phone"] == phone


@pytest.mark.browser
def test_a_new_wechat_account_is_linked_with_an_existing_accounts_passkey(
    page: Page, mailbox: Mailbox, sms: SmsOutbox, wechat
):
    virtual_authenticator(page)
    without_passkey_autofill(page)
    person = sign_in_browser(page, mailbox, sms, baseline_consent(device_biometrics="granted"))
    assert register_passkey_in_page(page)["status"] == 201
    page.context.clear_cookies()

    wechat.approving = "carol"
    page.goto("/signin?next=/account/wechat")
    page.locator("#wechat-button").click()
    expect(page.get_by_role("heading", name="Finish signing in with WeChat")).to_be_visible()
    page.get_by_role("button", name="Link with a passkey").click()
    expect(page).to_have_url(re.compile(r"/account/wechat(#wechat_redirect)?$"))
    expect(page.locator("#wechat-linked")).to_be_visible()
    assert page.request.get("/api/v1/me").json()["email"] == person.email
