"""Hostile review of WeChat sign-in (issue 11): an attacker's WeChat account
linked to a victim's account without the victim's full sign-in, and the other
attacks of the review, each as the person or the attacker would notice it."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from alembic import command
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app.clock import FrozenClock
from app.migrate import alembic_config, upgrade
from app.wechat.client import HttpWeChatApi, WeChatUnavailable
from tests.fake_wechat import FakeWeChat, Person
from tests.helpers import (
    POLICY_VERSION,
    bearer,
    database_text,
    enable_totp,
    enrol,
    https_client,
    login,
    race,
    register,
    row_count,
    scratch_url,
)
from tests.soft_authenticator import SoftAuthenticator
from tests.wechat_helpers import (
    APP_APPID,
    APP_SECRET,
    COLUMNS,
    IN_WECHAT,
    PARAMS,
    account_row,
    app_login,
    fake_wechat,
    follow_wechat,
    local_path,
    new_person,
    wechat,
    wechat_account,
    wechat_settings,
)

__all__ = ["fake_wechat", "scratch_url", "wechat"]  # fixtures

SECOND_FACTOR = "/api/v1/login/second-factor"


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock  # TOTP codes at known steps


@pytest.fixture
def settings_overrides(fake_wechat: FakeWeChat) -> dict[str, object]:
    # The nickname kept: the largest pending identity a ticket carries.
    return {**wechat_settings(fake_wechat.url), "wechat_keep_nickname": True}


def test_a_password_alone_does_not_link_wechat_to_an_account_with_a_second_factor(
    app, client: FlaskClient, mailbox, sms, wechat, clock
):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session, at=clock.now())
    clock.advance(seconds=30)
    # A WeChat account with a unionid and the longest nickname WeChat gives.
    wechat.people["bob"] = Person("bob", "union-bob-" + "9" * 18, "长" * 128)
    # The attacker has the victim's password, not the authenticator app.
    pending = app_login(client, wechat, "bob")
    linked = client.post(
        "/api/v1/login/wechat/link/password",
        json={
            "ticket": pending.json["ticket"],
            "identifier": person.email,
            "password": person.password,
        },
    )
    assert linked.status_code == 202, linked.json
    assert linked.json["methods"] == ["totp", "recovery_code"]
    # Walking away at the second factor leaves the attacker's WeChat unlinked.
    assert row_count(app, "linked_identities") == 0
    again = app_login(client, wechat, "bob")
    assert again.status_code == 202 and again.json["status"] == "link_required", again.json
    # The owner who passes the second factor has WeChat linked.
    done = client.post(
        SECOND_FACTOR, json={"ticket": linked.json["ticket"], "totp_code": totp.at(clock.now())}
    )
    assert done.status_code == 200, done.json
    assert done.json["amr"] == ["fed", "pwd", "otp", "mfa"]
    assert row_count(app, "linked_identities") == 1
    listed = client.get("/api/v1/me/wechat", headers=bearer(done.json["token"]))
    assert [row["app_id"] for row in listed.json["linked"]] == [APP_APPID]
    clock.advance(seconds=30)
    # From now on bob's WeChat signs in to that account (its second factor still asked).
    later = app_login(client, wechat, "bob")
    assert later.status_code == 202 and later.json["methods"] == ["totp", "recovery_code"]


# -- migration 0018: a downgrade that cannot work refuses before it changes anything


def test_downgrading_0018_with_a_wechat_only_account_refuses_and_keeps_everything(
    scratch_url: str,
):
    upgrade(scratch_url, "0018")
    engine = create_engine(scratch_url)
    bare = {**account_row(4), "email_index": None, "email_encrypted": None}
    bare.update(password_hash=None, password_changed_at=None, email_verified_at=None)
    link = {
        "id": "00000000-0000-4000-8000-0000000000a1",
        "user_id": bare["id"],
        "provider": "wechat",
        "app_id": APP_APPID,
        "openid_index": "c" * 64,
        "openid_encrypted": b"\x01" * 40,
        "created_at": datetime(2026, 11, 30, 12, 0),
    }
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"INSERT INTO users ({COLUMNS}) VALUES ({PARAMS})"), [account_row(1), bare]
            )
            connection.execute(
                text(
                    "INSERT INTO linked_identities (id, user_id, provider, app_id, "
                    "openid_index, openid_encrypted, created_at) VALUES (:id, :user_id, "
                    ":provider, :app_id, :openid_index, :openid_encrypted, :created_at)"
                ),
                link,
            )
        with pytest.raises(RuntimeError, match="without an email address or a password"):
            command.downgrade(alembic_config(scratch_url), "0017")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM users")).scalar() == 2
            links = connection.execute(text("SELECT count(*) FROM linked_identities")).scalar()
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert links == 1 and version == "0018"
    finally:
        engine.dispose()


# -- the adapter: an answer that is not HTTP is "unavailable", not a crash


@contextmanager
def _answering(raw: bytes) -> Iterator[str]:
    """A server on 127.0.0.1 that answers every request with ``raw`` bytes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(raw)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"not http at all\r\n\r\n", id="bad-status-line"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"openid":',
            id="cut-short",
        ),
    ],
)
def test_a_broken_http_answer_is_unavailable_and_never_shows_the_secret(raw: bytes):
    with _answering(raw) as url:
        api = HttpWeChatApi(url, timeout=2, retries=1)
        with pytest.raises(WeChatUnavailable) as raised:
            api.exchange_code(APP_APPID, APP_SECRET, "a-code")
        with pytest.raises(WeChatUnavailable):
            api.user_info("an-access-token", "an-openid")
    assert APP_SECRET not in str(raised.value) and "a-code" not in str(raised.value)


