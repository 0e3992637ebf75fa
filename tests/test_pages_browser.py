"""The pages in a real browser (Chromium): both languages, the language
switch and its cookie on http://localhost, the CSP letting the stylesheet in,
accessibility (axe-core), the keyboard, and the harness's passkey support."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.helpers import assert_accessible, authenticator_credentials, virtual_authenticator

pytestmark = pytest.mark.browser


def _console_errors(page: Page) -> list[str]:
    errors: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", keep)
    return errors


@pytest.mark.parametrize(
    ("browser_locale", "lang", "heading"),
    [("zh-CN", "zh-CN", "隐私政策历史版本"), ("en", "en", "Privacy policy archive")],
)
def test_policy_archive_speaks_the_browsers_language(
    page: Page, browser_locale: str, lang: str, heading: str
):
    errors = _console_errors(page)
    page.goto("/policies")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.locator("article.policy-current")).to_contain_text("2026-06")
    # The stylesheet got past the CSP: the skip link sits off-screen.
    assert page.locator(".skip-link").bounding_box()["y"] < 0
    assert errors == []  # no CSP refusal, nothing missing
    assert_accessible(page)


def test_the_language_switch_is_remembered_on_localhost(page: Page):
    page.goto("/policies")
    page.get_by_role("link", name="中文").click()
    expect(page).to_have_url(re.compile(r"/policies$"))
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    cookies = {c["name"]: c for c in page.context.cookies()}
    # Chromium keeps a Secure __Host- cookie from http://localhost (a secure context).
    assert cookies["__Host-privid_lang"]["value"] == "zh-CN"
    assert cookies["__Host-privid_lang"]["secure"] is True
    page.get_by_role("link", name="阅读版本 2026-06").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("隐私政策（版本 2026-06）")
    assert_accessible(page)
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Privacy policy, version 2026-06")


@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_an_unknown_page_is_an_accessible_html_page(page: Page, browser_locale: str):
    response = page.goto("/policies/1999-01")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("找不到页面")
    assert_accessible(page)


def test_tab_reaches_the_skip_link_first_and_focus_is_visible(page: Page):
    page.goto("/policies")
    page.keyboard.press("Tab")
    focused = page.locator(":focus")
    expect(focused).to_have_class("skip-link")
    expect(focused).to_have_text("Skip to main content")
    outline = focused.evaluate(
        "e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert outline[0] != "none" and outline[1] != "0px"
    box = focused.bounding_box()
    assert box is not None and box["y"] >= 0  # on screen once focused
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))
    page.keyboard.press("Tab")
    # Past the skip link, focus moves into the main content, not back to the header.
    assert page.locator(":focus").evaluate("e => !!e.closest('main')")


def test_the_harness_makes_passkeys_on_localhost(page: Page, live_server):
    """What the WebAuthn pages will rely on: a secure context on
    http://localhost and a virtual authenticator that creates a resident,
    user-verified credential for the RP id the settings name."""
    authenticator = virtual_authenticator(page)
    page.goto("/policies")
    assert page.evaluate("window.isSecureContext") is True
    rp_id = live_server.app.extensions["privid.settings"].webauthn_rp_id
    created = page.evaluate(
        """rpId => navigator.credentials.create({publicKey: {
            rp: {id: rpId, name: "privid"},
            user: {id: new Uint8Array([1, 2, 3]), name: "ada", displayName: "Ada"},
            challenge: new Uint8Array(32),
            pubKeyCredParams: [{type: "public-key", alg: -7}],
            authenticatorSelection: {residentKey: "required", userVerification: "required"},
        }}).then(c => c.type)""",
        rp_id,
    )
    assert created == "public-key"
    credentials = authenticator_credentials(page, authenticator)
    assert len(credentials) == 1 and credentials[0]["isResidentCredential"] is True
    assert credentials[0]["rpId"] == "localhost"
