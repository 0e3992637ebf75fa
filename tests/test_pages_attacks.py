"""An outsider's attacks on the end-user pages, through the test client:
cross-site forms, open redirects, markup in what people type, personal data
where it should not be, consent tricks, stale and ended sessions, failed
calls that still change something, and account enumeration. Each test fails
on a real hole and passes where the pages hold."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.clock import FrozenClock
from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import (
    CATALOGUE,
    HIGH_LIMITS,
    POLICY_VERSION,
    Person,
    baseline_consent,
    bearer,
    login,
    new_person,
    other_browser,
    passkey_options,
    publish_policy,
    register,
    register_passkey,
    row_count,
)
from tests.soft_authenticator import SoftAuthenticator

REQUIRED = [p.code for p in CATALOGUE.decided_at_sign_in() if p.required]
OPTIONAL = [
    p.code
    for p in CATALOGUE.decided_at_sign_in()
    if not p.required and not p.needs_separate_action and p.withdrawable
]
SEPARATE = [p.code for p in CATALOGUE.decided_at_sign_in() if p.needs_separate_action]
TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')
FAKE_SERVER_LOGS = {"mail.log", "asyncio"}
MARKUP = '"><script>alert(1)</script></script><img src=x onerror=alert(2)>'


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def token_of(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    found = META_TOKEN.search(page.get_data(as_text=True)) or TOKEN.search(
        page.get_data(as_text=True)
    )
    assert found is not None, path
    return found.group(1)


def signed_in(client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, **consent: str) -> Person:
    person, _ = register(
        client, mailbox, sms, token_delivery="cookie", consent=baseline_consent(**consent)
    )
    return person


def signup_form(person: Person, token: str, ticked: list[str], **extra: str) -> dict[str, Any]:
    return {
        "csrf_token": token,
        "email": person.email,
        "phone": person.phone,
        "full_name": person.full_name,
        "password": person.password,
        "policy_version": POLICY_VERSION,
        **{f"purpose-{code}": "granted" for code in ticked},
        **extra,
    }


def decisions(client: FlaskClient) -> dict[str, str]:
    body = client.get("/api/v1/me/consent").json
    return {d["purpose"]: d["decision"] for d in body["decisions"]}


def without_tokens(html: str) -> str:
    """A page with what differs on every response (tokens, nonces, handles) blanked."""
    html = re.sub(r'nonce="[^"]+"', 'nonce=""', html)
    html = re.sub(r'(csrf_token" value|csrf-token" content)="[0-9a-f]+"', r'\1=""', html)
    return re.sub(r'name="flow" value="[^"]+"', 'name="flow" value=""', html)


# -- CSRF ---------------------------------------------------------------------------

SIGNED_IN_POSTS = [
    ("/signout", {}),
    ("/consent", {"policy_version": POLICY_VERSION}),
    ("/step-up", {"password": "velvet-orbit-canyon-42"}),
    ("/account/profile/name", {"full_name": "Mallory", "current_password": "x"}),
    ("/account/security/password", {"current_password": "x", "new_password": "y" * 20}),
    ("/account/security/totp", {}),
    ("/account/security/recovery-codes", {}),
    ("/account/sessions/revoke-others", {}),
    ("/privacy/marketing_email/grant", {"policy_version": POLICY_VERSION}),
    ("/privacy/requests", {"kind": "access_export"}),
    ("/privacy/export", {}),
    ("/privacy/cancel", {"confirm": "cancel my account"}),
]


@pytest.mark.parametrize("path,fields", SIGNED_IN_POSTS)
def test_signed_in_forms_refuse_a_missing_or_another_browsers_token(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, path: str, fields: dict
):
    person = signed_in(client, mailbox, sms)
    attacker = other_browser(app)
    signed_in(attacker, mailbox, sms)
    theirs = token_of(attacker, "/account")
    before = client.get("/api/v1/me/consent").json
    for sent in ({}, {"csrf_token": ""}, {"csrf_token": theirs}):
        refused = client.post(path, data={**fields, **sent})
        assert refused.status_code == 403, (path, sent, refused.status_code)
        assert "This form has expired" in refused.get_data(as_text=True)
    # Still signed in, nothing decided, the name and password unchanged.
    assert client.get("/api/v1/me/consent").json == before
    me = client.get("/api/v1/me")
    assert me.status_code == 200 and me.json["full_name"] == person.full_name
    assert login(other_browser(app), person.email, person.password).status_code == 200


def test_login_csrf_through_the_sign_in_form_is_refused(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    """The attacker's own account, posted from the attacker's page into the
    victim's browser with the attacker's own valid pre-session token."""
    attacker_browser = other_browser(app)
    attacker, _ = register(attacker_browser, mailbox, sms)
    stranger = other_browser(app)
    their_token = token_of(stranger, "/signin")
    victim = client
    form = {"identifier": attacker.email, "password": attacker.password}
    for sent in ({}, {"csrf_token": their_token}):
        refused = victim.post("/signin", data={**form, **sent})
        assert refused.status_code == 403
        assert "Set-Cookie" not in refused.headers or "privid_session" not in str(
            refused.headers.getlist("Set-Cookie")
        )
        assert victim.get("/api/v1/me").status_code == 401
    # Even once the victim's browser has its own pre-session cookie.
    token_of(victim, "/signin")
    assert victim.post("/signin", data={**form, "csrf_token": their_token}).status_code == 403
    assert victim.get("/api/v1/me").status_code == 401


def test_login_csrf_through_the_sign_up_codes_is_refused(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    """The attacker signs up, then makes the victim's browser post the last code."""
    attacker_browser = other_browser(app)
    attacker = new_person()
    token = token_of(attacker_browser, "/signup")
    started = attacker_browser.post("/signup", data=signup_form(attacker, token, REQUIRED))
    assert started.status_code == 303
    codes = started.headers["Location"]
    email_form = {
        "csrf_token": token,
        "channel": "email",
        "email-code": mailbox.last_code(attacker.email),
    }
    assert attacker_browser.post(codes, data=email_form).status_code == 303
    victim = client
    token_of(victim, "/signup")
    phone_code = sms.last_code(attacker.phone)
    for sent in ({}, {"csrf_token": token}):
        refused = victim.post(codes, data={"channel": "phone", "phone-code": phone_code, **sent})
        assert refused.status_code == 403
    assert victim.get("/api/v1/me").status_code == 401


