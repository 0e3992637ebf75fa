"""The sign-up pages and the consent step: in a real browser (both languages,
live password feedback, nothing pre-ticked, decisions recorded exactly, the
consent step after a material policy change, axe) and through the test client
(CSRF, off-site `next`, replayed and wrong codes, nothing created on refusal)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer
from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import (
    CATALOGUE,
    Person,
    assert_accessible,
    new_person,
    publish_policy,
    register,
    row_count,
    sign_in_browser,
)

REQUIRED = [p.code for p in CATALOGUE.decided_at_sign_in() if p.required]
SEPARATE = [p.code for p in CATALOGUE.decided_at_sign_in() if p.needs_separate_action]
OPTIONAL = [
    p.code for p in CATALOGUE.decided_at_sign_in() if not p.required and not p.needs_separate_action
]
CSRF_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


# -- through the test client ------------------------------------------------------


def form_token(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    found = CSRF_FIELD.search(page.get_data(as_text=True))
    assert found
    return found.group(1)


def signup_form(person: Person, token: str, ticked: list[str], **extra: str) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": token,
        "phone": person.phone,
        "email": person.email,
        "full_name": person.full_name,
        "password": person.password,
        "policy_version": "2026-06",
        **{f"purpose-{code}": "granted" for code in ticked},
    }
    form.update(extra)
    return form


def start_signup(client: FlaskClient, person: Person, ticked: list[str], **extra: str) -> Any:
    token = form_token(client, "/signup")
    return client.post("/signup", data=signup_form(person, token, ticked, **extra))


def resend_path(codes_path: str) -> str:
    parts = urlsplit(codes_path)
    return f"{parts.path}/resend?{parts.query}"


def enter_code(client: FlaskClient, codes_path: str, channel: str, code: str) -> Any:
    token = form_token(client, codes_path)
    form = {"csrf_token": token, "channel": channel, f"{channel}-code": code}
    return client.post(codes_path, data=form)


def test_sign_up_through_forms_opens_a_cookie_session_and_goes_to_next(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = new_person()
    started = start_signup(client, person, REQUIRED, next="/privacy")
    assert started.status_code == 303
    codes_path = started.headers["Location"]
    assert re.match(r"^/signup/[A-Za-z0-9_-]{20,}\?next=%2Fprivacy$", codes_path)
    first = enter_code(client, codes_path, "email", mailbox.last_code(person.email))
    assert first.status_code == 303 and first.headers["Location"] == codes_path
    page = client.get(codes_path).get_data(as_text=True)
    assert 'name="email-code"' not in page and 'name="phone-code"' in page
    done = enter_code(client, codes_path, "phone", sms.last_code(person.phone))
    assert done.status_code == 303 and done.headers["Location"] == "/privacy"
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    # The flow is gone with its personal data: its address is dead now.
    assert client.get(codes_path).status_code == 404


def test_separate_consents_come_from_the_form_not_from_a_link(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    """Ticked on the form: granted. Added to the codes page's address by
    someone else: ignored (the ticks are kept on the flow, not in the URL)."""
    person = new_person()
    ticked, smuggled = SEPARATE[0], SEPARATE[1]
    codes_path = start_signup(client, person, [*REQUIRED, ticked]).headers["Location"]
    assert "grant" not in codes_path
    doctored = f"{codes_path}&grant={smuggled}"
    enter_code(client, doctored, "email", mailbox.last_code(person.email))
    enter_code(client, doctored, "phone", sms.last_code(person.phone))
    decisions = {
        d["purpose"]: d["decision"] for d in client.get("/api/v1/me/consent").json["decisions"]
    }
    assert decisions[ticked] == "granted"
    assert decisions[smuggled] == "refused"


def test_a_form_without_its_csrf_token_is_refused_and_sends_nothing(
    client: FlaskClient, app: Flask, sms: SmsOutbox
):
    person = new_person()
    form_token(client, "/signup")  # the browser has its pre-session cookie
    refused = client.post("/signup", data=signup_form(person, "", REQUIRED))
    assert refused.status_code == 403
    assert "This form has expired" in refused.get_data(as_text=True)
    forged = client.post("/signup", data=signup_form(person, "0" * 64, REQUIRED))
    assert forged.status_code == 403
    assert row_count(app, "registration_flows") == 0
    assert sms.messages == []


@pytest.mark.parametrize(
    "target", ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "javascript:x"]
)
def test_an_off_site_next_is_ignored(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, target: str
):
    person = new_person()
    token = form_token(client, "/signup?" + "next=" + target)
    started = client.post("/signup", data=signup_form(person, token, REQUIRED, next=target))
    codes_path = started.headers["Location"]
    enter_code(client, codes_path, "email", mailbox.last_code(person.email))
    done = enter_code(client, codes_path, "phone", sms.last_code(person.phone))
    assert done.status_code == 303
    assert urlsplit(done.headers["Location"]).netloc == ""
    assert done.headers["Location"].startswith("/") and not done.headers["Location"].startswith(
        "//"
    )


def test_a_crafted_next_on_the_codes_address_is_ignored_too(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = new_person()
    started = start_signup(client, person, REQUIRED)
    flow_path = urlsplit(started.headers["Location"]).path
    crafted = f"{flow_path}?next=https://evil.example/"
    enter_code(client, crafted, "email", mailbox.last_code(person.email))
    done = enter_code(client, crafted, "phone", sms.last_code(person.phone))
    assert done.headers["Location"] == "/account"


def test_a_required_purpose_left_unticked_creates_nothing(
    client: FlaskClient, app: Flask, sms: SmsOutbox
):
    person = new_person()
    missing = REQUIRED[0]
    refused = start_signup(client, person, [c for c in REQUIRED if c != missing])
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert f'id="purpose-{missing}-error"' in html
    assert f'id="purpose-{REQUIRED[1]}-error"' not in html
    # What was typed stays; the password does not come back.
    assert f'value="{person.email}"' in html and person.password not in html
    assert row_count(app, "registration_flows") == 0
    assert sms.messages == []


def test_a_refused_password_gives_the_policys_reason_in_the_pages_language(
    client: FlaskClient, app: Flask
):
    person = new_person()
    token = form_token(client, "/signup")
    form = signup_form(person, token, REQUIRED, password="password")
    refused = client.post("/signup", data=form, headers={"Accept-Language": "zh-CN"})
    assert refused.status_code == 422
    assert "此密码属于最常见的密码之一" in refused.get_data(as_text=True)
    assert row_count(app, "registration_flows") == 0


def test_wrong_and_replayed_codes_are_refused_next_to_the_field(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = new_person()
    codes_path = start_signup(client, person, REQUIRED).headers["Location"]
    right = mailbox.last_code(person.email)
    wrong = "000000" if right != "000000" else "111111"
    refused = enter_code(client, codes_path, "email", wrong)
    assert refused.status_code == 422
    assert 'id="email-code-error"' in refused.get_data(as_text=True)
    assert enter_code(client, codes_path, "email", right).status_code == 303
    # The same form sent again: the email is proven already, nothing is created.
    token = form_token(client, codes_path)
    replay = client.post(
        codes_path,
        data={"csrf_token": token, "channel": "email", "email-code": right},
    )
    assert replay.status_code == 422
    assert client.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"code_resend_cooldown_seconds": 0}])
def test_send_again_sends_a_new_sms_code(
    client: FlaskClient, sms: SmsOutbox, settings_overrides: dict[str, object]
):
    person = new_person()
    codes_path = start_signup(client, person, REQUIRED).headers["Location"]
    sms.last_code(person.phone)
    token = form_token(client, codes_path)
    again = client.post(resend_path(codes_path), data={"csrf_token": token, "channel": "phone"})
    assert again.status_code == 303, again.get_data(as_text=True)
    shown = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "A new code is on its way." in shown
    new_code = sms.last_code(person.phone, count=2)
    # The new code proves the phone, and the page keeps where to go after.
    done = enter_code(client, codes_path, "phone", new_code)
    assert done.status_code == 303 and done.headers["Location"] == codes_path


def test_send_again_too_soon_says_so_next_to_the_code(client: FlaskClient, sms: SmsOutbox):
    person = new_person()
    codes_path = start_signup(client, person, REQUIRED).headers["Location"]
    token = form_token(client, codes_path)
    again = client.post(resend_path(codes_path), data={"csrf_token": token, "channel": "email"})
    assert again.status_code == 422
    assert 'id="email-code-error"' in again.get_data(as_text=True)


@pytest.mark.parametrize(
    "settings_overrides",
    [{"limit_registration_per_ip": "1/hour", "limit_code_send_per_destination": "100/hour"}],
)
def test_the_sign_up_form_has_the_registration_apis_rate_limit(
    client: FlaskClient, settings_overrides: dict[str, object]
):
    assert start_signup(client, new_person(), REQUIRED).status_code == 303
    limited = start_signup(client, new_person(), REQUIRED)
    assert limited.status_code == 429
    assert "Too many requests" in limited.get_data(as_text=True)


def test_the_consent_step_with_nothing_owed_goes_straight_on(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = new_person()
    codes_path = start_signup(client, person, REQUIRED).headers["Location"]
    enter_code(client, codes_path, "email", mailbox.last_code(person.email))
    enter_code(client, codes_path, "phone", sms.last_code(person.phone))
    straight = client.get("/consent?next=/privacy/export")
    assert straight.status_code == 303 and straight.headers["Location"] == "/privacy/export"
    off_site = client.get("/consent?next=https://evil.example/")
    assert off_site.headers["Location"] == "/account"


def test_a_policy_published_during_sign_up_voids_the_separate_consent_given_before(
    client: FlaskClient, app: Flask, mailbox: Mailbox, sms: SmsOutbox
):
    person = new_person()
    codes_path = start_signup(client, person, [*REQUIRED, SEPARATE[0]]).headers["Location"]
    publish_policy(
        app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="New terms.",
    )
    enter_code(client, codes_path, "email", mailbox.last_code(person.email))
    done = enter_code(client, codes_path, "phone", sms.last_code(person.phone))
    assert done.status_code == 303
    # Signed in, but what was read under the old policy is asked again.
    overview = client.get("/api/v1/me/consent").get_json()
    assert overview["decisions"] == []
    assert SEPARATE[0] in {p["code"] for p in overview["pending"]}
    assert client.get("/api/v1/me").status_code == 403
    asked = client.get("/consent?next=/account")
    assert asked.status_code == 200
    assert 'id="purpose-' + SEPARATE[0] + '"' in asked.get_data(as_text=True)


def test_in_the_consent_step_an_unticked_required_box_is_asked_again_not_refused(
    client: FlaskClient, app: Flask, mailbox: Mailbox, sms: SmsOutbox
):
    register(client, mailbox, sms, token_delivery="cookie")
    publish_policy(
        app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="New account terms.",
        affected_purposes=[REQUIRED[0]],
    )
    token = form_token(client, "/consent?next=/account")
    sent = client.post(
        "/consent",
        data={"csrf_token": token, "policy_version": "2026-12", "next": "/account"},
    )
    assert sent.status_code == 422
    assert f'id="purpose-{REQUIRED[0]}-error"' in sent.get_data(as_text=True)
    # Nothing was refused: the session lives on, still owing the decision.
    assert client.get("/api/v1/me/consent").status_code == 200
    assert client.get("/api/v1/me").status_code == 403
    forged = client.post(
        "/consent",
        data={"policy_version": "2026-12", f"purpose-{REQUIRED[0]}": "granted"},
    )
    assert forged.status_code == 403  # no CSRF token: refused
    granted = client.post(
        "/consent",
        data={
            "csrf_token": token,
            "policy_version": "2026-12",
            "next": "/account",
            f"purpose-{REQUIRED[0]}": "granted",
        },
    )
    assert granted.status_code == 303 and granted.headers["Location"] == "/account"
    assert client.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize("path", ["/signup", "/signup/{flow}", "/consent"])
def test_the_pages_have_no_inline_script_or_style(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, path: str
):
    person = new_person()
    codes_path = start_signup(client, person, REQUIRED).headers["Location"]
    if path == "/consent":
        # Optional purposes left undecided: the consent step asks for them.
        only_required = [{"purpose": code, "decision": "granted"} for code in REQUIRED]
        consent = {"policy_version": "2026-06", "decisions": only_required}
        register(client, mailbox, sms, token_delivery="cookie", consent=consent)
        path = "/consent?next=/account"
    shown = client.get(path.format(flow=urlsplit(codes_path).path.split("/")[-1]))
    assert shown.status_code == 200
    html = shown.get_data(as_text=True)
    assert "<style" not in html and " style=" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert " src=" in tag and " nonce=" in tag


def test_the_consent_step_needs_a_session(client: FlaskClient):
    response = client.get("/consent?next=/account")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/signin?next=")


# -- in the browser ---------------------------------------------------------------


@dataclass(frozen=True)
class Texts:
    heading: str
    phone: str
    email: str
    full_name: str
    password: str
    create: str
    confirm: str
    common_reason: str
    password_ok: str
    required_error: str


TEXTS = {
    "en": Texts(
        heading="Create an account",
        phone="Mobile phone number",
        email="Email address",
        full_name="Full name",
        password="Password",
        create="Create account",
        confirm="Confirm",
        common_reason="This password is among the most common passwords; choose another.",
        password_ok="This password can be used.",
        required_error="Tick this box: without it there can be no account.",
    ),
    "zh-CN": Texts(
        heading="注册账户",
        phone="手机号码",
        email="电子邮箱",
        full_name="姓名",
        password="密码",
        create="创建账户",
        confirm="验证",
        common_reason="此密码属于最常见的密码之一，请另选一个。",
        password_ok="此密码可以使用。",
        required_error="请勾选此项：没有它就无法提供账户。",
    ),
}


def fill_details(page: Page, texts: Texts, person: Person) -> None:
    page.get_by_label(texts.phone, exact=True).fill(person.phone)
    page.get_by_label(texts.email, exact=True).fill(person.email)
    page.get_by_label(texts.full_name, exact=True).fill(person.full_name)
    page.get_by_label(texts.password, exact=True).fill(person.password)


def tick(page: Page, codes: list[str]) -> None:
    for code in codes:
        page.locator(f"#purpose-{code}").check()


def every_box_unticked(page: Page) -> None:
    boxes = page.locator("input[type=checkbox]")
    assert boxes.count() == len(CATALOGUE.decided_at_sign_in())
    for i in range(boxes.count()):
        expect(boxes.nth(i)).not_to_be_checked()


def my_decisions(page: Page) -> dict[str, str]:
    answer = page.request.get("/api/v1/me/consent")
    assert answer.status == 200, answer.text()
    body = answer.json()
    assert body["pending"] == []
    return {d["purpose"]: d["decision"] for d in body["decisions"]}


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["en", "zh-CN"])
def test_the_whole_sign_up_in_the_browser_ends_signed_in(
    page: Page, mailbox: Mailbox, sms: SmsOutbox, browser_locale: str
):
    texts = TEXTS[browser_locale]
    person = new_person()
    page.goto("/signup?next=/account")
    expect(page.get_by_role("heading", level=1)).to_have_text(texts.heading)
    every_box_unticked(page)
    assert_accessible(page)
    fill_details(page, texts, person)
    # Required ones and one separate consent ticked; every optional one refused.
    granted_separately = SEPARATE[0]
    tick(page, [*REQUIRED, granted_separately])
    page.get_by_role("button", name=texts.create).click()
    expect(page).to_have_url(re.compile(r"/signup/[A-Za-z0-9_-]{20,}"))
    assert_accessible(page)
    email_form = page.locator("form", has=page.locator("#email-code"))
    email_form.locator("#email-code").fill(mailbox.last_code(person.email))
    email_form.get_by_role("button", name=texts.confirm).click()
    expect(page.locator("#email-code")).to_have_count(0)
    page.locator("#phone-code").fill(sms.last_code(person.phone))
    page.get_by_role("button", name=texts.confirm).click()
    expect(page).to_have_url(re.compile(r"/account$"))
    assert page.request.get("/api/v1/me").status == 200
    expected = {code: "refused" for code in [*OPTIONAL, *SEPARATE]}
    expected.update({code: "granted" for code in [*REQUIRED, granted_separately]})
    assert my_decisions(page) == expected


@pytest.mark.browser
def test_live_feedback_names_a_common_password_and_clears_for_a_good_one(page: Page):
    texts = TEXTS["en"]
    page.goto("/signup")
    feedback = page.locator("#password-feedback")
    expect(feedback).to_have_attribute("aria-live", "polite")
    page.get_by_label(texts.password, exact=True).press_sequentially("password")
    expect(feedback).to_have_text(texts.common_reason)
    page.get_by_label(texts.password, exact=True).fill("velvet-orbit-canyon-42")
    expect(feedback).to_have_text(texts.password_ok)
    assert_accessible(page)


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_live_feedback_speaks_chinese(page: Page, browser_locale: str):
    texts = TEXTS["zh-CN"]
    page.goto("/signup")
    page.get_by_label(texts.password, exact=True).press_sequentially("password")
    expect(page.locator("#password-feedback")).to_have_text(texts.common_reason)


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["en", "zh-CN"])
def test_a_required_purpose_left_unticked_is_pointed_out_and_nothing_is_sent(
    page: Page, live_server: LiveServer, sms: SmsOutbox, browser_locale: str
):
    texts = TEXTS[browser_locale]
    person = new_person()
    page.goto("/signup")
    fill_details(page, texts, person)
    tick(page, REQUIRED[1:])
    page.get_by_role("button", name=texts.create).click()
    box = page.locator(f"#purpose-{REQUIRED[0]}")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#purpose-{REQUIRED[0]}-error")).to_have_text(texts.required_error)
    # What the person ticked is still ticked; nothing else is.
    expect(page.locator(f"#purpose-{REQUIRED[1]}")).to_be_checked()
    expect(box).not_to_be_checked()
    assert_accessible(page)
    assert row_count(live_server.app, "registration_flows") == 0
    assert sms.messages == []


@pytest.mark.browser
def test_a_wrong_code_is_shown_next_to_its_field(page: Page, mailbox: Mailbox, sms: SmsOutbox):
    texts = TEXTS["en"]
    person = new_person()
    page.goto("/signup")
    fill_details(page, texts, person)
    tick(page, REQUIRED)
    page.get_by_role("button", name=texts.create).click()
    right = sms.last_code(person.phone)
    page.locator("#phone-code").fill("000000" if right != "000000" else "111111")
    page.locator("form", has=page.locator("#phone-code")).get_by_role(
        "button", name=texts.confirm
    ).click()
    expect(page.locator("#phone-code-error")).to_contain_text(
        "The code is wrong, expired or already used."
    )
    expect(page.locator("#phone-code")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    assert page.request.get("/api/v1/me").status == 401


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "heading"), [("en", "Your choices are needed"), ("zh-CN", "需要您作出选择")]
)
def test_after_a_material_change_the_consent_step_asks_and_returns_to_next(
    page: Page,
    live_server: LiveServer,
    mailbox: Mailbox,
    sms: SmsOutbox,
    browser_locale: str,
    heading: str,
):
    sign_in_browser(page, mailbox, sms)
    assert page.request.get("/api/v1/me").status == 200
    touched = [OPTIONAL[0], SEPARATE[0]]
    publish_policy(
        live_server.app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="New terms for two purposes.",
        affected_purposes=touched,
    )
    # The session owes decisions now: the API says so, the page asks.
    assert page.request.get("/api/v1/me").status == 403
    page.goto("/consent?next=/policies")
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    every_box = page.locator("input[type=checkbox]")
    assert every_box.count() == len(touched)
    for i in range(every_box.count()):
        expect(every_box.nth(i)).not_to_be_checked()
    expect(page.get_by_role("link", name=re.compile("2026-12"))).to_have_attribute(
        "href", "/policies/2026-12"
    )
    assert_accessible(page)
    tick(page, [OPTIONAL[0], SEPARATE[0]])
    page.locator("form[action='/consent'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/policies$"))
    decisions = my_decisions(page)
    assert decisions[OPTIONAL[0]] == "granted" and decisions[SEPARATE[0]] == "granted"
    assert page.request.get("/api/v1/me").status == 200
