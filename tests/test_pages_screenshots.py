"""The README's screenshots, taken by a real browser walking the pages a
person meets first: sign-in, the consent step and the privacy centre, in
English and in Chinese. Every run takes them (into test-artifacts/screenshots,
checking each page as it goes); `PRIVID_SCREENSHOT_DIR=docs/screenshots
.venv/bin/pytest tests/test_pages_screenshots.py` refreshes the README's
copies (with a CJK font installed, e.g. Debian's fonts-wqy-microhei)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.helpers import assert_accessible, publish_policy, sign_in_browser

ROOT = Path(__file__).resolve().parent.parent
WORDS = {
    "en": {
        "signin": "Sign in",
        "consent": "Your choices are needed",
        "save": "Save my choices and continue",
        "privacy": "Privacy centre",
    },
    "zh-CN": {
        "signin": "登录",
        "consent": "需要您作出选择",
        "save": "保存我的选择并继续",
        "privacy": "隐私中心",
    },
}


def _folder() -> Path:
    chosen = os.environ.get("PRIVID_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else ROOT / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shoot(page: Page, name: str, locale: str) -> Path:
    """The visible part of the page (1000 x 800), as a person first sees it."""
    path = _folder() / f"{name}-{'zh' if locale == 'zh-CN' else 'en'}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["en", "zh-CN"])
def test_readme_screenshots(page: Page, live_server, mailbox, sms, browser_locale) -> None:
    page.set_viewport_size({"width": 1000, "height": 800})
    words = WORDS[browser_locale]
    page.goto("/signin")
    expect(page.get_by_role("heading", level=1)).to_contain_text(words["signin"])
    assert_accessible(page)
    _shoot(page, "signin", browser_locale)

    sign_in_browser(page, mailbox, sms)
    # A material change to the policy: the next page asks for decisions first.
    publish_policy(
        live_server.app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="Analytics now covers the mobile app as well.",
        affected_purposes=["analytics"],
    )
    page.goto("/privacy")
    expect(page.get_by_role("heading", level=1)).to_contain_text(words["consent"])
    assert "/consent?next=%2Fprivacy" in page.url
    assert_accessible(page)
    _shoot(page, "consent", browser_locale)
    # Deciding (the optional purpose left unticked: refused) returns to the centre.
    page.get_by_role("button", name=words["save"]).click()
    page.wait_for_url("**/privacy")
    expect(page.get_by_role("heading", level=1)).to_contain_text(words["privacy"])
    assert_accessible(page)
    _shoot(page, "privacy", browser_locale)
