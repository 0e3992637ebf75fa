"""The privacy centre: decisions with their history and receipts, one-click
withdrawal and granting again (the JSON API agrees), a passkey going with
device_biometrics, the export, requests with due dates, cancellation, security
notices, and a material policy's differences; in a browser, both languages,
axe on every page; plus test-client checks of the refusals."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws
from joserfc.jwk import KeySet
from playwright.sync_api import Page, expect

from app.clock import FrozenClock
from tests.helpers import (
    HIGH_LIMITS,
    assert_accessible,
    baseline_consent,
    bearer,
    login,
    other_browser,
    passkey_options,
    publish_policy,
    register,
    register_passkey,
    sign_in_browser,
    virtual_authenticator,
)
from tests.soft_authenticator import SoftAuthenticator

ANALYTICS_EN = "Analytics and web beacons"
ANALYTICS_ZH = "统计分析与网络信标"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def _consent(page: Page) -> dict[str, Any]:
    """The JSON API's view of the signed-in browser's decisions."""
    response = page.request.get("/api/v1/me/consent")
    assert response.status == 200, response.text()
    return {d["purpose"]: d for d in response.json()["decisions"]}


def _section(page: Page, code: str):
    return page.locator(f"#purpose-{code}")


# -- decisions: listed, withdrawn, granted again ---------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "title", "granted", "withdrawn", "give", "withdraw"),
    [
        ("en", ANALYTICS_EN, "Granted", "Withdrawn", "Give consent", "Withdraw consent"),
        ("zh-CN", ANALYTICS_ZH, "已同意", "已撤回", "给予同意", "撤回同意"),
    ],
)
def test_an_optional_purpose_is_granted_and_withdrawn_in_one_click(
    page: Page,
    mailbox,
    sms,
    browser_locale: str,
    title: str,
    granted: str,
    withdrawn: str,
    give: str,
    withdraw: str,
):
    sign_in_browser(page, mailbox, sms)
    page.goto("/privacy")
    expect(page.get_by_role("heading", level=3, name=title)).to_be_visible()
    analytics = _section(page, "analytics")
    # Refused at registration: the refusal is shown with its policy version.
    expect(analytics).to_contain_text("2026-06")
    assert_accessible(page)

    analytics.get_by_role("button", name=re.compile(give)).click()
    expect(page).to_have_url(re.compile(r"/privacy\?changed=analytics"))
    expect(_section(page, "analytics").locator(".decision")).to_contain_text(granted)
    assert _consent(page)["analytics"]["decision"] == "granted"

    # Before the button: what stops when withdrawn.
    expect(_section(page, "analytics")).to_contain_text("usage statistics (web beacons)")
    _section(page, "analytics").get_by_role("button", name=re.compile(withdraw)).click()
    expect(_section(page, "analytics").locator(".decision")).to_contain_text(withdrawn)
    assert _consent(page)["analytics"]["decision"] == "withdrawn"
    assert_accessible(page)


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_required_purposes_explain_they_end_only_with_the_account(
    page: Page, mailbox, sms, browser_locale: str
):
    sign_in_browser(page, mailbox, sms)
    page.goto("/privacy")
    expect(page.get_by_role("heading", level=1)).to_have_text("隐私中心")
    account = _section(page, "account")
    expect(account).to_contain_text("不能单独撤回")
    expect(account.get_by_role("button")).to_have_count(0)
    expect(account.get_by_role("link", name="注销我的账户")).to_be_visible()


def _enrol_passkey(page: Page) -> int:
    """A passkey made by the browser's virtual authenticator through webauthn.js
    and the JSON API, as the account pages do it."""
    page.add_script_tag(url="/assets/webauthn.js")
    return int(
        page.evaluate(
            """async () => {
                const options = await privid.postJson("/api/v1/webauthn/registration/options");
                const { challenge_id, ...publicKey } = options.data;
                const credential = await privid.create(publicKey);
                const done = await privid.postJson(
                    "/api/v1/webauthn/registration/verify", { ...credential, challenge_id });
                return done.status;
            }"""
        )
    )


@pytest.mark.browser
def test_withdrawing_device_biometrics_removes_the_passkey(page: Page, mailbox, sms):
    sign_in_browser(page, mailbox, sms, baseline_consent(device_biometrics="granted"))
    virtual_authenticator(page)
    page.goto("/privacy")
    assert _enrol_passkey(page) == 201
    assert len(page.request.get("/api/v1/me/credentials").json()["credentials"]) == 1

    page.goto("/privacy")
    biometrics = _section(page, "device_biometrics")
    expect(biometrics).to_contain_text("deletes every passkey")
    expect(biometrics).to_contain_text("asked to sign in again")
    biometrics.get_by_role("button", name=re.compile("Withdraw consent")).click()
    expect(_section(page, "device_biometrics").locator(".decision")).to_contain_text("Withdrawn")
    assert page.request.get("/api/v1/me/credentials").json()["credentials"] == []


# -- receipts and the export -------------------------------------------------------


@pytest.mark.browser
def test_a_receipt_download_is_the_apis_signed_receipt(page: Page, mailbox, sms):
    sign_in_browser(page, mailbox, sms)
    page.goto("/privacy")
    record_id = _consent(page)["analytics"]["record_id"]
    section = _section(page, "analytics")
    section.locator("summary").click()
    with page.expect_download() as info:
        section.get_by_role("link", name=f"Signed receipt no. {record_id}").click()
    assert info.value.suggested_filename == f"privid-consent-receipt-{record_id}.json"
    downloaded = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    api = page.request.get(f"/api/v1/me/consent/records/{record_id}/receipt").json()
    assert set(downloaded) == set(api) == {"receipt"}
    # ES256 signatures differ each time: the same signed claims, both verifiable.
    keys = KeySet.import_key_set(page.request.get("/.well-known/jwks.json").json())
    claims = [
        jws.deserialize_compact(token, keys, algorithms=["ES256"]).payload
        for token in (downloaded["receipt"], api["receipt"])
    ]
    assert claims[0] == claims[1]
    assert json.loads(claims[0])["decision"] == "refused"


@pytest.mark.browser
@pytest.mark.parametrize("browser_locale", ["zh-CN"])
def test_the_export_downloads_as_a_file_with_the_profile(
    page: Page, mailbox, sms, browser_locale: str
):
    person = sign_in_browser(page, mailbox, sms)
    page.goto("/privacy/export")
    expect(page.get_by_role("heading", level=1)).to_have_text("下载我的数据")
    assert_accessible(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="下载我的数据").click()
    assert info.value.suggested_filename == "privid-export.json"
    exported = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    text = json.dumps(exported, ensure_ascii=False)
    assert person.email in text and person.full_name in text


# -- requests ----------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "babel_locale", "kind", "status"),
    [("en", "en", "Correction", "Open"), ("zh-CN", "zh_Hans_CN", "更正", "处理中")],
)
def test_a_request_made_appears_with_its_due_date(
    page: Page, mailbox, sms, browser_locale: str, babel_locale: str, kind: str, status: str
):
    sign_in_browser(page, mailbox, sms)
    page.goto("/privacy/requests")
    assert_accessible(page)
    page.locator("#kind").select_option("rectification")
    page.locator("form[action='/privacy/requests'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/privacy/requests\?made=1$"))
    made = page.request.get("/api/v1/me/requests").json()["requests"][0]
    row = page.locator("tbody tr").first
    expect(row).to_contain_text(kind)
    expect(row).to_contain_text(status)
    # Due at the end of the third working day, a day read in Beijing time.
    due = datetime.fromisoformat(made["due_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
    expect(row).to_contain_text(format_date(due.date(), "long", locale=babel_locale))
    assert_accessible(page)


# -- cancellation ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "kept", "tick", "goodbye"),
    [
        ("en", "What is kept, and why", "I understand", "Your account is cancelled"),
        ("zh-CN", "将被保留的内容及原因", "我已了解", "您的账户已注销"),
    ],
)
def test_cancellation_states_consequences_then_the_account_is_gone(
    page: Page, mailbox, sms, browser_locale: str, kept: str, tick: str, goodbye: str
):
    person = sign_in_browser(page, mailbox, sms)
    page.goto("/privacy/cancel")
    expect(page.get_by_role("heading", level=2, name=kept)).to_be_visible()
    assert_accessible(page)
    page.get_by_label(re.compile(tick)).check()
    page.locator("form[action='/privacy/cancel'] button[type=submit]").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(goodbye)
    assert_accessible(page)
    signed_in = page.request.post(
        "/api/v1/login/password",
        data={"identifier": person.email, "password": person.password, "token_delivery": "bearer"},
    )
    assert signed_in.status == 401
    assert page.request.get("/api/v1/me").status == 401


# -- notices -----------------------------------------------------------------------


def _record_incident(app: Flask, mailbox, sms, user_id: str, title: str) -> None:
    """An operator records an incident for one user through the JSON API."""
    client = other_browser(app)
    boss, _ = register(client, mailbox, sms)
    granted = app.test_cli_runner().invoke(args=["operator-grant", boss.email])
    assert granted.exit_code == 0, granted.output
    operator = bearer(login(client, boss.email, boss.password).json["token"])
    parts = {
        "facts": "A log store was open for two hours.",
        "impact": "Sign-in times may have been read.",
        "measures": "We closed the store and rotated its keys.",
        "advice": "Review your sessions.",
        "remedies": "Write to privacy@privid.example for help.",
    }
    created = client.post(
        "/api/v1/admin/incidents",
        json={"title": title, **parts, "user_ids": [user_id], "channels": ["email"]},
        headers=operator,
    )
    assert created.status_code == 201, created.json


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "none", "heading"),
    [
        ("en", "There are no security notices", "What happened"),
        ("zh-CN", "您没有安全通知", "发生了什么"),
    ],
)
def test_security_notices_appear_after_an_operator_records_an_incident(
    page: Page, live_server, mailbox, sms, browser_locale: str, none: str, heading: str
):
    sign_in_browser(page, mailbox, sms)
    page.goto("/privacy/notices")
    expect(page.locator("main")).to_contain_text(none)
    user_id = page.request.get("/api/v1/me").json()["user_id"]
    _record_incident(live_server.app, mailbox, sms, user_id, "Sign-in records exposed")
    page.reload()
    expect(page.get_by_role("heading", level=2, name="Sign-in records exposed")).to_be_visible()
    expect(page.locator("article")).to_contain_text(heading)
    expect(page.locator("article")).to_contain_text("rotated its keys")
    assert_accessible(page)


# -- the policy archive's differences ----------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(
    ("browser_locale", "added", "removed"),
    [("en", "Added:", "Removed:"), ("zh-CN", "新增：", "删除：")],
)
def test_a_material_version_shows_its_differences_from_the_previous_one(
    page: Page, live_server, browser_locale: str, added: str, removed: str
):
    publish_policy(
        live_server.app,
        version="2026-11",
        effective_at=datetime.now(UTC) - timedelta(hours=1),
        material=True,
        changes="Analytics described anew.",
        affected_purposes=["analytics"],
        text="We collect usage statistics with web beacons.\nAnother line.",
    )
    page.goto("/policies/2026-11")
    inserted = page.locator(".policy-diff ins")
    deleted = page.locator(".policy-diff del")
    expect(inserted).to_have_count(2)
    expect(inserted.first).to_contain_text(added)
    expect(inserted.first).to_contain_text("We collect usage statistics with web beacons.")
    expect(deleted).to_have_count(1)
    expect(deleted).to_contain_text(removed)
    expect(deleted).to_contain_text("The test platform's privacy policy.")
    assert_accessible(page)


# -- refusals, through the test client ---------------------------------------------


def _csrf(client: FlaskClient, path: str = "/privacy") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
    assert found
    return found.group(1)


def _signed_in_client(client: FlaskClient, mailbox, sms, **consent: str) -> FlaskClient:
    register(client, mailbox, sms, token_delivery="cookie", consent=baseline_consent(**consent))
    return client


def test_the_centre_sends_a_signed_out_visitor_to_sign_in(client: FlaskClient):
    response = client.get("/privacy")
    assert response.status_code == 303
    assert response.headers["Location"] == "/signin?next=%2Fprivacy"


def test_a_withdrawal_without_the_csrf_token_changes_nothing(client: FlaskClient, mailbox, sms):
    _signed_in_client(client, mailbox, sms, analytics="granted")
    response = client.post("/privacy/analytics/withdraw", data={})
    assert response.status_code == 403
    assert "This form has expired" in response.get_data(as_text=True)
    decisions = client.get("/api/v1/me/consent").json["decisions"]
    assert {d["purpose"]: d["decision"] for d in decisions}["analytics"] == "granted"


def test_withdrawing_a_required_purpose_is_refused_next_to_it(client: FlaskClient, mailbox, sms):
    _signed_in_client(client, mailbox, sms)
    token = _csrf(client)
    response = client.post("/privacy/account/withdraw", data={"csrf_token": token})
    assert response.status_code == 409
    assert "cannot be withdrawn on its own" in response.get_data(as_text=True)
    # A replayed withdrawal of something already withdrawn says so too.
    client.post("/privacy/analytics/grant", data={"csrf_token": token, "policy_version": "2026-06"})
    assert client.post("/privacy/analytics/withdraw", data={"csrf_token": token}).status_code == 303
    again = client.post("/privacy/analytics/withdraw", data={"csrf_token": token})
    assert again.status_code == 409
    assert "nothing to withdraw" in again.get_data(as_text=True)


def test_someone_elses_receipt_is_not_found(app: Flask, client: FlaskClient, mailbox, sms):
    _signed_in_client(client, mailbox, sms)
    stranger = other_browser(app)
    _, session = register(stranger, mailbox, sms)
    theirs = stranger.get("/api/v1/me/consent/history", headers=bearer(session["token"]))
    record_id = theirs.json["records"][0]["record_id"]
    assert client.get(f"/privacy/receipts/{record_id}").status_code == 404


def test_repeated_exports_are_refused_with_a_message(client: FlaskClient, mailbox, sms, settings):
    _signed_in_client(client, mailbox, sms)
    token = _csrf(client, "/privacy/export")
    for _ in range(settings.max_exports_per_day):
        assert client.post("/privacy/export", data={"csrf_token": token}).status_code == 200
    refused = client.post("/privacy/export", data={"csrf_token": token})
    assert refused.status_code == 429
    assert "too often today" in refused.get_data(as_text=True)
    statuses = [r["status"] for r in client.get("/api/v1/me/requests").json["requests"]]
    assert statuses.count("refused") == 1  # the refusal is on record


def test_cancelling_without_the_confirmation_keeps_the_account(client: FlaskClient, mailbox, sms):
    _signed_in_client(client, mailbox, sms)
    token = _csrf(client, "/privacy/cancel")
    response = client.post("/privacy/cancel", data={"csrf_token": token})
    assert response.status_code == 422
    assert "Tick the box to confirm." in response.get_data(as_text=True)
    assert client.get("/api/v1/me").status_code == 200


def test_an_unknown_request_kind_is_refused(client: FlaskClient, mailbox, sms):
    _signed_in_client(client, mailbox, sms)
    token = _csrf(client, "/privacy/requests")
    response = client.post(
        "/privacy/requests", data={"csrf_token": token, "kind": "account_cancellation"}
    )
    assert response.status_code == 422
    assert client.get("/api/v1/me/requests").json["requests"] == []


def test_deleting_ended_sessions_is_answered_at_once(client: FlaskClient, mailbox, sms):
    _signed_in_client(client, mailbox, sms)
    token = _csrf(client, "/privacy/requests")
    form = {"csrf_token": token, "kind": "deletion", "ended_sessions": "yes"}
    made = client.post("/privacy/requests", data=form)
    assert made.status_code == 303
    page = client.get(made.headers["Location"]).get_data(as_text=True)
    assert "Completed" in page and "Deleted 0 ended session(s)." in page
    (request,) = client.get("/api/v1/me/requests").json["requests"]
    assert request["details"] == {"categories": ["ended_sessions"]}


class TestAnOldSession:
    """A session signed in longer ago than an act allows is sent to step up,
    and comes back to the page it was on."""

    @pytest.fixture
    def clock(self, frozen_clock: FrozenClock) -> FrozenClock:
        return frozen_clock

    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {
            **HIGH_LIMITS,
            "export_max_auth_age_seconds": 30,
            "cancellation_max_auth_age_seconds": 30,
        }

    def test_export_and_cancellation_ask_for_a_step_up(
        self, client: FlaskClient, mailbox, sms, clock: FrozenClock
    ):
        _signed_in_client(client, mailbox, sms)
        token = _csrf(client, "/privacy/export")
        clock.advance(seconds=31)
        export = client.post("/privacy/export", data={"csrf_token": token})
        assert export.status_code == 303
        assert export.headers["Location"].startswith("/step-up?next=%2Fprivacy%2Fexport&acr=")
        cancel = client.post(
            "/privacy/cancel", data={"csrf_token": token, "confirm": "cancel my account"}
        )
        assert cancel.status_code == 303
        assert cancel.headers["Location"].startswith("/step-up?next=%2Fprivacy%2Fcancel")
        assert client.get("/api/v1/me").status_code == 200

    def test_withdrawing_what_a_passkey_rests_on_asks_for_a_step_up_first(
        self, app: Flask, client: FlaskClient, mailbox, sms, clock: FrozenClock
    ):
        consent = baseline_consent(device_biometrics="granted")
        phone = other_browser(app)
        person, session = register(phone, mailbox, sms, consent=consent)
        options = passkey_options(phone, session["token"])
        answer = SoftAuthenticator().create(options)
        assert (
            register_passkey(phone, session["token"], answer, options["challenge_id"]).status_code
            == 201
        )
        assert login(client, person.email, person.password, "cookie").status_code == 200
        token = _csrf(client)
        clock.advance(minutes=6)  # removing a passkey needs a sign-in within five
        response = client.post("/privacy/device_biometrics/withdraw", data={"csrf_token": token})
        assert response.status_code == 303
        # Back to the centre afterwards: the withdraw address takes posts only.
        assert response.headers["Location"].startswith("/step-up?next=%2Fprivacy&acr=")
        credentials = client.get("/api/v1/me/credentials").json["credentials"]
        assert len(credentials) == 1
