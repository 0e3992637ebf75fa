"""WeChat sign-in in the browser's pages, without a browser: out to the fake
WeChat's QR page (or, inside WeChat, its authorisation page) and back, the
link-or-create page, ``state`` forged or replayed, the account's WeChat page,
and the sign-in page without WeChat configured."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.cli import unit_of_work
from app.models import User
from tests.helpers import CATALOGUE, database_text, register, row_count
from tests.wechat_helpers import (
    IN_WECHAT,
    MP_APPID,
    WEB_APPID,
    fake_wechat,
    follow_wechat,
    local_path,
    new_person,
    settings_overrides,
    wechat,
    wechat_settings,
)

__all__ = ["fake_wechat", "settings_overrides", "wechat"]  # fixtures
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
REQUIRED = [p.code for p in CATALOGUE.decided_at_sign_in() if p.required]


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return found.group(1)


def _to_wechat(client: FlaskClient, **headers: str) -> str:
    started = client.get("/signin/wechat?next=/privacy", headers=headers)
    assert started.status_code == 303
    return started.headers["Location"]


def _back_from_wechat(client: FlaskClient, **headers: str) -> Any:
    return client.get(local_path(follow_wechat(_to_wechat(client, **headers))), headers=headers)


def _create(client: FlaskClient, sms: Any, link_page: str, phone: str, name: str = "王小明"):
    form = {
        "csrf_token": _hidden(link_page, "csrf_token"),
        "ticket": _hidden(link_page, "ticket"),
        "next": _hidden(link_page, "next"),
    }
    earlier = len(sms.to(phone))
    sent = client.post("/signin/wechat/phone", data={**form, "phone": phone})
    assert sent.status_code == 200, sent.text
    code = sms.last_code(phone, earlier + 1)
    finish = {
        **form,
        "csrf_token": _hidden(sent.text, "csrf_token"),
        "phone": phone,
        "flow": _hidden(sent.text, "flow"),
        "code": code,
        "full_name": name,
    }
    return client.post("/signin/wechat/phone/code", data=finish)


def test_the_qr_flow_goes_to_wechat_with_a_state_for_this_browser(client: FlaskClient, wechat):
    location = _to_wechat(client)
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert parts.path == "/connect/qrconnect" and parts.fragment == "wechat_redirect"
    assert query["appid"] == [WEB_APPID] and query["scope"] == ["snsapi_login"]
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["https://localhost/signin/wechat/callback"]
    assert re.fullmatch(r"[0-9a-f]{32}", query["state"][0])  # WeChat allows [A-Za-z0-9]{,128}


def test_qr_flow_creates_an_account_then_signs_in_directly(app, client: FlaskClient, sms, wechat):
    back = _back_from_wechat(client)
    assert back.status_code == 200
    assert "Finish signing in with WeChat" in back.text
    assert row_count(app, "linked_identities") == 0
    done = _create(client, sms, back.text, new_person().phone)
    assert done.status_code == 303
    assert done.headers["Location"] == "/consent?next=%2Fprivacy"
    assert row_count(app, "linked_identities") == 1

    # The next time, WeChat alone signs this browser in (consent step first, as ever).
    other = app.test_client()
    other.environ_base["wsgi.url_scheme"] = "https"
    again = _back_from_wechat(other)
    assert again.status_code == 303
    assert again.headers["Location"].startswith("/consent")


def test_the_same_person_in_another_wechat_app_reaches_the_same_account(
    app, client: FlaskClient, sms, wechat
):
    back = _back_from_wechat(client)
    _create(client, sms, back.text, new_person().phone)
    # Inside WeChat (the official account): another openid, the same unionid.
    other = app.test_client()
    other.environ_base["wsgi.url_scheme"] = "https"
    again = _back_from_wechat(other, **{"User-Agent": IN_WECHAT})
    assert again.status_code == 303, again.text
    assert row_count(app, "users") == 1 and row_count(app, "linked_identities") == 2
    assert row_count(app, "linked_identities", "app_id = :a", a=MP_APPID) == 1


def test_inside_wechat_the_official_account_authorises_silently(client: FlaskClient, wechat):
    location = _to_wechat(client, **{"User-Agent": IN_WECHAT})
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert parts.path == "/connect/oauth2/authorize"
    assert query["appid"] == [MP_APPID] and query["scope"] == ["snsapi_base"]


def test_a_state_from_another_browser_is_refused(app, client: FlaskClient, wechat):
    back = follow_wechat(_to_wechat(client))
    stranger = app.test_client()
    stranger.environ_base["wsgi.url_scheme"] = "https"
    refused = stranger.get(local_path(back))
    assert refused.status_code == 400
    assert "did not start in this browser" in refused.text
    assert wechat.calls_to("/sns/oauth2/access_token") == 0  # the code was never exchanged


def test_a_forged_state_is_refused(client: FlaskClient, wechat):
    back = follow_wechat(_to_wechat(client))
    forged = re.sub(r"state=[0-9a-f]+", "state=" + "0" * 32, back)
    assert client.get(local_path(forged)).status_code == 400
    assert wechat.calls_to("/sns/oauth2/access_token") == 0


def test_a_replayed_state_is_refused(client: FlaskClient, sms, wechat):
    back = follow_wechat(_to_wechat(client))
    first = client.get(local_path(back))
    assert first.status_code == 200
    replayed = client.get(local_path(back))
    assert replayed.status_code == 400
    assert wechat.calls_to("/sns/oauth2/access_token") == 1


def test_declining_on_wechat_signs_nobody_in(app, client: FlaskClient, wechat):
    wechat.approving = None
    back = _back_from_wechat(client)
    assert back.status_code == 400 and "not approved" in back.text
    assert row_count(app, "users") == 0


def test_wechat_down_mid_flow_shows_a_page_and_writes_nothing(app, client: FlaskClient, wechat):
    wechat.fail_next("/sns/oauth2/access_token", "html")
    back = _back_from_wechat(client)
    assert back.status_code == 503 and "did not answer in time" in back.text
    assert row_count(app, "users") == 0 and row_count(app, "linked_identities") == 0


def test_link_page_with_a_password_and_the_account_page_unlinks(
    app, client: FlaskClient, mailbox, sms, wechat
):
    person, _ = register(client, mailbox, sms)
    browser = app.test_client()
    browser.environ_base["wsgi.url_scheme"] = "https"
    back = _back_from_wechat(browser)
    form = {
        "csrf_token": _hidden(back.text, "csrf_token"),
        "ticket": _hidden(back.text, "ticket"),
        "next": "/account/wechat",
        "identifier": person.email,
        "password": person.password,
    }
    linked = browser.post("/signin/wechat/link/password", data=form)
    assert linked.status_code == 303, linked.text
    page = browser.get("/account/wechat")
    assert page.status_code == 200 and 'id="wechat-linked"' in page.text
    unlinked = browser.post(
        "/account/wechat/unlink", data={"csrf_token": _hidden(page.text, "csrf_token")}
    )
    assert unlinked.status_code == 303
    assert 'id="wechat-not-linked"' in browser.get("/account/wechat").text
    assert row_count(app, "linked_identities") == 0


def test_the_sign_in_page_offers_wechat_when_configured(client: FlaskClient, wechat):
    assert 'id="wechat-button"' in client.get("/signin").text
    assert "使用微信登录" in client.get("/signin", headers={"Accept-Language": "zh-CN"}).text


class TestWithoutWeChat:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {}  # the embedded default: no app id

    def test_no_button_and_no_flow(self, client: FlaskClient):
        assert 'id="wechat-button"' not in client.get("/signin").text
        refused = client.get("/signin/wechat")
        assert refused.status_code == 404


def test_an_account_made_through_wechat_adds_its_first_password_on_the_security_page(
    app, client: FlaskClient, sms, wechat
):
    phone = new_person().phone
    done = _create(client, sms, _back_from_wechat(client).text, phone)
    step = client.get(done.headers["Location"])
    decided = {
        "csrf_token": _hidden(step.text, "csrf_token"),
        "next": "/account/security/password",
        "policy_version": _hidden(step.text, "policy_version"),
        **{f"purpose-{code}": "granted" for code in REQUIRED},
    }
    assert client.post("/consent", data=decided).status_code == 303
    page = client.get("/account/security/password")
    assert page.status_code == 200 and "Add a password" in page.text
    assert 'name="current_password"' not in page.text
    added = client.post(
        "/account/security/password",
        data={
            "csrf_token": _hidden(page.text, "csrf_token"),
            "new_password": "tidal-ember-orchard-5",
        },
    )
    assert added.status_code == 303
    signed_in = client.post(
        "/api/v1/login/password",
        json={"identifier": phone, "password": "tidal-ember-orchard-5", "token_delivery": "bearer"},
    )
    assert signed_in.status_code == 200, signed_in.json
    assert 'name="current_password"' in client.get("/account/security/password").text


def test_an_account_made_through_wechat_corrects_its_name_on_the_profile_page(
    client: FlaskClient, sms, wechat
):
    done = _create(client, sms, _back_from_wechat(client).text, new_person().phone)
    step = client.get(done.headers["Location"])
    decided = {
        "csrf_token": _hidden(step.text, "csrf_token"),
        "next": "/account/profile/name",
        "policy_version": _hidden(step.text, "policy_version"),
        **{f"purpose-{code}": "granted" for code in REQUIRED},
    }
    assert client.post("/consent", data=decided).status_code == 303
    page = client.get("/account/profile/name")
    assert page.status_code == 200
    assert 'name="current_password"' not in page.text
    corrected = client.post(
        "/account/profile/name",
        data={"csrf_token": _hidden(page.text, "csrf_token"), "full_name": "王大明"},
    )
    assert corrected.status_code == 303
    assert corrected.headers["Location"] == "/account/profile?done=name"
    assert "王大明" in client.get("/account").text


class TestNicknameInsideWeChat:
    @pytest.fixture
    def settings_overrides(self, fake_wechat) -> dict[str, object]:
        return {
            **wechat_settings(fake_wechat.url),
            "wechat_mp_scope": "snsapi_userinfo",
            "wechat_keep_nickname": True,
        }

    def test_the_nickname_is_kept_sealed_and_exported(self, app, client: FlaskClient, sms, wechat):
        location = _to_wechat(client, **{"User-Agent": IN_WECHAT})
        assert parse_qs(urlsplit(location).query)["scope"] == ["snsapi_userinfo"]
        back = client.get(local_path(follow_wechat(location)), headers={"User-Agent": IN_WECHAT})
        done = _create(client, sms, back.text, new_person().phone)
        assert done.status_code == 303
        assert wechat.calls_to("/sns/userinfo") == 1
        assert "爱丽丝" not in database_text(app)  # sealed under the account's key
        with app.app_context(), unit_of_work() as svc:
            exported = svc.export.export(svc.db.execute(select(User)).scalar_one())
        assert exported["linked_identities"][0]["nickname"] == "爱丽丝"


def test_without_keeping_the_nickname_userinfo_is_never_asked(client: FlaskClient, sms, wechat):
    back = _back_from_wechat(client)
    assert back.status_code == 200
    assert wechat.calls_to("/sns/userinfo") == 0


def test_unlinking_the_last_way_in_on_the_account_page_says_why(
    app, client: FlaskClient, sms, wechat
):
    done = _create(client, sms, _back_from_wechat(client).text, new_person().phone)
    step = client.get(done.headers["Location"])
    decided = {
        "csrf_token": _hidden(step.text, "csrf_token"),
        "next": "/account/wechat",
        "policy_version": _hidden(step.text, "policy_version"),
        **{f"purpose-{code}": "granted" for code in REQUIRED},
    }
    assert client.post("/consent", data=decided).status_code == 303
    page = client.get("/account/wechat")
    refused = client.post(
        "/account/wechat/unlink", data={"csrf_token": _hidden(page.text, "csrf_token")}
    )
    assert refused.status_code == 409
    assert "This is your last way to sign in" in refused.text
    assert row_count(app, "linked_identities") == 1


def test_a_wechat_only_account_confirms_it_is_them_by_signing_in_again_with_wechat(
    app, client: FlaskClient, sms, wechat
):
    done = _create(client, sms, _back_from_wechat(client).text, new_person().phone)
    step = client.get(done.headers["Location"])
    decided = {
        "csrf_token": _hidden(step.text, "csrf_token"),
        "next": "/account",
        "policy_version": _hidden(step.text, "policy_version"),
        **{f"purpose-{code}": "granted" for code in REQUIRED},
    }
    assert client.post("/consent", data=decided).status_code == 303
    page = client.get("/step-up?next=/account/wechat")
    assert page.status_code == 200
    assert 'id="step-up-wechat"' in page.text
    assert 'name="password"' not in page.text  # there is no password to type
    again = client.get("/signin/wechat?next=/account/wechat")
    back = client.get(local_path(follow_wechat(again.headers["Location"])))
    assert back.status_code == 303 and back.headers["Location"] == "/account/wechat"


def test_the_step_up_page_offers_no_wechat_to_an_account_without_it(
    client: FlaskClient, mailbox, sms, wechat
):
    register(client, mailbox, sms, token_delivery="cookie")
    page = client.get("/step-up?next=/account")
    assert page.status_code == 200, page.text
    assert 'id="step-up-wechat"' not in page.text and 'name="password"' in page.text


def test_withdrawing_wechat_login_in_the_privacy_centre_keeps_the_last_way_in(
    app, client: FlaskClient, sms, wechat
):
    done = _create(client, sms, _back_from_wechat(client).text, new_person().phone)
    step = client.get(done.headers["Location"])
    decided = {
        "csrf_token": _hidden(step.text, "csrf_token"),
        "next": "/privacy",
        "policy_version": _hidden(step.text, "policy_version"),
        **{f"purpose-{code}": "granted" for code in REQUIRED},
    }
    assert client.post("/consent", data=decided).status_code == 303
    centre = client.get("/privacy")
    refused = client.post(
        "/privacy/wechat_login/withdraw", data={"csrf_token": _hidden(centre.text, "csrf_token")}
    )
    assert refused.status_code == 409
    assert "This is your last way to sign in" in refused.text
    assert row_count(app, "linked_identities") == 1
