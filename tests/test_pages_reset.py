"""The password-reset pages: a code to the address, a new password, every
session ended; the same answer whether or not an account exists."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Page, expect

from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import assert_accessible, login, new_person, register, sign_in_browser

NEW_PASSWORD = "amber-quartz-meadow-77"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "forgot", "send", "code", "new", "submit", "done"),
    [
        ("en", "Forgot your password?", "Send code", "Code you received", "New password",
         "Set the new password", "Your password is changed"),
        ("zh-CN", "忘记密码？", "发送验证码", "收到的验证码", "新密码", "设置新密码", "密码已更改"),
    ],
)  # fmt: skip
def test_a_forgotten_password_is_replaced_with_a_code(
    page: Page,
    mailbox: Mailbox,
    sms: SmsOutbox,
    browser_locale: str,
    forgot: str,
    send: str,
    code: str,
    new: str,
    submit: str,
    done: str,
) -> None:
    person = sign_in_browser(page, mailbox, sms)
    assert page.request.get("/api/v1/me").status == 200
    page.goto("/signin")
    page.get_by_role("link", name=forgot).click()
    assert_accessible(page)
    page.locator("#identifier").fill(person.email)
    page.get_by_role("button", name=send).click()
    # The second message to the address: the first was the sign-up code.
    page.get_by_label(code).fill(mailbox.last_code(person.email, count=2))
    page.get_by_label(new).fill(NEW_PASSWORD)
    assert_accessible(page)
    page.get_by_role("button", name=submit).click()
    expect(page.get_by_role("status")).to_contain_text(done)
    # Every session ended, the browser's own included.
    assert page.request.get("/api/v1/me").status == 401
    page.locator("#identifier").fill(person.email)
    page.locator("#password").fill(NEW_PASSWORD)
    page.locator("#password-form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/account$"))


def _token(client: FlaskClient) -> str:
    found = CSRF_FIELD.search(client.get("/signin/reset").get_data(as_text=True))
    assert found is not None
    return found.group(1)


def test_an_unknown_address_gets_the_same_page(client: FlaskClient, mailbox: Mailbox, sms) -> None:
    person, _ = register(client, mailbox, sms)
    stranger = new_person()
    answers = []
    for address in (person.email, stranger.email):
        response = client.post(
            "/signin/reset", data={"csrf_token": _token(client), "identifier": address}
        )
        page = response.get_data(as_text=True)
        answers.append((response.status_code, page.replace(address, "ADDRESS")))
    assert answers[0][0] == answers[1][0] == 200
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", answers[0][1]) == strip.sub("", answers[1][1])


def test_a_weak_new_password_is_refused_with_its_reason_and_changes_nothing(
    client: FlaskClient, mailbox: Mailbox, sms
) -> None:
    person, _ = register(client, mailbox, sms)
    started = client.post(
        "/signin/reset", data={"csrf_token": _token(client), "identifier": person.email}
    )
    flow = re.search(r'name="flow" value="([^"]+)"', started.get_data(as_text=True))
    assert flow is not None
    refused = client.post(
        "/signin/reset/confirm",
        data={
            "csrf_token": _token(client),
            "identifier": person.email,
            "flow": flow.group(1),
            "code": mailbox.last_code(person.email, count=2),
            "new_password": "password",
        },
        headers={"Accept-Language": "zh-CN"},
    )
    assert refused.status_code == 400
    assert "此密码属于最常见的密码之一" in refused.get_data(as_text=True)
    # The old password still works.
    assert login(client, person.email, person.password).status_code == 200


def test_the_reset_form_needs_its_csrf_token(client: FlaskClient, mailbox: Mailbox, sms) -> None:
    person, _ = register(client, mailbox, sms)
    client.get("/signin/reset")
    before = len(mailbox.to(person.email))
    refused = client.post("/signin/reset", data={"identifier": person.email})
    assert refused.status_code == 403
    assert len(mailbox.to(person.email)) == before