# -- one person, one account: the same unionid from two WeChat apps at once

CSRF_RE = re.compile(r'name="(csrf_token|ticket|next|flow)" value="([^"]*)"')


def _hidden(html: str) -> dict[str, str]:
    return dict(CSRF_RE.findall(html))


def _ready_to_create(
    app: Any, sms: Any, headers: dict[str, str], next_path: str = "/privacy"
) -> tuple[Any, dict[str, str]]:
    """A browser back from WeChat (QR code, or inside WeChat) with the phone
    code sent to a new number: the form that creates the account."""
    browser = https_client(app)
    started = browser.get("/signin/wechat", query_string={"next": next_path}, headers=headers)
    back = browser.get(local_path(follow_wechat(started.headers["Location"])), headers=headers)
    assert back.status_code == 200 and "Finish signing in with WeChat" in back.text
    phone = new_person().phone
    sent = browser.post("/signin/wechat/phone", data={**_hidden(back.text), "phone": phone})
    assert sent.status_code == 200, sent.text
    form = {**_hidden(sent.text), "phone": phone, "code": sms.last_code(phone, 1)}
    return browser, {**form, "full_name": "王小明"}


def test_one_unionid_from_two_apps_at_once_makes_one_account_not_two(app, sms, wechat):
    ready = [
        _ready_to_create(app, sms, {}),
        _ready_to_create(app, sms, {"User-Agent": IN_WECHAT}),
    ]
    barrier = threading.Barrier(2)
    answers: list[Any] = [None, None]

    def finish(index: int) -> None:
        browser, form = ready[index]
        barrier.wait(timeout=30)
        answers[index] = browser.post("/signin/wechat/phone/code", data=form)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    won, lost = sorted(answers, key=lambda answer: answer.status_code)
    assert won.status_code == 303 and lost.status_code == 400, lost.text
    assert "already signs in to another account" in lost.text
    # alice's unionid belongs to one account; the other was never made.
    assert row_count(app, "users") == 1
    owners = row_count(app, "linked_identities", "user_id = (SELECT min(id) FROM users)")
    assert owners == row_count(app, "linked_identities") == 1


# -- the last way in: two removals at once cannot take the last two ways


