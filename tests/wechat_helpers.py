"""The fake WeChat for the WeChat tests (tests/fake_wechat.py), the settings
that point the app at it, and the steps of the flows. Import the fixtures
into a test module: ``from tests.wechat_helpers import fake_wechat, wechat, settings_overrides``."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from tests.fake_wechat import FakeWeChat, FakeWeChatState, Person
from tests.helpers import CATALOGUE, POLICY_VERSION, bearer
from tests.helpers import new_person as _new_person

WEB_APPID, WEB_SECRET = "wx00000000000web1", "web-secret-0123456789abcdef"
MP_APPID, MP_SECRET = "wx000000000000mp1", "mp-secret-0123456789abcdef"
APP_APPID, APP_SECRET = "wx00000000000app1", "app-secret-0123456789abcdef"
TIMEOUT = 0.5
IN_WECHAT = "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 MicroMessenger/8.0.50 NetType/WIFI"


@pytest.fixture(scope="session")
def fake_wechat() -> Iterator[FakeWeChat]:
    server = FakeWeChat().start()
    server.state.apps.update({WEB_APPID: WEB_SECRET, MP_APPID: MP_SECRET, APP_APPID: APP_SECRET})
    yield server
    server.stop()


@pytest.fixture
def wechat(fake_wechat: FakeWeChat) -> Iterator[FakeWeChatState]:
    state = fake_wechat.state
    state.people.update(
        {
            "alice": Person("alice", "union-alice", "爱丽丝"),
            "bob": Person("bob", None, "Bob"),
            "carol": Person("carol", "union-carol", "Carol"),
        }
    )
    state.approving = "alice"
    state.faults.clear()
    state.calls.clear()
    yield state
    state.faults.clear()


def wechat_settings(url: str) -> dict[str, object]:
    return {
        "wechat_open_url": url,
        "wechat_api_url": url,
        "wechat_web_appid": WEB_APPID,
        "wechat_web_secret": WEB_SECRET,
        "wechat_mp_appid": MP_APPID,
        "wechat_mp_secret": MP_SECRET,
        "wechat_app_appid": APP_APPID,
        "wechat_app_secret": APP_SECRET,
        "wechat_timeout_seconds": TIMEOUT,
        "wechat_retries": 2,
    }


@pytest.fixture
def settings_overrides(fake_wechat: FakeWeChat) -> dict[str, object]:
    return wechat_settings(fake_wechat.url)


def new_person() -> Any:
    return _new_person()


# -- the app flow, over the JSON API -------------------------------------------------


def app_login(client: FlaskClient, wechat: FakeWeChatState, person: str = "alice", **kw: Any):
    code = wechat.issue_code(APP_APPID, person, "snsapi_userinfo")
    return client.post(
        "/api/v1/login/wechat", json={"code": code, "token_delivery": "bearer"}, **kw
    )


def create_by_phone(client: FlaskClient, sms: Any, ticket: str, phone: str, name: str = "王小明"):
    earlier = len(sms.to(phone))
    sent = client.post("/api/v1/login/wechat/phone/code", json={"ticket": ticket, "phone": phone})
    assert sent.status_code == 202, sent.json
    body = {
        "ticket": ticket,
        "phone": phone,
        "flow": sent.json["flow"],
        "code": sms.last_code(phone, earlier + 1),
        "full_name": name,
    }
    return client.post("/api/v1/login/wechat/phone", json=body)


def consent_with_wechat(client: FlaskClient, token: str) -> None:
    """The consent step: what is required, and wechat_login kept granted."""
    decisions = [
        {
            "purpose": p.code,
            "decision": "granted" if p.required or p.code == "wechat_login" else "refused",
        }
        for p in CATALOGUE.decided_at_sign_in()
    ]
    done = client.post(
        "/api/v1/me/consent/decisions",
        json={"policy_version": POLICY_VERSION, "decisions": decisions},
        headers=bearer(token),
    )
    assert done.status_code == 200, done.json


def wechat_account(client: FlaskClient, sms: Any, wechat: FakeWeChatState, person: str = "alice"):
    """An account made through WeChat, past its consent step: (phone, token)."""
    pending = app_login(client, wechat, person)
    assert pending.status_code == 202 and pending.json["status"] == "link_required", pending.json
    phone = new_person().phone
    created = create_by_phone(client, sms, pending.json["ticket"], phone)
    assert created.status_code == 200, created.json
    consent_with_wechat(client, created.json["token"])
    return phone, created.json["token"]


# -- the browser flows, without a browser ------------------------------------------


def follow_wechat(location: str) -> str:
    """What WeChat's authorisation page does once the person approves: the
    address it sends the browser back to (never followed here)."""
    parts = urlsplit(location)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 302, answer.status
        return answer.getheader("Location") or ""
    finally:
        connection.close()


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# -- migration 0018 ------------------------------------------------------------------

COLUMNS = (
    "id, status, role, email_index, phone_index, email_encrypted, phone_encrypted, "
    "full_name_encrypted, password_hash, created_at, password_changed_at, email_verified_at, "
    "phone_verified_at"
)
PARAMS = ", ".join(f":{name.strip()}" for name in COLUMNS.split(","))


def account_row(n: int) -> dict[str, object]:
    """A users row as migrations 0017/0018 know it (tests of migration 0018)."""
    when = datetime(2026, 11, n, 12, 0)
    return {
        "id": f"00000000-0000-4000-8000-00000000000{n}",
        "status": "active",
        "role": "user",
        "email_index": f"{n:064x}",
        "phone_index": f"{n + 100:064x}",
        "email_encrypted": bytes([n]) * 40,
        "phone_encrypted": bytes([n + 1]) * 40,
        "full_name_encrypted": bytes([n + 2]) * 40,
        "password_hash": f"$argon2id$v=19$m=65536,t=3,p=4$salt{n}$hash{n}",
        "created_at": when,
        "password_changed_at": when,
        "email_verified_at": when,
        "phone_verified_at": when,
    }
