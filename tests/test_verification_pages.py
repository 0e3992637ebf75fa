"""The privacy centre's identity page, in both languages: the separate
consent given with its own box, the result shown masked, a refused number
explained and never put back into the page."""

from __future__ import annotations

import pytest

from tests.helpers import HIGH_LIMITS, account_form, register, table_rows
from tests.verification_helpers import ZHANG_NUMBER

PATH = "/privacy/identity"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


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


def test_an_unknown_document_type_is_refused(browser_client):
    answer = submit(browser_client, document_type="library_card")
    assert answer.status_code == 422
    assert "Choose the kind of document." in answer.get_data(as_text=True)
