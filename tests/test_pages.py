"""The pages' foundation without a browser: language choice, the language
switch, the page headers, HTML error pages, the policy archive, and the
message catalogues (every message translated, compiled at install)."""

from __future__ import annotations

import configparser
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask, Response, render_template_string
from flask.testing import FlaskClient

from app.pages.surface import apply_page_headers, render_error_page, standard_error_page
from tests.helpers import publish_policy

ROOT = Path(__file__).resolve().parent.parent
LANG_COOKIE = "__Host-privid_lang"


def _catalogue_files(suffix: str) -> list[Path]:
    # Every page area's catalogue, the provider's too (babel.cfg names its pages).
    pattern = f"**/translations/zh_Hans_CN/LC_MESSAGES/messages{suffix}"
    return sorted(path for top in ("app", "verification") for path in (ROOT / top).glob(pattern))


def _extracted_msgids() -> set[str]:
    """What Babel's extractor finds with the project's mapping (babel.cfg)."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "babel.cfg")
    method_map = []
    for section in config.sections():
        method, pattern = (part.strip() for part in section.split(":", 1))
        method = "jinja2.ext:babel_extract" if method == "jinja2" else method
        method_map.append((pattern, method))
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map=method_map, keywords={**DEFAULT_KEYWORDS, "lazy_gettext": None}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_page_message_has_a_chinese_translation():
    msgids = _extracted_msgids()
    assert "Privacy policy archive" in msgids  # the extractor sees the templates
    assert "Page not found" in msgids  # and the Python code
    assert "Do not allow" in msgids  # and the OpenID provider's approval page
    translated: dict[str, str] = {}
    for po in _catalogue_files(".po"):
        with po.open("rb") as source:
            translated.update({m.id: m.string for m in read_po(source) if m.id and m.string})
    missing = sorted(m for m in msgids if not translated.get(m))
    assert missing == [], "add these to the page area's zh_Hans_CN messages.po"


def test_catalogues_are_compiled_at_install_and_up_to_date():
    """`pip install` compiles every .po (setup.py); a stale .mo would show
    old translations."""
    for po in _catalogue_files(".po"):
        mo = po.with_suffix(".mo")
        assert mo.exists(), f"{mo} missing: reinstall (pip install -e .)"
        with po.open("rb") as source:
            expected = {m.id: m.string for m in read_po(source) if m.id and not m.fuzzy}
        with mo.open("rb") as compiled:
            actual = {m.id: m.string for m in read_mo(compiled) if m.id}
        assert actual == expected, f"{mo} is stale: reinstall (pip install -e .)"


def _get(client: FlaskClient, path: str, **headers: str):
    return client.get(path, headers=headers)


def test_language_follows_accept_language_and_defaults_to_english(client: FlaskClient):
    chinese = _get(client, "/policies", **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert chinese.status_code == 200
    assert '<html lang="zh-CN">' in chinese.text and "隐私政策历史版本" in chinese.text
    assert "zh" in _get(client, "/policies", **{"Accept-Language": "zh"}).text[:60]
    english = _get(client, "/policies", **{"Accept-Language": "fr-FR, de;q=0.8"})
    assert '<html lang="en">' in english.text and "Privacy policy archive" in english.text
    assert '<html lang="en">' in _get(client, "/policies").text


def test_language_switch_sets_a_host_cookie_and_wins_over_the_browser(client: FlaskClient):
    switched = client.get("/lang/zh-CN?next=/policies%3Fa%3D1")
    assert switched.status_code == 303
    assert switched.headers["Location"] == "/policies?a=1"
    cookie = switched.headers["Set-Cookie"]
    assert cookie.startswith(f"{LANG_COOKIE}=zh-CN;")
    for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax"):
        assert attribute in cookie
    assert "Domain" not in cookie
    page = _get(client, "/policies", **{"Accept-Language": "en"})
    assert '<html lang="zh-CN">' in page.text
    client.get("/lang/en?next=/policies")
    assert '<html lang="en">' in _get(client, "/policies", **{"Accept-Language": "zh-CN"}).text


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/policies",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "policies",
        "/%0d%0aSet-Cookie:x=1",
        "/\tevil",
    ],
)
def test_language_switch_never_sends_the_visitor_off_site(client: FlaskClient, target: str):
    response = client.get("/lang/en", query_string={"next": target})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert "evil" not in location and "\n" not in location
    assert location == "/" or location == target


def test_an_unknown_language_is_an_html_not_found(client: FlaskClient):
    response = client.get("/lang/fr?next=/policies")
    assert response.status_code == 404
    assert not any(LANG_COOKIE in c for c in response.headers.getlist("Set-Cookie"))
    assert response.mimetype == "text/html"


def test_page_headers_carry_a_fresh_nonce_and_no_unsafe_inline(client: FlaskClient):
    first, second = client.get("/policies"), client.get("/policies")
    csp = first.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{16,})'", csp)
    assert nonce, csp
    assert nonce.group(1) not in second.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for directive in (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    headers = first.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    # The JSON API keeps its own stricter policy.
    assert client.get("/api/v1/policies").headers["Referrer-Policy"] == "no-referrer"


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
            self.inline.append(tag)
        if tag == "script" and "src" not in names:
            self.inline.append("script")


@pytest.mark.parametrize("path", ["/policies", "/policies/2026-06", "/policies/no-such"])
def test_pages_have_no_inline_script_or_style(client: FlaskClient, path: str):
    finder = _InlineFinder()
    finder.feed(client.get(path).text)
    assert finder.inline == []


def test_an_unknown_policy_version_is_an_html_page_in_the_visitors_language(
    client: FlaskClient,
):
    response = _get(client, "/policies/1999-01", **{"Accept-Language": "zh-CN"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "找不到页面" in response.text and '<html lang="zh-CN">' in response.text
    assert "Content-Security-Policy" in response.headers
    english = client.get("/policies/1999-01")
    assert "Page not found" in english.text and "problem" not in english.mimetype


def test_archive_lists_every_version_marks_the_current_one_and_shows_material_changes(
    app: Flask, client: FlaskClient
):
    publish_policy(
        app,
        version="2026-09",
        effective_at=datetime(2026, 9, 1, tzinfo=UTC),
        material=True,
        changes="Security logs are kept for longer.",
        affected_purposes=["security"],
    )
    publish_policy(
        app,
        version="2099-01",
        effective_at=datetime(2099, 1, 1, tzinfo=UTC),
        material=False,
        changes="Clearer wording.",
    )
    page = _get(client, "/policies", **{"Accept-Language": "en"}).text
    versions = re.findall(r"<h2 id=\"policy-\d+\">Version ([\w-]+)</h2>", page)
    assert versions == ["2099-01", "2026-09", "2026-06"]
    current = page.split('class="policy policy-current"')
    assert len(current) == 2 and "Version 2026-09" in current[1].split("</article>")[0]
    assert "Upcoming" in page and "Earlier version" in page
    material = page.split("Version 2026-09")[1].split("</article>")[0]
    assert "Security logs are kept for longer." in material
    assert "Security and device information" in material
    assert "All purposes" not in material
    chinese = _get(client, "/policies", **{"Accept-Language": "zh-CN"}).text
    assert "现行版本" in chinese and "需要重新同意的处理目的" in chinese


def test_a_policy_version_page_shows_its_text(client: FlaskClient):
    page = client.get("/policies/2026-06")
    assert page.status_code == 200
    assert "The test platform&#39;s privacy policy." in page.text
    assert "In force" in page.text


def test_home_sends_visitors_to_their_account(client: FlaskClient):
    response = client.get("/")
    assert response.status_code in (302, 303) and response.headers["Location"] == "/account"


def test_the_stylesheet_is_served_from_the_site(client: FlaskClient):
    page = client.get("/policies").text
    href = re.search(r'<link rel="stylesheet" href="([^"]+)">', page)
    assert href and href.group(1).startswith("/")
    css = client.get(href.group(1))
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert ":focus" in css.text and "outline" in css.text


def test_a_scripts_nonce_in_a_template_is_the_one_the_csp_allows(app: Flask):
    with app.test_request_context("/policies"):
        html = render_template_string('<script nonce="{{ csp_nonce }}" src="/a.js"></script>')
        response = Response(html)
        apply_page_headers(response)
        csp = response.headers["Content-Security-Policy"]
    nonce = re.search(r'nonce="([^"]+)"', html)
    assert nonce and f"'nonce-{nonce.group(1)}'" in csp


def test_error_pages_for_the_surface_use_the_layout_and_the_visitors_language(app: Flask):
    with app.test_request_context("/account", headers={"Accept-Language": "zh-CN"}):
        unavailable = standard_error_page(503)
        conflict = render_error_page(409, "已存在", "此版本已发布。")
    assert unavailable.status_code == 503 and unavailable.mimetype == "text/html"
    assert "出错了" in unavailable.get_data(as_text=True)
    body = conflict.get_data(as_text=True)
    assert conflict.status_code == 409 and '<html lang="zh-CN">' in body
    assert "此版本已发布。" in body and "跳到主要内容" in body
