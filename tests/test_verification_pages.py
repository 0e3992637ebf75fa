"""The privacy centre's identity page, in both languages: the separate
consent given with its own box, the result shown masked, a refused number
explained and never put back into the page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from app.clock import FrozenClock
from tests.helpers import (
    HIGH_LIMITS,
    account_form,
    assert_accessible,
    register,
    sign_in_browser,
    table_rows,
)
from tests.verification_helpers import CHILD, ZHANG_NUMBER

PATH = "/privacy/identity"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))


@pytest.fixture
def browser_client(client, mailbox, sms):
    register(client, mailbox, sms, token_delivery="cookie")
    return client


def submit(client, **fields: str):
    values = {
        "full_name": "张三",
        "document_type": "cn_resident_id_card",
        "document_number": ZHANG_NUMBER,
        "policy_version": "2026-06",
        **fields,
    }
    return account_form(client, PATH, **values)


def test_the_page_offers_the_separate_consent_and_lists_the_centre_nav(browser_client):
    page = browser_client.get(PATH)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="consent_identity_verification"' in html
    assert "You have not verified your identity." in html
    centre = browser_client.get("/privacy").get_data(as_text=True)
    assert f'href="{PATH}"' in centre


def test_verifying_with_the_consent_box_shows_the_masked_result(browser_client):
    done = submit(browser_client, consent_identity_verification="yes")
    assert done.status_code == 303 and done.headers["Location"].endswith("?done=1")
    html = browser_client.get(PATH).get_data(as_text=True)
    assert "110105**********2X" in html
    assert "Name and number confirmed (L1)" in html
    assert ZHANG_NUMBER not in html
    # Granted now: the box is not offered again.
    assert 'name="consent_identity_verification"' not in html


def test_without_the_box_nothing_goes_out(app, browser_client):
    before = table_rows(app)
    answer = submit(browser_client)
    assert answer.status_code == 403
    assert "Tick the consent box" in answer.get_data(as_text=True)
    assert table_rows(app) == before


def test_a_refused_number_is_explained_in_chinese_and_not_shown_again(app, browser_client):
    browser_client.set_cookie("__Host-privid_lang", "zh-CN", domain="localhost", secure=True)
    bad = "110105194912310021"
    answer = submit(browser_client, document_number=bad, consent_identity_verification="yes")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "最后一位校验码与号码不符" in html and "实名身份验证" in html
    assert bad not in html
    assert table_rows(app)["identity_verifications"] == []


def test_a_child_verifies_with_a_guardian_on_the_page(browser_client):
    fields = {**CHILD, "consent_identity_verification": "yes"}
    alone = submit(browser_client, **fields)
    assert alone.status_code == 422
    assert "a parent or guardian must verify too" in alone.get_data(as_text=True)
    done = submit(
        browser_client,
        **fields,
        guardian_full_name="张三",
        guardian_document_type="cn_resident_id_card",
        guardian_document_number=ZHANG_NUMBER,
    )
    assert done.status_code == 303
    html = browser_client.get(PATH).get_data(as_text=True)
    assert "Your guardian" in html and "110105**********47" in html


def test_a_form_without_its_csrf_token_is_refused(app, browser_client):
    before = table_rows(app)
    answer = browser_client.post(
        PATH,
        data={
            "full_name": "张三",
            "document_type": "cn_resident_id_card",
            "document_number": ZHANG_NUMBER,
            "consent_identity_verification": "yes",
        },
    )
    assert answer.status_code == 403
    assert table_rows(app) == before


def test_an_old_sign_in_is_sent_to_step_up_first(app, browser_client, clock):
    clock.advance(minutes=11)
    before = table_rows(app)
    answer = submit(browser_client, consent_identity_verification="yes")
    assert answer.status_code in (302, 303)
    assert "/step-up" in answer.headers["Location"]
    after = table_rows(app)
    # Only the session's last use moves; no consent, no attempt, no result.
    assert {name for name in before if before[name] != after[name]} == {"sessions"}


def test_an_unknown_document_type_is_refused(browser_client):
    answer = submit(browser_client, document_type="library_card")
    assert answer.status_code == 422
    assert "Choose the kind of document." in answer.get_data(as_text=True)


# -- in a browser, both languages, axe on the page ---------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "consent", "verify", "done", "level"),
    [
        ("en", "I give my separate consent", "Verify my identity", "Your identity is verified.",
         "Name and number confirmed (L1)"),
        ("zh-CN", "我单独同意进行实名身份验证", "验证我的身份", "您的身份已通过验证。",
         "姓名与证件号码一致（L1）"),
    ],
)  # fmt: skip
def test_a_person_verifies_in_the_browser(
    page: Page, mailbox, sms, browser_locale: str, consent: str, verify: str, done: str, level: str
):
    sign_in_browser(page, mailbox, sms)
    page.goto(PATH)
    assert_accessible(page)
    page.locator("#full_name").fill("张三")
    page.locator("#document_type").select_option("cn_resident_id_card")
    page.locator("#document_number").fill("110105194912310021")
    page.get_by_label(re.compile(consent)).check()
    page.get_by_role("button", name=verify).click()
    # A typo in the check character: explained, the number not given back.
    expect(page.get_by_role("alert")).to_be_visible()
    assert page.locator("#document_number").input_value() == ""
    assert_accessible(page)
    page.locator("#full_name").fill("张三")
    page.locator("#document_number").fill(ZHANG_NUMBER)
    page.get_by_label(re.compile(consent)).check()
    page.get_by_role("button", name=verify).click()
    expect(page.get_by_role("status")).to_have_text(done)
    expect(page.locator(".verification")).to_contain_text(level)
    expect(page.locator(".verification")).to_contain_text("110105**********2X")
    assert_accessible(page)
