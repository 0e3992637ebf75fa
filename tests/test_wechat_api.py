"""WeChat sign-in from the mobile app, over the JSON API, against the fake
WeChat on 127.0.0.1: creating an account, linking one, signing in again, the
same person across the platform's WeChat apps, codes and tickets replayed,
WeChat failing mid-flow, the last way in, withdrawing the purpose, export."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.dpop_client import DpopKey
from tests.helpers import (
    POLICY_VERSION,
    assert_problem,
    baseline_consent,
    bearer,
    enrol,
    login,
    passkey_sign_in,
    register,
    row_count,
)
from tests.soft_authenticator import SoftAuthenticator
from tests.wechat_helpers import (
    APP_APPID,
    TIMEOUT,
    app_login,
    consent_with_wechat,
    create_by_phone,
    fake_wechat,
    new_person,
    settings_overrides,
    wechat,
    wechat_account,
)

__all__ = ["fake_wechat", "settings_overrides", "wechat"]  # fixtures


def _counts(app: Any) -> tuple[int, int, int]:
    return (
        row_count(app, "users"),
        row_count(app, "linked_identities"),
        row_count(app, "consent_records"),
    )


def test_an_unknown_wechat_account_creates_an_account_with_phone_and_code(
    app, client: FlaskClient, sms, wechat
):
    before = _counts(app)
    pending = app_login(client, wechat)
    assert pending.status_code == 202
    assert pending.json["status"] == "link_required"
    assert pending.json["methods"] == ["password", "phone"]
    # Nothing is written until the person finishes.
    assert _counts(app) == before

    phone = new_person().phone
    created = create_by_phone(client, sms, pending.json["ticket"], phone)
    assert created.status_code == 200, created.json
    assert created.json["amr"] == ["fed", "sms"]
    # A new account still owes its required decisions; wechat_login is not owed.
    assert created.json["status"] == "consent_required"
    owed = {p["code"] for p in created.json["consent_required"]["purposes"]}
    assert "account" in owed and "wechat_login" not in owed
    token = created.json["token"]
    consent_with_wechat(client, token)
    # wechat_login was recorded at the moment of signing in with WeChat.
    ledger = client.get("/api/v1/me/consent", headers=bearer(token)).json["decisions"]
    wechat_login = [d for d in ledger if d["purpose"] == "wechat_login"]
    assert [(d["decision"], d["channel"]) for d in wechat_login] == [("granted", "login")]

    me = client.get("/api/v1/me", headers=bearer(token)).json
    assert me["email"] is None and me["phone"] == phone
    linked = client.get("/api/v1/me/wechat", headers=bearer(token)).json["linked"]
    assert [(r["provider"], r["app_id"]) for r in linked] == [("wechat", APP_APPID)]
    # The identity is sealed: neither the openid nor the unionid is stored in clear.
    openid = wechat.openid(APP_APPID, "alice")
    for column in ("openid_index", "unionid_index"):
        assert row_count(app, "linked_identities", f"{column} = :v", v=openid) == 0


def test_a_known_wechat_account_signs_in_with_amr_fed(app, client: FlaskClient, sms, wechat):
    phone, _ = wechat_account(client, sms, wechat)
    again = app_login(client, wechat)
    assert again.status_code == 200, again.json
    assert again.json["status"] == "authenticated"
    assert again.json["amr"] == ["fed"]
    me = client.get("/api/v1/me", headers=bearer(again.json["token"])).json
    assert me["phone"] == phone


def test_the_same_unionid_under_another_app_is_the_same_account(
    app, client: FlaskClient, sms, wechat
):
    wechat_account(client, sms, wechat)
    # The website's app: another openid for alice, the same unionid.
    from app.wechat.signin import WeChatSignIn

    with app.test_request_context():
        from app.http.scope import services

        svc = services()
        web = WeChatSignIn(svc)
        code = wechat.issue_code("wx00000000000web1", "alice", "snsapi_login")
        identity = web.exchange("web", code)
        found = web.identities.find(identity)
        assert found is not None and found[1] is None  # the account, not yet this app's row
        svc.db.rollback()
    assert wechat.openid("wx00000000000web1", "alice") != wechat.openid(APP_APPID, "alice")


def test_a_replayed_code_is_refused_and_exchanged_once(app, client: FlaskClient, sms, wechat):
    wechat_account(client, sms, wechat)
    wechat.calls.clear()
    code = wechat.issue_code(APP_APPID, "alice", "snsapi_userinfo")
    first = client.post("/api/v1/login/wechat", json={"code": code, "token_delivery": "bearer"})
    assert first.status_code == 200
    replayed = client.post("/api/v1/login/wechat", json={"code": code})
    assert_problem(replayed, 400, "wechat-code-invalid")
    assert wechat.calls_to("/sns/oauth2/access_token") == 2  # one per attempt, no retry


def test_linking_an_existing_account_with_its_password(
    app, client: FlaskClient, mailbox, sms, wechat
):
    person, _ = register(client, mailbox, sms)
    pending = app_login(client, wechat, "bob")
    ticket = pending.json["ticket"]
    wrong = client.post(
        "/api/v1/login/wechat/link/password",
        json={"ticket": ticket, "identifier": person.email, "password": "not-the-password"},
    )
    assert_problem(wrong, 401, "invalid-credentials")
    assert row_count(app, "linked_identities") == 0
    linked = client.post(
        "/api/v1/login/wechat/link/password",
        json={"ticket": ticket, "identifier": person.email, "password": person.password},
    )
    assert linked.status_code == 200, linked.json
    assert linked.json["amr"] == ["fed", "pwd"]
    # The ticket finished one sign-in: it is spent.
    again = client.post(
        "/api/v1/login/wechat/link/password",
        json={"ticket": ticket, "identifier": person.email, "password": person.password},
    )
    assert_problem(again, 400, "wechat-link-invalid")
    # bob signs in to that account with WeChat from now on.
    signed_in = app_login(client, wechat, "bob")
    assert signed_in.status_code == 200, signed_in.json
    me = client.get("/api/v1/me", headers=bearer(signed_in.json["token"])).json
    assert me["email"] == person.email


def test_linking_an_existing_account_by_its_phone_code(
    app, client: FlaskClient, mailbox, sms, wechat
):
    person, _ = register(client, mailbox, sms)
    users = row_count(app, "users")
    pending = app_login(client, wechat, "carol")
    done = create_by_phone(client, sms, pending.json["ticket"], person.phone, name="")
    assert done.status_code == 200, done.json
    assert row_count(app, "users") == users  # linked, not created
    me = client.get("/api/v1/me", headers=bearer(done.json["token"])).json
    assert me["email"] == person.email


def test_a_forged_ticket_is_refused(client: FlaskClient, wechat):
    pending = app_login(client, wechat)
    forged = pending.json["ticket"][:-4] + "AAAA"
    answer = client.post(
        "/api/v1/login/wechat/phone/code", json={"ticket": forged, "phone": new_person().phone}
    )
    assert_problem(answer, 400, "wechat-link-invalid")


@pytest.mark.parametrize(
    ("fault", "status", "slug"),
    [
        ({"mode": "busy"}, 503, "wechat-busy"),
        ({"mode": "slow", "seconds": TIMEOUT * 3}, 503, "wechat-unavailable"),
        ({"mode": "malformed"}, 503, "wechat-unavailable"),
        ({"mode": "html"}, 503, "wechat-unavailable"),
        ({"mode": "errcode", "errcode": 40013}, 502, "wechat-misconfigured"),
        ({"mode": "errcode", "errcode": 40029}, 400, "wechat-code-invalid"),
        ({"mode": "errcode", "errcode": 45011}, 502, "wechat-failed"),
    ],
)
def test_wechat_failing_writes_nothing_and_the_code_exchange_is_never_retried(
    app, client: FlaskClient, sms, wechat, fault: dict[str, Any], status: int, slug: str
):
    wechat_account(client, sms, wechat)
    before = _counts(app)
    wechat.calls.clear()
    wechat.fail_next("/sns/oauth2/access_token", **fault)
    started = time.monotonic()
    answer = app_login(client, wechat)
    assert_problem(answer, status, slug)
    assert time.monotonic() - started < TIMEOUT * 3  # bounded by the timeout, not by WeChat
    assert wechat.calls_to("/sns/oauth2/access_token") == 1
    assert _counts(app) == before


def test_the_last_way_in_cannot_be_removed(app, client: FlaskClient, sms, wechat):
    _, token = wechat_account(client, sms, wechat)
    refused = client.delete("/api/v1/me/wechat", headers=bearer(token))
    assert_problem(refused, 409, "last-way-in")
    withdrawn = client.post("/api/v1/me/consent/wechat_login/withdraw", headers=bearer(token))
    assert_problem(withdrawn, 409, "last-way-in")
    assert row_count(app, "linked_identities") == 1

    # A password added, WeChat can go; then the password is the last way in.
    added = client.post(
        "/api/v1/me/password/new",
        json={"new_password": "quiet-harbour-lantern-77"},
        headers=bearer(token),
    )
    assert added.status_code == 204, added.json
    assert client.delete("/api/v1/me/wechat", headers=bearer(token)).status_code == 204
    assert row_count(app, "linked_identities") == 0
    removed = client.post(
        "/api/v1/me/password/remove",
        json={"current_password": "quiet-harbour-lantern-77"},
        headers=bearer(token),
    )
    assert_problem(removed, 409, "last-way-in")


def test_an_account_made_through_wechat_adds_a_password_and_signs_in_with_it(
    app, client: FlaskClient, sms, wechat
):
    phone, token = wechat_account(client, sms, wechat)
    assert login(client, phone, "quiet-harbour-lantern-77").status_code == 401
    added = client.post(
        "/api/v1/me/password/new",
        json={"new_password": "quiet-harbour-lantern-77"},
        headers=bearer(token),
    )
    assert added.status_code == 204
    # No email address: the notice goes to the phone.
    assert "password was just changed" in sms.to(phone)[-1]["text"]
    assert login(client, phone, "quiet-harbour-lantern-77").status_code == 200
    twice = client.post(
        "/api/v1/me/password/new",
        json={"new_password": "another-quiet-lantern-78"},
        headers=bearer(token),
    )
    assert_problem(twice, 409, "password-exists")


def test_withdrawing_wechat_login_unlinks_wechat(app, client: FlaskClient, mailbox, sms, wechat):
    person, _ = register(client, mailbox, sms)
    pending = app_login(client, wechat, "bob")
    linked = client.post(
        "/api/v1/login/wechat/link/password",
        json={
            "ticket": pending.json["ticket"],
            "identifier": person.email,
            "password": person.password,
        },
    )
    token = linked.json["token"]
    assert row_count(app, "linked_identities") == 1
    withdrawn = client.post("/api/v1/me/consent/wechat_login/withdraw", headers=bearer(token))
    assert withdrawn.status_code == 200, withdrawn.json
    assert row_count(app, "linked_identities") == 0
    # bob is a stranger again.
    assert app_login(client, wechat, "bob").json["status"] == "link_required"


def test_the_export_shows_the_linked_identity(app, client: FlaskClient, sms, wechat):
    _, token = wechat_account(client, sms, wechat)
    answer = client.post("/api/v1/me/export", headers=bearer(token))
    assert answer.status_code == 200, answer.json
    exported = answer.json
    [identity] = exported["linked_identities"]
    assert identity["provider"] == "wechat" and identity["app_id"] == APP_APPID
    assert identity["openid"] == wechat.openid(APP_APPID, "alice")
    assert identity["unionid"] == "union-alice"
    assert exported["profile"]["email"] is None
    assert exported["profile"]["credentials"] == []


def test_an_account_made_through_wechat_adds_a_passkey_and_removes_wechat(
    app, client: FlaskClient, sms, wechat
):
    _, token = wechat_account(client, sms, wechat)
    granted = client.post(
        "/api/v1/me/consent/device_biometrics/grant",
        json={"policy_version": POLICY_VERSION},
        headers=bearer(token),
    )
    assert granted.status_code == 200, granted.json
    authenticator = SoftAuthenticator()
    passkey = enrol(client, token, authenticator)
    assert client.delete("/api/v1/me/wechat", headers=bearer(token)).status_code == 204

    # The passkey signs in, and is now the last way in: it stays.
    signed_in, _ = passkey_sign_in(client, authenticator)
    assert signed_in.status_code == 200, signed_in.json
    removed = client.delete(f"/api/v1/me/credentials/{passkey['id']}", headers=bearer(token))
    assert_problem(removed, 409, "last-way-in")
    withdrawn = client.post("/api/v1/me/consent/device_biometrics/withdraw", headers=bearer(token))
    assert_problem(withdrawn, 409, "last-way-in")
    assert row_count(app, "webauthn_credentials", "revoked_at IS NULL") == 1


def test_cancelling_the_account_deletes_its_linked_identities(
    app, client: FlaskClient, sms, wechat
):
    _, token = wechat_account(client, sms, wechat)
    cancelled = client.post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"}, headers=bearer(token)
    )
    assert cancelled.status_code == 200, cancelled.json
    assert row_count(app, "linked_identities") == 0
    # The WeChat account is a stranger again.
    assert app_login(client, wechat).json["status"] == "link_required"


def test_linking_an_existing_account_with_one_of_its_passkeys(
    app, client: FlaskClient, mailbox, sms, wechat
):
    consent = baseline_consent(device_biometrics="granted")
    person, session = register(client, mailbox, sms, consent=consent)
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    pending = app_login(client, wechat, "carol")
    options = client.post("/api/v1/webauthn/authentication/options")
    answer = authenticator.get(options.json)
    body = {
        **answer,
        "challenge_id": options.json["challenge_id"],
        "ticket": pending.json["ticket"],
    }
    linked = client.post("/api/v1/login/wechat/link/passkey", json=body)
    assert linked.status_code == 200, linked.json
    assert linked.json["amr"][0] == "fed" and len(linked.json["amr"]) > 1  # and the passkey's
    me = client.get("/api/v1/me", headers=bearer(linked.json["token"])).json
    assert me["email"] == person.email
    assert app_login(client, wechat, "carol").status_code == 200


def test_an_app_with_a_dpop_key_finishes_only_with_that_key(app, client: FlaskClient, sms, wechat):
    key, other = DpopKey(), DpopKey()
    code = wechat.issue_code(APP_APPID, "alice", "snsapi_userinfo")
    pending = client.post(
        "/api/v1/login/wechat",
        json={"code": code, "token_delivery": "bearer"},
        headers=key.headers("POST", "/api/v1/login/wechat"),
    )
    assert pending.status_code == 202, pending.json
    ticket, phone = pending.json["ticket"], new_person().phone
    path = "/api/v1/login/wechat/phone/code"
    body = {"ticket": ticket, "phone": phone}
    # Without the key, or with another one, the ticket is nobody's.
    assert_problem(client.post(path, json=body), 400, "wechat-link-invalid")
    stolen = client.post(path, json=body, headers=other.headers("POST", path))
    assert_problem(stolen, 400, "wechat-link-invalid")
    sent = client.post(path, json=body, headers=key.headers("POST", path))
    assert sent.status_code == 202, sent.json
    finish = "/api/v1/login/wechat/phone"
    done = client.post(
        finish,
        json={
            **body,
            "flow": sent.json["flow"],
            "code": sms.last_code(phone),
            "full_name": "王小明",
        },
        headers=key.headers("POST", finish),
    )
    assert done.status_code == 200, done.json
    assert done.json["token_type"] == "DPoP"
    # The token is bound to the key: a bearer use of it is refused.
    token = done.json["token"]
    assert client.get("/api/v1/me/consent", headers=bearer(token)).status_code == 401
    proof = key.headers("GET", "/api/v1/me/consent", token=token)
    assert client.get("/api/v1/me/consent", headers=proof).status_code == 200


def test_an_account_made_through_wechat_adds_an_email_address_without_a_password(
    app, client: FlaskClient, mailbox, sms, wechat
):
    _, token = wechat_account(client, sms, wechat)
    email = new_person().email
    started = client.post("/api/v1/me/email", json={"email": email}, headers=bearer(token))
    assert started.status_code == 202, started.json
    confirmed = client.post(
        "/api/v1/me/email/confirm", json={"code": mailbox.last_code(email)}, headers=bearer(token)
    )
    assert confirmed.status_code < 300, confirmed.json
    assert client.get("/api/v1/me", headers=bearer(token)).json["email"] == email


def test_an_account_with_a_password_still_needs_it_to_change_its_email(
    client: FlaskClient, mailbox, sms
):
    _, session = register(client, mailbox, sms)
    answer = client.post(
        "/api/v1/me/email", json={"email": new_person().email}, headers=bearer(session["token"])
    )
    assert_problem(answer, 403, "current-password-required")


def test_an_account_made_through_wechat_corrects_its_name_without_a_password(
    client: FlaskClient, sms, wechat
):
    _, token = wechat_account(client, sms, wechat)
    corrected = client.post("/api/v1/me/name", json={"full_name": "王大明"}, headers=bearer(token))
    assert corrected.status_code == 200, corrected.json
    assert client.get("/api/v1/me", headers=bearer(token)).json["full_name"] == "王大明"


def test_an_account_with_a_password_still_needs_it_to_correct_its_name(
    client: FlaskClient, mailbox, sms
):
    person, session = register(client, mailbox, sms)
    headers = bearer(session["token"])
    answer = client.post("/api/v1/me/name", json={"full_name": "Grace Hopper"}, headers=headers)
    assert_problem(answer, 403, "current-password-required")
    wrong = client.post(
        "/api/v1/me/name",
        json={"full_name": "Grace Hopper", "current_password": "not-the-password"},
        headers=headers,
    )
    assert_problem(wrong, 422)
    assert client.get("/api/v1/me", headers=headers).json["full_name"] == person.full_name
    done = client.post(
        "/api/v1/me/name",
        json={"full_name": "Grace Hopper", "current_password": person.password},
        headers=headers,
    )
    assert done.status_code == 200, done.json
    assert client.get("/api/v1/me", headers=headers).json["full_name"] == "Grace Hopper"