def test_unlinking_wechat_and_removing_the_password_at_once_leave_one_way_in(
    app, client: FlaskClient, sms, wechat
):
    phone, token = wechat_account(client, sms, wechat)
    password = "quiet-harbour-lantern-77"
    added = client.post(
        "/api/v1/me/password/new", json={"new_password": password}, headers=bearer(token)
    )
    assert added.status_code == 204, added.json

    def remove(index: int, own: FlaskClient) -> Any:
        if index == 0:
            return own.delete("/api/v1/me/wechat", headers=bearer(token))
        body = {"current_password": password}
        return own.post("/api/v1/me/password/remove", json=body, headers=bearer(token))

    answers = race(app, 2, remove)
    assert sorted(answer.status_code for answer in answers) == [204, 409]
    [refused] = [answer for answer in answers if answer.status_code == 409]
    assert refused.json["type"].endswith("last-way-in")
    # Whichever won, the other way still signs in.
    if row_count(app, "linked_identities") == 1:
        assert app_login(client, wechat).status_code == 200
    else:
        assert login(client, phone, password).status_code == 200


# -- `next` cannot lead off the site through WeChat's round trip


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/", "//evil.example/account", "/\\evil.example", "/account/../../x"],
)
def test_next_never_leaves_the_site_after_wechat(app, sms, wechat, next_path: str):
    wechat.people["dave"] = Person("dave", "union-dave", "Dave")
    wechat.approving = "dave"
    browser, form = _ready_to_create(app, sms, {}, next_path=next_path)
    done = browser.post("/signin/wechat/phone/code", data=form)
    assert done.status_code == 303
    assert done.headers["Location"] == "/consent?next=%2Faccount"


# -- nothing of WeChat's in clear: database (audit trail, outbox), logs, answers


def test_wechat_ids_tokens_and_secrets_are_nowhere_in_clear(
    app, client: FlaskClient, sms, wechat, caplog
):
    caplog.set_level(logging.DEBUG)
    wechat.fail_next("/sns/oauth2/access_token", "html")
    failed = app_login(client, wechat)
    assert failed.status_code == 503
    wechat_account(client, sms, wechat)
    again = app_login(client, wechat)
    assert again.status_code == 200
    openid = wechat.openid(APP_APPID, "alice")
    stored = database_text(app)
    seen = caplog.text + failed.text + again.text + stored
    assert wechat.tokens  # WeChat did hand out access tokens
    for secret in (openid, "union-alice", APP_SECRET, *wechat.tokens):
        assert secret not in seen


def test_on_the_pages_a_password_link_waits_for_the_second_factor(
    app, client: FlaskClient, mailbox, sms, wechat, clock
):
    person, session = register(client, mailbox, sms)
    totp, _ = enable_totp(client, session, at=clock.now())
    clock.advance(seconds=30)
    browser = https_client(app)
    started = browser.get("/signin/wechat?next=/privacy")
    back = browser.get(local_path(follow_wechat(started.headers["Location"])))
    form = {**_hidden(back.text), "identifier": person.email, "password": person.password}
    asked = browser.post("/signin/wechat/link/password", data=form)
    assert asked.status_code == 200 and "authenticator app" in asked.text, asked.text
    assert row_count(app, "linked_identities") == 0
    step = _hidden(asked.text)
    methods = re.search(r'name="methods" value="([^"]*)"', asked.text)
    assert methods is not None
    done = browser.post(
        "/signin/second-factor",
        data={
            **step,
            "methods": methods.group(1),
            "method": "totp",
            "totp": totp.at(clock.now()),
        },
    )
    assert done.status_code == 303, done.text
    assert row_count(app, "linked_identities") == 1


def test_withdrawing_wechat_login_and_removing_the_passkey_at_once_leave_one_way_in(
    app, client: FlaskClient, sms, wechat
):
    _, token = wechat_account(client, sms, wechat)
    granted = client.post(
        "/api/v1/me/consent/device_biometrics/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert granted.status_code == 200, granted.json
    passkey = enrol(client, token, SoftAuthenticator())

    def remove(index: int, own: FlaskClient) -> Any:
        if index == 0:
            return own.post("/api/v1/me/consent/wechat_login/withdraw", headers=bearer(token))
        return own.delete(f"/api/v1/me/credentials/{passkey['id']}", headers=bearer(token))

    answers = race(app, 2, remove)
    codes = sorted(answer.status_code for answer in answers)
    assert codes[1] == 409 and codes[0] in (200, 204), [a.json for a in answers]
    ways = row_count(app, "linked_identities") + row_count(
        app, "webauthn_credentials", "revoked_at IS NULL"
    )
    assert ways == 1
