"""One person's whole journey through the pages alone, in a real browser: sign
up with the codes from the test SMTP server and SMS stand-in, grant an optional
purpose at that moment, withdraw it in the privacy centre, download the data,
sign out and in again, and cancel the account."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.services.purposes import load_catalogue
from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import new_person, sign_in_browser

CATALOGUE = load_catalogue()
REQUIRED = [p.code for p in CATALOGUE.decided_at_sign_in() if p.required]


def _decisions(page: Page) -> dict[str, str]:
    answer = page.request.get("/api/v1/me/consent")
    assert answer.status == 200, answer.text()
    return {d["purpose"]: d["decision"] for d in answer.json()["decisions"]}


@pytest.mark.browser
def test_sign_up_consent_withdraw_export_sign_in_and_cancel(
    page: Page, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    person = new_person()
    page.goto("/signup")
    page.get_by_label("Mobile phone number", exact=True).fill(person.phone)
    page.get_by_label("Email address", exact=True).fill(person.email)
    page.get_by_label("Full name", exact=True).fill(person.full_name)
    page.get_by_label("Password", exact=True).fill(person.password)
    for code in [*REQUIRED, "analytics"]:
        page.locator(f"#purpose-{code}").check()
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/signup/[A-Za-z0-9_-]{20,}"))
    page.locator("#email-code").fill(mailbox.last_code(person.email))
    page.locator("form", has=page.locator("#email-code")).get_by_role(
        "button", name="Confirm"
    ).click()
    expect(page.locator("#email-code")).to_have_count(0)
    page.locator("#phone-code").fill(sms.last_code(person.phone))
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    assert _decisions(page)["analytics"] == "granted"

    # The privacy centre shows the decision made at sign-up; one click withdraws it.
    page.get_by_role("link", name="Privacy centre").first.click()
    analytics = page.locator("#purpose-analytics")
    expect(analytics.locator(".decision")).to_contain_text("Granted")
    analytics.get_by_role("button", name=re.compile("Withdraw consent")).click()
    expect(page.locator("#purpose-analytics .decision")).to_contain_text("Withdrawn")
    assert _decisions(page)["analytics"] == "withdrawn"

    # The download holds the person and the withdrawal just made.
    page.goto("/privacy/export")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download my data").click()
    exported = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    text = json.dumps(exported, ensure_ascii=False)
    assert person.email in text and person.phone in text and "withdrawn" in text

    # Out and in again through the sign-in page.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin"))
    assert page.request.get("/api/v1/me").status == 401
    page.goto("/signin?next=/privacy/cancel")
    page.get_by_label("Email or phone number").fill(person.email)
    page.get_by_label("Password", exact=True).fill(person.password)
    page.locator("form[action^='/signin'] button[type=submit]").first.click()
    expect(page).to_have_url(re.compile(r"/privacy/cancel$"))

    page.get_by_label(re.compile("I understand")).check()
    page.locator("form[action='/privacy/cancel'] button[type=submit]").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account is cancelled")
    gone = page.request.post(
        "/api/v1/login/password",
        data={"identifier": person.email, "password": person.password, "token_delivery": "bearer"},
    )
    assert gone.status == 401


@pytest.mark.browser
def test_signing_in_with_the_keyboard_alone(page: Page, mailbox: Mailbox, sms: SmsOutbox) -> None:
    """No pointer: Tab to each field, type, Enter; focus is visible on the way."""
    person = sign_in_browser(page, mailbox, sms)
    page.context.clear_cookies()
    page.goto("/signin")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "identifier":
            break
    assert page.evaluate("document.activeElement.id") == "identifier"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    page.keyboard.type(person.email)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(person.password)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/account$"))
