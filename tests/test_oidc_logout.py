"""RP-initiated logout and back-channel logout (issue 10), as a relying party
sees them: a partner's server on 127.0.0.1 receives the logout tokens the
outbox POSTs, checks them against the published keys, and answers as it
likes (500, 429, 400, nothing at all)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws, jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from app.adapters.http_post import OutgoingPost, StdlibPoster
from app.adapters.messages import DeliveryError, DeliveryRefused
from app.cli import unit_of_work
from app.models import OutboxMessage, Session
from app.oidc.backchannel import EVENT, LIFETIME_SECONDS
from app.oidc.clients import client_registry
from app.oidc.grant_models import TokenGrant
from app.oidc.partners import PartnerAuthorizations
from app.services.context import RequestContext
from app.services.outbox import backoff
from tests.helpers import (
    account_csrf,
    bearer,
    deliver_all,
    deliver_outbox,
    login,
    other_browser,
    race,
    register,
)
from tests.oidc_helpers import (
    PARTNER,
    RegisteredClient,
    add_client,
    approval_fields,
    exchange,
    get_code,
    refresh,
)

LOGOUT_PAGE = "https://rp.example/signed-out"
MAX_BODY = 64 * 1024


# -- the partner's back-channel receiver ------------------------------------------------


@dataclass
class Receiver:
    url: str
    # Statuses to answer with, in turn; 204 once they run out.
    answers: list[int] = field(default_factory=list)
    received: list[dict[str, list[str]]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tokens(self) -> list[str]:
        return [form["logout_token"][0] for form in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/backchannel")

    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # a stuck connection cannot hold the test

        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length", "0")), MAX_BODY)
            body = self.rfile.read(length).decode()
            with state.lock:
                state.received.append(parse_qs(body))
                state.content_types.append(self.headers.get("Content-Type", ""))
                status = state.answers.pop(0) if state.answers else 204
            self.send_response(status)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- helpers ------------------------------------------------------------------------------


def signed_in(client: FlaskClient, mailbox: Any, sms: Any) -> FlaskClient:
    register(client, mailbox, sms, token_delivery="cookie")
    return client


def partner(app: Flask, receiver: Receiver | None = None, **changes: Any) -> RegisteredClient:
    return add_client(
        app,
        PARTNER,
        post_logout_redirect_uris=(LOGOUT_PAGE,),
        backchannel_logout_uri=receiver.url if receiver else None,
        **changes,
    )


def tokens_for(
    browser: FlaskClient, rp: RegisteredClient, scope: str = "openid profile"
) -> dict[str, Any]:
    back = get_code(browser, rp, scope=scope)
    answer = exchange(browser, rp, back["code"])
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def jwks(client: FlaskClient) -> KeySet:
    return KeySet.import_key_set(client.get("/.well-known/jwks.json").json)


def checked(client: FlaskClient, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a token whose signature the published keys verify."""
    decoded = jwt.decode(token, jwks(client), algorithms=["RS256", "ES256"])
    return dict(decoded.header), dict(decoded.claims)


def unverified_claims(token: str) -> dict[str, Any]:
    return dict(json.loads(jws.extract_compact(token.encode()).payload))


def userinfo(client: FlaskClient, tokens: dict[str, Any]) -> int:
    """The status UserInfo answers the access token with."""
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    return client.get("/oauth/userinfo", headers=headers).status_code


def sign_out(browser: FlaskClient) -> None:
    done = browser.post("/signout", data={"csrf_token": account_csrf(browser)})
    assert done.status_code == 303


def live_sessions(app: Flask) -> int:
    with app.app_context(), unit_of_work() as svc:
        return len(svc.db.scalars(select(Session).where(Session.revoked_at.is_(None))).all())


def http_messages(app: Flask) -> list[OutboxMessage]:
    with app.app_context(), unit_of_work() as svc:
        rows = svc.db.scalars(select(OutboxMessage).where(OutboxMessage.channel == "http"))
        return list(rows)


def grant_of(app: Flask, client_id: str) -> TokenGrant:
    with app.app_context(), unit_of_work() as svc:
        return svc.db.scalars(select(TokenGrant).where(TokenGrant.client_id == client_id)).one()


def assert_logout_token(
    client: FlaskClient, token: str, rp: RegisteredClient, id_token: str
) -> dict[str, Any]:
    header, claims = checked(client, token)
    id_claims = unverified_claims(id_token)
    assert header["typ"] == "logout+jwt"
    assert claims["iss"] == id_claims["iss"] and claims["aud"] == rp.client_id
    assert claims["sub"] == id_claims["sub"] and claims["sid"] == id_claims["sid"]
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims and claims["jti"]
    assert 0 < claims["exp"] - claims["iat"] <= LIFETIME_SECONDS
    return claims


