"""Relying-party flows over HTTP against the service as deployed (gunicorn,
two workers, on the suite's database and rate-limit storage): authlib's Flask
client is the partner, in its own little app; the person's part runs through
the pages in headless Chromium. The RP validates the ID token itself (keys from
the JWKS, iss, aud, nonce, exp), so "signed in" here means what it means to a
real partner."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

import pyotp
import pytest
from authlib.integrations.base_client import OAuthError
from playwright.sync_api import Page, Response, expect

from app.oidc.clients import NewClient
from app.services.sessions import Acr
from tests.conftest import LiveServer
from tests.fakes import Mailbox, SmsOutbox, free_port
from tests.helpers import (
    Person,
    assert_accessible,
    baseline_consent,
    publish_policy,
    register_passkey_in_page,
    row_count,
    sign_in_browser,
    virtual_authenticator,
    without_passkey_autofill,
)
from tests.oidc_helpers import FIRST_PARTY, PARTNER, add_client
from tests.relying_party import RelyingParty, relying_party

pytestmark = pytest.mark.browser


@pytest.fixture
def live_server(gunicorn_live_server: LiveServer) -> LiveServer:
    # `page` talks to whatever `live_server` is: here, gunicorn.
    return gunicorn_live_server


@contextmanager
def partner(
    server: LiveServer, new: NewClient = PARTNER, host: str = "127.0.0.1"
) -> Iterator[RelyingParty]:
    """A relying party registered with the provider and serving on ``host``."""
    port = free_port()
    made = add_client(
        server.app,
        new,
        redirect_uris=(f"http://{host}:{port}/callback",),
        post_logout_redirect_uris=(f"http://{host}:{port}/signed-out",),
    )
    assert made.secret is not None
    with relying_party(server.url, made.client_id, made.secret, port, host) as rp:
        yield rp


def new_account(page: Page, mailbox: Mailbox, sms: SmsOutbox) -> Person:
    """A registered person whose browser is signed out again."""
    person = sign_in_browser(page, mailbox, sms)
    page.context.clear_cookies()
    return person


def sign_in_on_page(page: Page, person: Person) -> None:
    expect(page).to_have_url(re.compile(r"/signin\?"))
    page.get_by_label("Email or phone number").fill(person.email)
    page.get_by_label("Password", exact=True).fill(person.password)
    page.locator("form[action^='/signin'] button[type=submit]").first.click()


def back_at(page: Page, rp: RelyingParty) -> None:
    expect(page).to_have_url(re.compile(re.escape(rp.url) + r"/callback\?"))


def provider_documents(page: Page, server: LiveServer) -> list[Response]:
    """Collects every page (document) the provider answers from now on."""
    seen: list[Response] = []

    def keep(response: Response) -> None:
        if response.request.resource_type == "document" and response.url.startswith(server.url):
            seen.append(response)

    page.on("response", keep)
    return seen


def user_id_of(page: Page) -> str:
    me = page.request.get("/api/v1/me")
    assert me.status == 200, me.text()
    return str(me.json()["user_id"])


def test_a_partner_signs_a_person_in_refreshes_and_signs_in_silently(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    person = new_account(page, mailbox, sms)
    with partner(live_server) as rp:
        page.goto(f"{rp.url}/login")
        sign_in_on_page(page, person)
        # The approval page names the partner, what it gets, and why.
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Allow Partner shop to use your account?"
        )
        released = page.locator("#released-heading + ul")
        for item in ("Your full name", "Your email address", "Access while you are not using"):
            expect(released).to_contain_text(item)
        expect(page.locator("#purpose-heading")).to_have_text("Sharing with an authorised partner")
        expect(page.locator(".partner-host")).to_contain_text("127.0.0.1")
        page.get_by_role("button", name="Allow", exact=True).click()
        back_at(page, rp)
        expect(page.locator("#claims")).to_contain_text(person.email)

        first = rp.last
        assert first.error is None and first.token and first.id_claims and first.userinfo
        claims = first.id_claims
        # authlib checked signature, iss, aud, nonce and exp; these are ours.
        assert claims["iss"] == live_server.url == first.issuer_param
        assert claims["aud"] == rp.client_id
        assert claims["acr"] == Acr.SINGLE_FACTOR.value and "pwd" in claims["amr"]
        assert claims["sub"] != user_id_of(page)  # a partner gets a pairwise subject
        assert first.userinfo == {
            "sub": claims["sub"],
            "name": person.full_name,
            "email": person.email,
            "email_verified": True,
        }

        # Refresh through authlib's client: a new pair, and UserInfo again.
        renewed = rp.refresh(first.token["refresh_token"])
        assert renewed["refresh_token"] != first.token["refresh_token"]
        assert rp.userinfo(renewed)["sub"] == claims["sub"]
        # The old refresh token again: refused, and the whole grant ends.
        with pytest.raises(OAuthError) as reused:
            rp.refresh(first.token["refresh_token"])
        assert reused.value.error == "invalid_grant"
        with pytest.raises(OAuthError):
            rp.refresh(renewed["refresh_token"])

        # Signed in and approved: prompt=none is answered with a code, no page.
        pages = provider_documents(page, live_server)
        page.goto(f"{rp.url}/login?prompt=none")
        back_at(page, rp)
        assert pages and all(r.status in (302, 303) for r in pages), [
            (r.url, r.status) for r in pages
        ]
        silent = rp.last
        assert silent.error is None and silent.id_claims is not None
        assert silent.id_claims["sub"] == claims["sub"]
        assert silent.id_claims["auth_time"] == claims["auth_time"]  # no new sign-in


def test_prompt_none_without_a_session_tells_the_partner_login_is_required(
    page: Page, live_server: LiveServer
) -> None:
    with partner(live_server) as rp:
        pages = provider_documents(page, live_server)
        page.goto(f"{rp.url}/login?prompt=none")
        back_at(page, rp)
        assert rp.last.error == "login_required" and rp.last.token is None
        assert all(r.status in (302, 303) for r in pages)
        expect(page.locator("#error")).to_have_text("login_required")


@pytest.mark.parametrize(
    ("browser_locale", "ui_locales"), [("zh-CN", None), ("en", "zh-CN")], ids=["browser", "ui"]
)
def test_the_approval_page_speaks_chinese(
    page: Page,
    live_server: LiveServer,
    mailbox: Mailbox,
    sms: SmsOutbox,
    browser_locale: str,
    ui_locales: str | None,
) -> None:
    person = new_account(page, mailbox, sms)
    with partner(live_server) as rp:
        page.goto(f"{rp.url}/login" + (f"?ui_locales={ui_locales}" if ui_locales else ""))
        # The sign-in page on the way speaks it too (ui_locales rides in its next).
        expect(page).to_have_url(re.compile(r"/signin\?"))
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        page.locator("#identifier").fill(person.email)
        page.locator("#password").fill(person.password)
        page.locator("form[action^='/signin'] button[type=submit]").first.click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "允许 Partner shop 使用您的账户吗？"
        )
        released = page.locator("#released-heading + ul")
        for item in ("您的姓名", "您的电子邮箱地址", "在您未使用其服务时也可访问"):
            expect(released).to_contain_text(item)
        expect(page.locator("#purpose-heading")).to_have_text("与授权合作伙伴共享")
        page.get_by_role("button", name="允许", exact=True).click()
        back_at(page, rp)
        assert rp.last.error is None and rp.last.id_claims is not None


def test_max_age_sends_the_person_to_sign_in_again(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    person = new_account(page, mailbox, sms)
    with partner(live_server, FIRST_PARTY) as rp:
        page.goto(f"{rp.url}/login")
        sign_in_on_page(page, person)
        back_at(page, rp)  # first-party: no approval page
        first = rp.last.id_claims
        assert first is not None

        time.sleep(2)
        page.goto(f"{rp.url}/login?max_age=1")
        sign_in_on_page(page, person)
        back_at(page, rp)
        again = rp.last.id_claims
        assert again is not None and again["sub"] == first["sub"]
        assert again["auth_time"] >= first["auth_time"] + 2


def test_acr_values_asking_for_multi_factor_lead_to_the_step_up_page(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    person = sign_in_browser(page, mailbox, sms)  # a single-factor session
    totp = _enable_totp(page)
    wanted = Acr.MULTI_FACTOR.value
    with partner(live_server, FIRST_PARTY) as rp:
        page.goto(f"{rp.url}/login?acr_values={wanted}")
        expect(page).to_have_url(re.compile(r"/step-up\?"))
        page.get_by_label("Password", exact=True).fill(person.password)
        # The next time step's code: the one used to turn TOTP on is spent.
        page.get_by_label("Code from your authenticator app").fill(totp.at(time.time() + 30))
        page.get_by_role("button", name="Continue").click()
        back_at(page, rp)
        claims = rp.last.id_claims
        assert claims is not None and claims["acr"] == wanted
        assert {"pwd", "otp"} <= set(claims["amr"])


def test_signing_in_with_an_authenticator_app_brings_multi_factor_to_the_partner(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    person = sign_in_browser(page, mailbox, sms)
    totp = _enable_totp(page)
    page.context.clear_cookies()
    wanted = Acr.MULTI_FACTOR.value
    with partner(live_server, FIRST_PARTY) as rp:
        page.goto(f"{rp.url}/login?acr_values={wanted}")
        sign_in_on_page(page, person)
        # The second-factor page's form ends, through the authorisation
        # endpoint, at the client: form-action must allow it on every hop.
        page.get_by_label("Six-digit code").fill(totp.at(time.time() + 30))
        page.get_by_role("button", name="Continue").click()
        back_at(page, rp)
        claims = rp.last.id_claims
        assert claims is not None and claims["acr"] == wanted


def test_acr_values_asking_for_phishing_resistant_lead_to_a_passkey_step_up(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    without_passkey_autofill(page)
    virtual_authenticator(page)
    sign_in_browser(page, mailbox, sms, consent=baseline_consent(device_biometrics="granted"))
    assert register_passkey_in_page(page)["status"] == 201
    wanted = Acr.PHISHING_RESISTANT.value
    with partner(live_server) as rp:
        page.goto(f"{rp.url}/login?acr_values={wanted}")
        expect(page).to_have_url(re.compile(r"/step-up\?"))
        # Only a passkey reaches this level: the page offers no password.
        expect(page.get_by_label("Password", exact=True)).to_have_count(0)
        page.get_by_role("button", name="Confirm with a passkey").click()
        page.get_by_role("button", name="Allow", exact=True).click()
        back_at(page, rp)
        claims = rp.last.id_claims
        assert claims is not None and claims["acr"] == wanted


def test_the_consent_step_owed_after_a_material_change_returns_to_the_partner(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    sign_in_browser(page, mailbox, sms)
    publish_policy(
        live_server.app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="New terms for analytics.",
        affected_purposes=["analytics"],
    )
    with partner(live_server, FIRST_PARTY) as rp:
        page.goto(f"{rp.url}/login")
        expect(page).to_have_url(re.compile(r"/consent\?"))
        page.locator("form[action='/consent'] button[type=submit]").click()
        back_at(page, rp)
        assert rp.last.error is None and rp.last.id_claims is not None


def _enable_totp(page: Page) -> pyotp.TOTP:
    page.goto("/account")
    csrf = {"X-CSRF-Token": page.locator('meta[name="csrf-token"]').get_attribute("content") or ""}
    enrolled = page.request.post("/api/v1/me/mfa/totp", headers=csrf)
    assert enrolled.status == 201, enrolled.text()
    totp = pyotp.TOTP(enrolled.json()["secret"])
    confirmed = page.request.post(
        "/api/v1/me/mfa/totp/confirm", headers=csrf, data={"code": totp.now()}
    )
    assert confirmed.status == 200, confirmed.text()
    return totp


def test_refusing_on_the_approval_page_tells_the_partner_access_denied(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    sign_in_browser(page, mailbox, sms)
    with partner(live_server) as rp:
        page.goto(f"{rp.url}/login")
        page.get_by_role("button", name="Do not allow").click()
        back_at(page, rp)
        assert rp.last.error == "access_denied" and rp.last.token is None
        expect(page.locator("#error")).to_have_text("access_denied")
        assert row_count(live_server.app, "oauth_tokens") == 0
        assert row_count(live_server.app, "client_authorizations") == 0


def test_pairwise_subjects_differ_between_sectors_and_stay_within_one(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    sign_in_browser(page, mailbox, sms)
    user_id = user_id_of(page)
    subjects: dict[str, list[str]] = {}
    with (
        partner(live_server, host="127.0.0.1") as shop,
        partner(live_server, replace(PARTNER, name="Partner bank"), host="localhost") as bank,
        partner(live_server, FIRST_PARTY) as platform,
    ):
        for rp in (shop, bank, shop, bank, platform):
            page.goto(f"{rp.url}/login")
            if rp is not platform and rp.url not in subjects:
                page.get_by_role("button", name="Allow", exact=True).click()
            back_at(page, rp)
            assert rp.last.id_claims is not None and rp.last.userinfo is not None
            sub = rp.last.id_claims["sub"]
            assert rp.last.userinfo["sub"] == sub
            subjects.setdefault(rp.url, []).append(sub)
    shop_subs, bank_subs = subjects[shop.url], subjects[bank.url]
    assert len(set(shop_subs)) == 1 and len(set(bank_subs)) == 1  # stable within a sector
    assert shop_subs[0] != bank_subs[0]  # two partners cannot join their users
    assert user_id not in (shop_subs[0], bank_subs[0])
    assert subjects[platform.url] == [user_id]  # the platform's own app: public subject


def test_the_approval_page_is_accessible_and_works_with_the_keyboard(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    sign_in_browser(page, mailbox, sms)
    with partner(live_server) as rp:
        page.goto(f"{rp.url}/login")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Partner shop")
        assert_accessible(page)
        allow = page.get_by_role("button", name="Allow", exact=True)
        for _ in range(40):
            page.keyboard.press("Tab")
            if allow.evaluate("button => button === document.activeElement"):
                break
        assert allow.evaluate("button => button === document.activeElement")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("", "none")
        page.keyboard.press("Enter")
        back_at(page, rp)
        assert rp.last.error is None and rp.last.id_claims is not None


@pytest.mark.parametrize(
    ("browser_locale", "title"),
    [("en", "This sign-in link does not work"), ("zh-CN", "此登录链接无法使用")],
)
def test_a_redirect_uri_the_client_did_not_register_gets_a_page_not_a_redirect(
    page: Page, live_server: LiveServer, title: str
) -> None:
    with partner(live_server) as rp:
        query = {
            "response_type": "code",
            "client_id": rp.client_id,
            "redirect_uri": "http://127.0.0.1:9/elsewhere",
            "scope": "openid",
            "state": "s",
        }
        answer = page.goto(f"{live_server.url}/oauth/authorize?{urlencode(query)}")
        assert answer is not None and answer.status == 400
        expect(page).to_have_url(re.compile("^" + re.escape(live_server.url)))
        expect(page.get_by_role("heading", level=1)).to_have_text(title)
        assert_accessible(page)
        assert rp.outcomes == []


def test_the_partner_signs_the_person_out_after_they_confirm(
    page: Page, live_server: LiveServer, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    sign_in_browser(page, mailbox, sms)
    with partner(live_server) as rp:
        page.goto(f"{rp.url}/login")
        page.get_by_role("button", name="Allow", exact=True).click()
        back_at(page, rp)
        page.goto(f"{rp.url}/logout")
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign out?")
        expect(page.locator("main")).to_contain_text("Partner shop asks to sign you out")
        assert_accessible(page)
        # The answer ends at the partner's registered post-logout URI.
        page.locator("main").get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(re.escape(rp.url) + r"/signed-out\?"))
        assert rp.logouts == ["ok"]  # authlib matched the state it sent
        assert page.request.get(f"{live_server.url}/api/v1/me").status == 401