def test_sign_in_forms_refuse_posts_without_the_browsers_token(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person, _ = register(other_browser(app), mailbox, sms)
    token_of(client, "/signin")
    forms = [
        ("/signin", {"identifier": person.email, "password": person.password}),
        ("/signin/sms", {"phone": person.phone}),
        ("/signin/sms/code", {"phone": person.phone, "flow": "x" * 30, "code": "123456"}),
        ("/signin/second-factor", {"ticket": "x" * 30, "method": "totp", "totp": "123456"}),
        ("/signin/second-factor/email", {"ticket": "x" * 30}),
        ("/signup", signup_form(new_person(), "", REQUIRED)),
    ]
    sent_before = len(sms.messages)
    for path, fields in forms:
        refused = client.post(path, data={**fields, "csrf_token": "0" * 64})
        assert refused.status_code == 403, path
    assert len(sms.messages) == sent_before
    assert client.get("/api/v1/me").status_code == 401


def test_the_scripts_json_calls_need_the_header_token_not_just_the_cookie(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    signed_in(client, mailbox, sms)
    token = token_of(client, "/account/passkeys")
    # A cross-site page can send text/plain or a form without a preflight.
    for kind in ("text/plain", "application/x-www-form-urlencoded"):
        refused = client.post("/api/v1/webauthn/registration/options", data="{}", content_type=kind)
        assert refused.status_code in (403, 415), (kind, refused.status_code)
        revoke = client.post("/api/v1/me/sessions/revoke-others", data="{}", content_type=kind)
        assert revoke.status_code == 403, kind
    no_header = client.post("/api/v1/webauthn/registration/options", json={})
    assert no_header.status_code == 403
    with_header = client.post(
        "/api/v1/me/sessions/revoke-others", json={}, headers={"X-CSRF-Token": token}
    )
    assert with_header.status_code == 200


def test_login_csrf_through_the_json_sign_in_calls_is_refused(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    """What a cross-site page can send without a preflight (a simple content
    type) is refused before a session is made; a preflight is never granted."""
    attacker, _ = register(other_browser(app), mailbox, sms)
    body = json.dumps(
        {"identifier": attacker.email, "password": attacker.password, "token_delivery": "cookie"}
    )
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        for path in ("/api/v1/login/password", "/api/v1/webauthn/authentication/verify"):
            refused = client.post(path, data=body, content_type=kind)
            assert refused.status_code in (403, 415), (path, kind, refused.status_code)
            assert "Set-Cookie" not in refused.headers or "privid_session" not in str(
                refused.headers.getlist("Set-Cookie")
            )
    assert client.get("/api/v1/me").status_code == 401
    preflight = client.options(
        "/api/v1/login/password",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


# -- open redirects and header injection --------------------------------------------

HOSTILE_NEXT = [
    "https://evil.example/account",
    "//evil.example/account",
    "/\\evil.example",
    "\\\\evil.example",
    "/account/..//evil.example",
    "/account/%2e%2e/%2f%2fevil.example",
    "/account%0d%0aSet-Cookie:%20x=1",
    "/account\r\nSet-Cookie: x=1",
    "/account\tx",
    " //evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "／／evil.example",
    "/account@evil.example",
    "/account?x=1#\\@evil.example",
    "/oauth/authorize/../../\\evil.example",
]


def _off_site(location: str) -> bool:
    parts = urlsplit(location)
    return bool(parts.scheme or parts.netloc) or location.startswith(("//", "/\\", "\\"))


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_the_language_switch_never_leaves_the_site(client: FlaskClient, target: str):
    response = client.get("/lang/zh-CN", query_string={"next": target})
    assert response.status_code == 303
    location = response.headers["Location"]
    assert not _off_site(location) and "\n" not in location and "\r" not in location
    assert "Set-Cookie: x" not in str(response.headers)


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_signing_in_never_returns_off_site(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, target: str
):
    person, _ = register(other_browser(app), mailbox, sms)
    token = token_of(client, "/signin")
    response = client.post(
        "/signin",
        data={
            "csrf_token": token,
            "identifier": person.email,
            "password": person.password,
            "next": target,
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/account"


@pytest.mark.parametrize("target", HOSTILE_NEXT[:8])
def test_sign_up_and_the_consent_step_never_return_off_site(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, target: str
):
    person = new_person()
    token = token_of(client, f"/signup?next={target}")
    started = client.post("/signup", data=signup_form(person, token, REQUIRED, next=target))
    codes = started.headers["Location"]
    assert "evil" not in codes
    # The codes address is a URL too: a crafted next on it is ignored.
    crafted = f"{urlsplit(codes).path}?next={target}"
    client.post(
        crafted,
        data={
            "csrf_token": token,
            "channel": "email",
            "email-code": mailbox.last_code(person.email),
        },
    )
    done = client.post(
        crafted,
        data={"csrf_token": token, "channel": "phone", "phone-code": sms.last_code(person.phone)},
    )
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    consent = client.get("/consent", query_string={"next": target})
    assert consent.status_code == 303 and consent.headers["Location"] == "/account"


def test_a_next_that_passes_through_the_consent_step_still_cannot_leave(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person, _ = register(other_browser(app), mailbox, sms)
    token = token_of(client, "/signin")
    chained = "/consent?next=//evil.example/x"
    signed = client.post(
        "/signin",
        data={
            "csrf_token": token,
            "identifier": person.email,
            "password": person.password,
            "next": chained,
        },
    )
    assert signed.headers["Location"] == chained  # a page of ours, which checks its own next
    onward = client.get(chained)
    assert onward.status_code == 303 and onward.headers["Location"] == "/account"


@pytest.mark.parametrize("acr", ['aal1" onmouseover="x', "<script>x</script>"])
def test_step_up_reflects_acr_and_next_only_escaped(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, acr: str
):
    signed_in(client, mailbox, sms)
    page = client.get("/step-up", query_string={"acr": acr, "next": "//evil.example"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # Escaped where shown; the off-site next is dropped from the form (the
    # language links carry this page's own address, encoded).
    assert acr not in html
    assert 'value="//evil' not in html and 'data-next="//evil' not in html
    token = TOKEN.search(html)
    assert token is not None
    done = client.post(
        "/step-up",
        data={
            "csrf_token": token.group(1),
            "password": "velvet-orbit-canyon-42",
            "acr": acr,
            "next": "//evil.example",
        },
    )
    assert done.status_code == 303 and done.headers["Location"] == "/account"


# -- markup in what people type ---------------------------------------------------------


def test_markup_in_a_name_device_and_user_agent_is_shown_as_text(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    client.environ_base["HTTP_USER_AGENT"] = MARKUP
    person, _ = register(
        client,
        mailbox,
        sms,
        person=new_person(full_name=MARKUP[:60]),
        token_delivery="cookie",
        consent=baseline_consent(security="granted"),
    )
    devices = client.get("/api/v1/me/devices")
    assert devices.status_code == 200, devices.json
    device = devices.json["devices"][0]["id"]
    token = token_of(client, "/account/devices")
    renamed = client.post(
        f"/account/devices/{device}/rename", data={"csrf_token": token, "label": MARKUP[:60]}
    )
    assert renamed.status_code == 303
    assert "&lt;script&gt;" in client.get("/account/devices").get_data(as_text=True)
    client.post(
        "/privacy/requests",
        data={"csrf_token": token_of(client, "/privacy/requests"), "kind": "rectification"},
    )
    for path in (
        "/account",
        "/account/profile",
        "/account/profile/name",
        "/account/devices",
        "/account/sessions",
        "/account/passkeys",
        "/privacy",
        "/privacy/requests",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "onerror=alert(2)>" not in html.replace("&gt;", ""), path
    assert person.full_name[:10] not in client.get("/account").get_data(as_text=True)


def test_markup_in_a_passkey_name_is_shown_as_text(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    phone = other_browser(app)
    person, session = register(
        phone, mailbox, sms, consent=baseline_consent(device_biometrics="granted")
    )
    options = passkey_options(phone, session["token"])
    answer = SoftAuthenticator().create(options)
    added = register_passkey(phone, session["token"], answer, options["challenge_id"])
    assert added.status_code == 201
    credential = phone.get("/api/v1/me/credentials", headers=bearer(session["token"])).json
    ref = credential["credentials"][0]["id"]
    renamed = phone.post(
        f"/api/v1/me/credentials/{ref}/rename",
        json={"nickname": MARKUP[:60]},
        headers=bearer(session["token"]),
    )
    assert renamed.status_code == 200, renamed.json
    assert login(client, person.email, person.password, "cookie").status_code == 200
    for path in ("/account/passkeys", f"/account/passkeys/{ref}/remove"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;" in client.get("/account/passkeys").get_data(as_text=True)


# -- personal data and secrets ------------------------------------------------------------


def test_sign_up_and_sign_in_keep_codes_and_contacts_out_of_urls_and_logs(
    app: Flask,
    client: FlaskClient,
    mailbox: Mailbox,
    sms: SmsOutbox,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG)
    person = new_person()
    token = token_of(client, "/signup")
    started = client.post("/signup", data=signup_form(person, token, REQUIRED))
    codes = started.headers["Location"]
    email_code = mailbox.last_code(person.email)
    client.post(codes, data={"csrf_token": token, "channel": "email", "email-code": email_code})
    phone_code = sms.last_code(person.phone)
    done = client.post(
        codes, data={"csrf_token": token, "channel": "phone", "phone-code": phone_code}
    )
    assert done.status_code == 303
    locations = [codes, done.headers["Location"]]
    signin = other_browser(app)
    sms_token = token_of(signin, "/signin/sms")
    sent = signin.post("/signin/sms", data={"csrf_token": sms_token, "phone": person.phone})
    assert sent.status_code == 200
    flow = re.search(r'name="flow" value="([^"]+)"', sent.get_data(as_text=True))
    assert flow is not None
    login_code = sms.last_code(person.phone, 2)
    finished = signin.post(
        "/signin/sms/code",
        data={
            "csrf_token": sms_token,
            "phone": person.phone,
            "flow": flow.group(1),
            "code": login_code,
        },
    )
    assert finished.status_code == 303
    locations.append(finished.headers["Location"])
    secrets = [person.email, person.phone, person.phone[3:], person.password]
    secrets += [email_code, phone_code, login_code, flow.group(1)]
    for location in locations:
        for secret in secrets:
            assert secret not in location, (secret, location)
    # The test's own mail server (aiosmtpd) logs the mail it receives; the rest is ours.
    logged = "\n".join(
        f"{r.name}: {r.getMessage()}" for r in caplog.records if r.name not in FAKE_SERVER_LOGS
    )
    for secret in secrets:
        assert secret not in logged, secret


def test_a_refused_form_never_sends_the_password_back(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    secret = "Zebra-quiet-window-9913"
    token = token_of(client, "/signup")
    weak = Person(email="not-an-email", phone="1", full_name="A", password=secret)
    refused = client.post("/signup", data=signup_form(weak, token, REQUIRED))
    assert refused.status_code == 422 and secret not in refused.get_data(as_text=True)
    wrong = client.post(
        "/signin", data={"csrf_token": token, "identifier": "x@example.com", "password": secret}
    )
    assert wrong.status_code == 400 and secret not in wrong.get_data(as_text=True)
    signed_in(client, mailbox, sms)
    token = token_of(client, "/account")
    for path, fields in (
        ("/step-up", {"password": secret}),
        ("/account/profile/name", {"full_name": "B", "current_password": secret}),
        ("/account/security/password", {"current_password": secret, "new_password": secret}),
    ):
        answer = client.post(path, data={"csrf_token": token, **fields})
        assert secret not in answer.get_data(as_text=True), path


def test_pages_that_should_mask_contacts_do(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = signed_in(client, mailbox, sms)
    # Another session's bearer token never appears on the sessions page.
    other = login(other_browser(app), person.email, person.password).json["token"]
    for path in (
        "/account",
        "/account/profile",
        "/account/security",
        "/account/sessions",
        "/account/devices",
        "/privacy",
        "/privacy/requests",
        "/step-up",
        "/account/profile/email/confirm",
    ):
        html = client.get(path).get_data(as_text=True)
        assert person.email not in html, path
        assert person.phone not in html and person.phone[3:] not in html, path
        assert other not in html, path


def test_one_time_secrets_are_never_cached(client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox):
    signed_in(client, mailbox, sms)
    token = token_of(client, "/account/security")
    scan = client.post("/account/security/totp", data={"csrf_token": token})
    assert scan.status_code == 200  # the TOTP secret is on this page
    for response in (scan, client.get("/account/profile"), client.get("/signin")):
        assert "no-store" in response.headers["Cache-Control"]


# -- someone else's things --------------------------------------------------------------------


def test_someone_elses_session_and_device_cannot_be_touched(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    victim = other_browser(app)
    signed_in(victim, mailbox, sms, security="granted")
    their_session = victim.get("/api/v1/me/sessions").json["sessions"][0]["session_id"]
    their_device = victim.get("/api/v1/me/devices").json["devices"][0]["id"]
    signed_in(client, mailbox, sms, security="granted")
    token = token_of(client, "/account")
    attempts = [
        client.post(f"/account/sessions/{their_session}/revoke", data={"csrf_token": token}),
        client.post(
            f"/account/devices/{their_device}/rename", data={"csrf_token": token, "label": "x"}
        ),
        client.post(f"/account/devices/{their_device}/revoke", data={"csrf_token": token}),
        client.get(f"/account/devices/{their_device}/revoke"),
    ]
    for answer in attempts:
        assert answer.status_code in (403, 404), answer.status_code
    assert victim.get("/api/v1/me").status_code == 200
    label = victim.get("/api/v1/me/devices").json["devices"][0]
    assert label["id"] == their_device and label.get("label") != "x"


def test_someone_elses_passkey_cannot_be_renamed_or_removed(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    owner = other_browser(app)
    _, session = register(
        owner, mailbox, sms, consent=baseline_consent(device_biometrics="granted")
    )
    options = passkey_options(owner, session["token"])
    answer = SoftAuthenticator().create(options)
    assert (
        register_passkey(owner, session["token"], answer, options["challenge_id"]).status_code
        == 201
    )
    listed = owner.get("/api/v1/me/credentials", headers=bearer(session["token"])).json
    ref, name = listed["credentials"][0]["id"], listed["credentials"][0].get("nickname")
    signed_in(client, mailbox, sms, device_biometrics="granted")
    token = token_of(client, "/account/passkeys")
    attempts = [
        client.get(f"/account/passkeys/{ref}/remove"),
        client.post(f"/account/passkeys/{ref}/remove", data={"csrf_token": token}),
        client.post(
            f"/account/passkeys/{ref}/rename", data={"csrf_token": token, "nickname": "mine"}
        ),
    ]
    for answer_ in attempts:
        assert answer_.status_code in (403, 404), answer_.status_code
    after = owner.get("/api/v1/me/credentials", headers=bearer(session["token"])).json
    assert [(c["id"], c.get("nickname")) for c in after["credentials"]] == [(ref, name)]


# -- consent ------------------------------------------------------------------------------


def test_no_purpose_is_pre_ticked_and_separate_consents_stand_alone(client: FlaskClient):
    html = client.get("/signup").get_data(as_text=True)
    boxes = re.findall(r"<input[^>]*type=\"checkbox\"[^>]*>", html)
    assert boxes, "the sign-up form offers choices"
    assert not [b for b in boxes if re.search(r"\bchecked\b", b)]
    for code in SEPARATE:
        # Each separate consent is a box of its own, never bundled with another.
        assert len(re.findall(rf'name="purpose-{code}"', html)) == 1
    names = re.findall(r'name="(purpose-[^"]+)"', html)
    assert len(names) == len(set(names))


def test_a_consent_step_replayed_after_a_withdrawal_does_not_grant_again(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    signed_in(client, mailbox, sms)
    optional = OPTIONAL[0]
    publish_policy(
        app,
        version="2026-12",
        effective_at=datetime.now(UTC),
        material=True,
        changes="New terms.",
        affected_purposes=[optional],
    )
    token = token_of(client, "/consent")
    form = {"csrf_token": token, "policy_version": "2026-12", f"purpose-{optional}": "granted"}
    assert client.post("/consent", data=form).status_code == 303
    assert decisions(client)[optional] == "granted"
    withdrawn = client.post(f"/privacy/{optional}/withdraw", data={"csrf_token": token})
    assert withdrawn.status_code == 303
    assert decisions(client)[optional] == "withdrawn"
    replay = client.post("/consent", data=form)
    assert replay.status_code == 303
    assert decisions(client)[optional] == "withdrawn"


def test_refusing_a_required_purpose_at_sign_up_creates_nothing(
    app: Flask, client: FlaskClient, sms: SmsOutbox
):
    token = token_of(client, "/signup")
    refused = client.post("/signup", data=signup_form(new_person(), token, REQUIRED[1:]))
    assert refused.status_code == 422
    assert row_count(app, "registration_flows") == 0 and sms.messages == []


# -- stale and ended sessions ------------------------------------------------------------------


class TestStaleSessions:
    @pytest.fixture
    def clock(self, frozen_clock: FrozenClock) -> FrozenClock:
        return frozen_clock

    def test_a_stale_session_cannot_change_password_or_contacts(
        self, app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, clock: FrozenClock
    ):
        person = signed_in(client, mailbox, sms)
        token = token_of(client, "/account")
        for _ in range(4):
            clock.advance(minutes=20)
            assert client.get("/account").status_code == 200
        for path, fields in (
            ("/account/security/password", {"current_password": person.password,
                                             "new_password": "quartz-lantern-meadow-77"}),
            ("/account/profile/email", {"email": new_person().email,
                                        "current_password": person.password}),
            ("/account/security/totp", {}),
        ):  # fmt: skip
            refused = client.post(path, data={"csrf_token": token, **fields})
            assert refused.status_code == 303, path
            assert refused.headers["Location"].startswith("/step-up?"), path
        assert login(other_browser(app), person.email, person.password).status_code == 200

    def test_an_idle_session_cannot_post_a_form_it_was_shown(
        self, app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, clock: FrozenClock
    ):
        person = signed_in(client, mailbox, sms)
        token = token_of(client, "/account/profile/name")
        clock.advance(minutes=31)
        late = client.post(
            "/account/profile/name",
            data={"csrf_token": token, "full_name": "Mallory", "current_password": person.password},
        )
        assert late.status_code == 303
        assert late.headers["Location"].startswith("/signin?next=")
        token = login(other_browser(app), person.email, person.password).json["token"]
        me = other_browser(app).get("/api/v1/me", headers=bearer(token))
        assert me.json["full_name"] == person.full_name


def test_sign_out_ends_the_session_itself_not_just_the_cookie(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    signed_in(client, mailbox, sms)
    cookie = client.get_cookie("__Host-privid_session") or next(
        c for c in client._cookies.values() if "session" in c.key and "pre" not in c.key
    )
    name, value = cookie.key, cookie.value
    token = token_of(client, "/account")
    out = client.post("/signout", data={"csrf_token": token})
    assert out.status_code == 303
    thief = other_browser(app)
    thief.set_cookie(name, value, domain="localhost")
    assert thief.get("/api/v1/me").status_code == 401
    assert thief.get("/account").status_code == 303


def test_a_password_changed_on_the_page_ends_the_other_sessions(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = signed_in(client, mailbox, sms)
    thief = other_browser(app)
    assert login(thief, person.email, person.password, "cookie").status_code == 200
    token = token_of(client, "/account/security/password")
    changed = client.post(
        "/account/security/password",
        data={
            "csrf_token": token,
            "current_password": person.password,
            "new_password": "quartz-lantern-meadow-77",
        },
    )
    assert changed.status_code == 303
    assert thief.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me").status_code == 200


def test_cancelling_ends_every_session_and_the_account(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = signed_in(client, mailbox, sms)
    phone = other_browser(app)
    assert login(phone, person.email, person.password, "cookie").status_code == 200
    app_token = login(other_browser(app), person.email, person.password).json["token"]
    token = token_of(client, "/privacy/cancel")
    done = client.post(
        "/privacy/cancel", data={"csrf_token": token, "confirm": "cancel my account"}
    )
    assert done.status_code == 303 and done.headers["Location"] == "/privacy/goodbye"
    assert client.get("/api/v1/me").status_code == 401
    assert phone.get("/account").status_code == 303
    assert phone.get("/api/v1/me").status_code == 401
    assert (
        other_browser(app)
        .get("/api/v1/me", headers={"Authorization": f"Bearer {app_token}"})
        .status_code
        == 401
    )
    assert login(other_browser(app), person.email, person.password).status_code != 200


# -- failed calls change nothing more than they should ------------------------------------------


def test_a_wrong_sign_up_code_burns_neither_code(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = new_person()
    token = token_of(client, "/signup")
    codes = client.post("/signup", data=signup_form(person, token, REQUIRED)).headers["Location"]
    email_code, phone_code = mailbox.last_code(person.email), sms.last_code(person.phone)
    wrong = "000000" if email_code != "000000" else "111111"
    refused = client.post(
        codes, data={"csrf_token": token, "channel": "email", "email-code": wrong}
    )
    assert refused.status_code == 422
    first = client.post(
        codes, data={"csrf_token": token, "channel": "email", "email-code": email_code}
    )
    assert first.status_code == 303
    done = client.post(
        codes, data={"csrf_token": token, "channel": "phone", "phone-code": phone_code}
    )
    assert done.status_code == 303 and client.get("/api/v1/me").status_code == 200


def test_wrong_sign_up_codes_count_towards_the_limit(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox, settings: Any
):
    """The tries are committed although the page catches the failure: otherwise
    a form could guess a six-digit code for ever."""
    person = new_person()
    token = token_of(client, "/signup")
    codes = client.post("/signup", data=signup_form(person, token, REQUIRED)).headers["Location"]
    right = mailbox.last_code(person.email)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(settings.code_max_attempts):
        client.post(codes, data={"csrf_token": token, "channel": "email", "email-code": wrong})
    late = client.post(codes, data={"csrf_token": token, "channel": "email", "email-code": right})
    assert late.status_code != 303


def test_a_wrong_contact_code_changes_nothing_and_keeps_the_right_one(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = signed_in(client, mailbox, sms)
    new_email = new_person().email
    token = token_of(client, "/account/profile/email")
    started = client.post(
        "/account/profile/email",
        data={"csrf_token": token, "email": new_email, "current_password": person.password},
    )
    assert started.status_code == 303
    code = mailbox.last_code(new_email)
    wrong = "000000" if code != "000000" else "111111"
    client.post("/account/profile/email/confirm", data={"csrf_token": token, "code": wrong})
    assert client.get("/api/v1/me").json["email"] == person.email
    done = client.post("/account/profile/email/confirm", data={"csrf_token": token, "code": code})
    assert done.status_code == 303
    assert client.get("/api/v1/me").json["email"] == new_email


def test_a_wrong_password_on_the_name_form_changes_nothing(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person = signed_in(client, mailbox, sms)
    token = token_of(client, "/account/profile/name")
    client.post(
        "/account/profile/name",
        data={"csrf_token": token, "full_name": "Mallory", "current_password": "not-it"},
    )
    assert client.get("/api/v1/me").json["full_name"] == person.full_name


# -- enumeration --------------------------------------------------------------------------------


def test_sign_in_says_the_same_for_an_unknown_account_and_a_wrong_password(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person, _ = register(other_browser(app), mailbox, sms)
    token = token_of(client, "/signin")
    answers = []
    for identifier in (person.email, new_person().email, person.phone, new_person().phone):
        response = client.post(
            "/signin",
            data={"csrf_token": token, "identifier": "X", "password": "wrong-password-123"}
            | {"identifier": identifier},
        )
        html = without_tokens(response.get_data(as_text=True)).replace(identifier, "ID")
        answers.append((response.status_code, html))
    assert len(set(answers)) == 1, [a[0] for a in answers]


def test_the_sms_sign_in_page_says_the_same_for_an_unknown_number(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    person, _ = register(other_browser(app), mailbox, sms)
    token = token_of(client, "/signin/sms")
    answers = []
    for phone in (person.phone, new_person().phone):
        response = client.post("/signin/sms", data={"csrf_token": token, "phone": phone})
        html = without_tokens(response.get_data(as_text=True)).replace(phone, "PHONE")
        answers.append((response.status_code, html))
    assert answers[0] == answers[1]


def test_sign_up_with_a_taken_address_looks_like_any_other(
    app: Flask, client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    taken, _ = register(other_browser(app), mailbox, sms)
    token = token_of(client, "/signup")
    again = Person(email=taken.email, phone=taken.phone, full_name="Someone")
    fresh = new_person()
    answers = []
    for person in (again, fresh):
        response = client.post("/signup", data=signup_form(person, token, REQUIRED))
        assert response.status_code == 303
        location = re.sub(r"/signup/[^?]+", "/signup/FLOW", response.headers["Location"])
        page = client.get(response.headers["Location"])
        answers.append((location, page.status_code, without_tokens(page.get_data(as_text=True))))
    assert re.sub(r"/signup/[^?\"]+", "", answers[0][2]) == re.sub(
        r"/signup/[^?\"]+", "", answers[1][2]
    )
    assert answers[0][:2] == answers[1][:2]


def test_changing_to_another_accounts_email_looks_like_any_change(
    app: Flask, mailbox: Mailbox, sms: SmsOutbox
):
    taken, _ = register(other_browser(app), mailbox, sms)
    answers = []
    for address in (taken.email, new_person().email):
        browser = other_browser(app)
        person = signed_in(browser, mailbox, sms)
        token = token_of(browser, "/account/profile/email")
        response = browser.post(
            "/account/profile/email",
            data={"csrf_token": token, "email": address, "current_password": person.password},
        )
        answers.append((response.status_code, response.headers.get("Location")))
    assert answers[0] == answers[1] == (303, "/account/profile/email/confirm")


# -- JS off ---------------------------------------------------------------------------------------

FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S)


def test_every_form_posts_by_itself_with_its_token(
    client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox
):
    """Without JavaScript a form must carry its own method, address and token."""
    public_pages = ["/signin", "/signin/sms", "/signup"]
    for path in public_pages:
        _forms_stand_alone(client, path)
    signed_in(client, mailbox, sms, security="granted")
    for path in (
        "/account/profile/name",
        "/account/security",
        "/account/devices",
        "/account/sessions",
        "/privacy",
        "/privacy/requests",
        "/privacy/export",
        "/privacy/cancel",
        "/step-up",
    ):
        _forms_stand_alone(client, path)


def _forms_stand_alone(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, path
    forms = FORM.findall(response.get_data(as_text=True))
    for form in forms:
        opening = form.split(">", 1)[0]
        if 'method="get"' in opening.lower():
            continue
        assert 'method="post"' in opening.lower(), (path, opening)
        assert 'name="csrf_token"' in form, (path, opening)