# -- back-channel logout ------------------------------------------------------------------


def test_signing_out_tells_the_partner_with_a_signed_logout_token(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app, receiver)
    tokens = tokens_for(browser, rp)
    sign_out(browser)
    assert receiver.received == []  # queued, not sent during the request

    report = deliver_outbox(app)
    assert report.sent == 1
    [token] = receiver.tokens()
    assert receiver.content_types == ["application/x-www-form-urlencoded"]
    assert_logout_token(client, token, rp, tokens["id_token"])
    # The grant had no offline_access: it ended with the session.
    assert userinfo(client, tokens) == 401
    [row] = http_messages(app)
    assert row.sent_at is not None and row.payload_encrypted is None
    assert deliver_outbox(app).total == 0  # sent once only


def test_offline_access_survives_the_sign_out_but_the_partner_is_told(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app, receiver)
    tokens = tokens_for(browser, rp, scope="openid offline_access")
    sign_out(browser)
    deliver_outbox(app)
    assert len(receiver.tokens()) == 1
    assert refresh(client, rp, tokens["refresh_token"]).status_code == 200


def test_partners_without_a_back_channel_or_grant_get_nothing(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    silent = partner(app, None, name="No back channel")
    tokens_for(browser, silent)
    partner(app, receiver, name="Registered, never used")
    sign_out(browser)
    assert http_messages(app) == []
    assert deliver_outbox(app).total == 0 and receiver.received == []


def test_two_grants_in_one_session_give_one_logout_token(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app, receiver)
    tokens_for(browser, rp)
    tokens_for(browser, rp)
    sign_out(browser)
    deliver_outbox(app)
    assert len(receiver.tokens()) == 1


def test_nothing_is_sent_when_the_sign_out_is_rolled_back(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app, receiver)
    tokens = tokens_for(browser, rp)
    with pytest.raises(RuntimeError), app.app_context(), unit_of_work() as svc:
        session = svc.db.scalars(select(Session)).one()
        svc.sessions.sign_out(session, "203.0.113.0/24")
        assert svc.db.scalars(select(OutboxMessage)).all()  # queued in the transaction
        raise RuntimeError("the request failed after signing out")
    assert http_messages(app) == []
    assert deliver_outbox(app).total == 0 and receiver.received == []
    assert live_sessions(app) == 1
    assert userinfo(client, tokens) == 200


def test_other_sessions_ended_from_the_account_page_are_reported(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    """Sign out everywhere else: the phone's partner grant ends, this one's stays."""
    person, _ = register(client, mailbox, sms, token_delivery="cookie")
    phone = other_browser(app)
    signed = phone.post(
        "/api/v1/login/password",
        json={"identifier": person.email, "password": person.password, "token_delivery": "cookie"},
    )
    assert signed.status_code in (200, 201), signed.json
    rp = partner(app, receiver)
    on_phone = tokens_for(phone, rp)
    here = tokens_for(client, rp)
    done = client.post("/account/sessions/revoke-others", data={"csrf_token": account_csrf(client)})
    assert done.status_code in (302, 303), done.status_code
    deliver_outbox(app)
    [token] = receiver.tokens()
    assert_logout_token(client, token, rp, on_phone["id_token"])
    assert userinfo(client, on_phone) == 401 and userinfo(client, here) == 200


def test_revoking_a_partner_or_disabling_it_sends_logout_tokens(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    shop = partner(app, receiver, name="Shop")
    other = partner(app, receiver, name="Other")
    shop_tokens = tokens_for(browser, shop)
    other_tokens = tokens_for(browser, other)
    user_id = grant_of(app, shop.client_id).user_id
    assert user_id is not None
    with app.app_context(), unit_of_work() as svc:
        context = RequestContext("203.0.113.0/24", "Test", "0" * 64)
        assert PartnerAuthorizations.of(svc).revoke(user_id, shop.client_id, context)
    deliver_outbox(app)
    [token] = receiver.tokens()
    assert_logout_token(client, token, shop, shop_tokens["id_token"])
    assert userinfo(client, shop_tokens) == 401 and userinfo(client, other_tokens) == 200

    with app.app_context(), unit_of_work() as svc:
        client_registry(svc).disable(other.client_id)
    assert userinfo(client, other_tokens) == 401
    deliver_outbox(app)
    assert len(receiver.tokens()) == 2
    assert_logout_token(client, receiver.tokens()[1], other, other_tokens["id_token"])
    assert grant_of(app, other.client_id).revoked_at is not None
    assert live_sessions(app) == 1  # the browser's own session goes on


def signed_in_with_a_phone_too(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> tuple[Any, dict[str, str]]:
    """The browser signed in (cookie), and the person's phone (bearer token)."""
    person, _ = register(client, mailbox, sms, token_delivery="cookie")
    signed = login(other_browser(app), person.email, person.password)
    assert signed.status_code in (200, 201), signed.json
    return person, bearer(signed.json["token"])


def test_changing_the_password_elsewhere_reports_this_browsers_session(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    person, phone = signed_in_with_a_phone_too(app, client, mailbox, sms)
    rp = partner(app, receiver)
    tokens = tokens_for(client, rp)
    changed = other_browser(app).post(
        "/api/v1/me/password",
        json={"current_password": person.password, "new_password": "amber-falcon-river-77"},
        headers=phone,
    )
    assert changed.status_code in (200, 204), changed.json
    deliver_all(app)
    [token] = receiver.tokens()
    assert_logout_token(client, token, rp, tokens["id_token"])


def test_a_cancelled_account_is_still_logged_out_at_the_partner(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    """The account and its grants are deleted, but the partner still hears
    that the sessions ended: the message carries no contact data and is not
    abandoned with the person's other messages."""
    _, phone = signed_in_with_a_phone_too(app, client, mailbox, sms)
    rp = partner(app, receiver)
    tokens = tokens_for(client, rp)
    cancelled = other_browser(app).post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"}, headers=phone
    )
    assert cancelled.status_code == 200, cancelled.json
    with app.app_context(), unit_of_work() as svc:
        assert svc.db.scalars(select(TokenGrant)).all() == []
    deliver_all(app)
    [token] = receiver.tokens()
    assert_logout_token(client, token, rp, tokens["id_token"])


def test_racing_sign_outs_of_one_session_tell_the_partner_once(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver, settings: Any
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app, receiver)
    tokens_for(browser, rp)
    cookie = browser.get_cookie(settings.session_cookie_name)
    assert cookie is not None
    csrf = account_csrf(browser)

    def sign_out_too(_index: int, own: FlaskClient) -> int:
        own.set_cookie(settings.session_cookie_name, cookie.value)
        return own.post("/signout", data={"csrf_token": csrf}).status_code

    statuses = race(app, 4, sign_out_too)
    assert 303 in statuses
    assert len(http_messages(app)) == 1
    deliver_all(app)
    assert len(receiver.tokens()) == 1


class TestDeliveryOnAFrozenClock:
    @pytest.fixture
    def clock(self, frozen_clock: Any) -> Any:
        return frozen_clock

    def test_a_failing_partner_is_retried_with_back_off_and_a_fresh_token(
        self, app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver,
        clock: Any,
    ) -> None:  # fmt: skip
        browser = signed_in(client, mailbox, sms)
        rp = partner(app, receiver)
        tokens = tokens_for(browser, rp)
        sign_out(browser)
        receiver.answers = [500, 429]

        assert deliver_outbox(app).retrying == 1
        [row] = http_messages(app)
        assert row.attempts == 1 and row.last_error_class == "DeliveryError"
        assert row.next_attempt_at == clock.now() + backoff(1)
        assert deliver_outbox(app).total == 0  # not before the back-off ends

        clock.advance(seconds=backoff(1).total_seconds() + 1)
        assert deliver_outbox(app).retrying == 1  # 429: later, too
        clock.advance(seconds=backoff(2).total_seconds() + 1)
        assert deliver_outbox(app).sent == 1
        first, _, last = receiver.tokens()
        assert_logout_token(client, last, rp, tokens["id_token"])
        # Signed at each try: the last one is not the first one's expired copy.
        assert unverified_claims(last)["iat"] > unverified_claims(first)["iat"]
        assert unverified_claims(last)["exp"] > clock.now().timestamp()
        assert unverified_claims(last)["jti"] != unverified_claims(first)["jti"]

    def test_a_partner_that_refuses_is_not_asked_again(
        self, app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver,
        clock: Any,
    ) -> None:  # fmt: skip
        browser = signed_in(client, mailbox, sms)
        rp = partner(app, receiver)
        tokens_for(browser, rp)
        sign_out(browser)
        receiver.answers = [400]
        assert deliver_outbox(app).abandoned == 1
        [row] = http_messages(app)
        assert row.abandoned_at is not None and row.last_error_class == "DeliveryRefused"
        assert row.payload_encrypted is None and row.attempts == 1
        clock.advance(seconds=timedelta(days=1).total_seconds())
        assert deliver_outbox(app).total == 0
        assert len(receiver.received) == 1


def test_the_poster_judges_answers_and_gives_up_on_a_silent_server(
    receiver: Receiver,
) -> None:
    poster = StdlibPoster(timeout=0.5)
    message = OutgoingPost(receiver.url, (("logout_token", "x"),))
    receiver.answers = [200, 204, 404, 401, 503, 429, 302]
    poster.post(message)
    poster.post(message)
    for _refused in (404, 401):
        with pytest.raises(DeliveryRefused):
            poster.post(message)
    for _later in (503, 429):
        with pytest.raises(DeliveryError) as failed:
            poster.post(message)
        assert not isinstance(failed.value, DeliveryRefused)
    with pytest.raises(DeliveryRefused):  # a redirect is not followed
        poster.post(message)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(DeliveryError) as failed:
            poster.post(OutgoingPost(f"http://127.0.0.1:{port}/", ()))
        assert not isinstance(failed.value, DeliveryRefused)
    with pytest.raises(DeliveryRefused):
        poster.post(OutgoingPost("file:///etc/passwd", ()))


# -- RP-initiated logout ------------------------------------------------------------------


def logout_query(**params: str) -> str:
    from urllib.parse import urlencode

    return "/oauth/logout?" + urlencode(params)


def confirm(browser: FlaskClient, page: str) -> Any:
    return browser.post("/oauth/logout/confirm", data=approval_fields(page))


def test_a_hint_for_this_session_asks_then_signs_out_and_returns_with_state(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app, receiver)
    tokens = tokens_for(browser, rp)
    asked = browser.get(
        logout_query(id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGOUT_PAGE,
                     state="s-42")
    )  # fmt: skip
    assert asked.status_code == 200 and "Location" not in asked.headers
    assert "Partner shop" in asked.get_data(as_text=True)
    assert live_sessions(app) == 1  # a GET signs nobody out

    done = confirm(browser, asked.get_data(as_text=True))
    assert done.status_code == 303
    target = urlsplit(done.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == LOGOUT_PAGE
    assert parse_qs(target.query) == {"state": ["s-42"]}
    assert live_sessions(app) == 0
    assert browser.get("/account").status_code in (302, 303)
    deliver_outbox(app)
    [token] = receiver.tokens()
    assert_logout_token(client, token, rp, tokens["id_token"])


def test_the_confirmation_cannot_be_forged_from_another_site(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app)
    tokens = tokens_for(browser, rp)
    fields = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_PAGE}
    assert browser.post("/oauth/logout/confirm", data=fields).status_code == 403
    forged = browser.post("/oauth/logout/confirm", data={**fields, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    # The client's own form POST to the endpoint only asks, too.
    posted = browser.post("/oauth/logout", data=fields)
    assert posted.status_code == 200 and "Location" not in posted.headers
    assert live_sessions(app) == 1


def test_without_a_session_here_the_person_just_goes_back(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app)
    tokens = tokens_for(browser, rp)
    elsewhere = other_browser(app)
    back = elsewhere.get(
        logout_query(id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGOUT_PAGE,
                     state="s-1")
    )  # fmt: skip
    assert back.status_code == 303
    assert back.headers["Location"] == LOGOUT_PAGE + "?state=s-1"
    page = elsewhere.get(logout_query(client_id=rp.client_id))
    assert page.status_code == 200 and "Signed out" in page.get_data(as_text=True)
    assert live_sessions(app) == 1


def test_a_hint_for_another_session_leaves_this_one_alone(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app)
    tokens = tokens_for(browser, rp)
    someone_else = signed_in(other_browser(app), mailbox, sms)
    back = someone_else.get(
        logout_query(id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGOUT_PAGE)
    )
    assert back.status_code == 303 and back.headers["Location"] == LOGOUT_PAGE
    assert live_sessions(app) == 2


def test_unregistered_redirects_tampered_or_foreign_hints_get_an_error_page(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app)
    other = partner(app, name="Other")
    tokens = tokens_for(browser, rp)
    hint = tokens["id_token"]
    header, payload, signature = hint.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    cases = [
        {"id_token_hint": hint, "post_logout_redirect_uri": "https://evil.example/"},
        {"id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_PAGE + "/"},
        {"id_token_hint": f"{header}.{flipped}.{signature}",
         "post_logout_redirect_uri": LOGOUT_PAGE},
        {"id_token_hint": "not-a-jwt", "post_logout_redirect_uri": LOGOUT_PAGE},
        {"id_token_hint": hint, "client_id": other.client_id,
         "post_logout_redirect_uri": LOGOUT_PAGE},
        {"post_logout_redirect_uri": LOGOUT_PAGE},
        {"client_id": "nobody", "post_logout_redirect_uri": LOGOUT_PAGE},
        # An access token is signed by the same keys but names no client as audience.
        {"id_token_hint": tokens["access_token"], "post_logout_redirect_uri": LOGOUT_PAGE},
    ]  # fmt: skip
    for params in cases:
        answer = browser.get(logout_query(**params))
        assert answer.status_code == 400, params
        assert "Location" not in answer.headers
        assert "This sign-out link does not work" in answer.get_data(as_text=True)
    assert live_sessions(app) == 1


def test_a_logout_token_is_no_id_token_hint(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, receiver: Receiver
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app, receiver)
    tokens_for(browser, rp)
    browser2 = signed_in(other_browser(app), mailbox, sms)
    tokens_for(browser2, rp)
    sign_out(browser2)
    deliver_outbox(app)
    [logout_token] = receiver.tokens()
    answer = browser.get(
        logout_query(id_token_hint=logout_token, post_logout_redirect_uri=LOGOUT_PAGE)
    )
    assert answer.status_code == 400


def test_a_disabled_clients_hint_is_refused(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app)
    tokens = tokens_for(browser, rp)
    with app.app_context(), unit_of_work() as svc:
        client_registry(svc).disable(rp.client_id)
    answer = browser.get(
        logout_query(id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGOUT_PAGE)
    )
    assert answer.status_code == 400 and "Location" not in answer.headers


class TestExpiredHints:
    @pytest.fixture
    def clock(self, frozen_clock: Any) -> Any:
        return frozen_clock

    def test_an_expired_hint_still_returns_the_person_to_the_client(
        self, app: Flask, client: FlaskClient, mailbox: Any, sms: Any, clock: Any, settings: Any
    ) -> None:
        browser = signed_in(client, mailbox, sms)
        rp = partner(app)
        tokens = tokens_for(browser, rp)
        clock.advance(seconds=settings.oidc_id_token_lifetime_seconds + 60)
        assert unverified_claims(tokens["id_token"])["exp"] < clock.now().timestamp()
        back = other_browser(app).get(
            logout_query(id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGOUT_PAGE,
                         state="late")
        )  # fmt: skip
        assert back.status_code == 303
        assert back.headers["Location"] == LOGOUT_PAGE + "?state=late"


def test_discovery_names_the_logout_endpoints(client: FlaskClient) -> None:
    config = client.get("/.well-known/openid-configuration").json
    assert config["end_session_endpoint"] == config["issuer"] + "/oauth/logout"
    assert config["backchannel_logout_supported"] is True
    assert config["backchannel_logout_session_supported"] is True


def test_the_confirmation_page_carries_the_request_through(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    """The confirmation page carries the client's parameters and the CSRF token."""
    browser = signed_in(client, mailbox, sms)
    rp = partner(app)
    tokens = tokens_for(browser, rp)
    page = browser.get(logout_query(id_token_hint=tokens["id_token"], state="x")).get_data(
        as_text=True
    )
    fields = approval_fields(page)
    assert fields["id_token_hint"] == tokens["id_token"] and fields["state"] == "x"
    assert len(fields["csrf_token"]) == 64


def test_the_logout_pages_speak_the_language_the_client_asks_for(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    browser = signed_in(client, mailbox, sms)
    rp = partner(app)
    tokens = tokens_for(browser, rp)
    asked = browser.get(logout_query(id_token_hint=tokens["id_token"], ui_locales="zh-CN"))
    page = asked.get_data(as_text=True)
    assert "要退出登录吗" in page and "保持登录" in page and "Sign out?" not in page
    done = browser.post("/oauth/logout/confirm?ui_locales=zh-CN", data=approval_fields(page))
    assert done.status_code == 200 and "已退出登录" in done.get_data(as_text=True)
    assert "/oauth/logout/confirm?ui_locales=zh-CN" in page
    refused = browser.get(logout_query(id_token_hint="x.y.z", ui_locales="zh-CN en"))
    assert refused.status_code == 400
    assert "此退出登录链接无效" in refused.get_data(as_text=True)
