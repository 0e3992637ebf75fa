"""Hostile review of the OpenID provider's browser-facing parts (issue 10):
a malicious partner, a cross-site page, someone with the victim's browser for
a minute, and a partner whose back-channel endpoint misbehaves. Each test is
an attack that must fail; the token endpoint's own attacks are in
tests/test_oidc_attacks.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.adapters.http_post import OutgoingPost, StdlibPoster
from app.adapters.messages import DeliveryError, DeliveryRefused
from app.cli import unit_of_work
from app.models import OutboxMessage, Session
from app.oidc.grant_models import ClientAuthorization
from app.oidc.interaction import LOGIN_AFTER
from tests.helpers import (
    HIGH_LIMITS,
    account_csrf,
    database_text,
    other_browser,
    register,
    row_counts,
    table_rows,
)
from tests.oidc_helpers import (
    RegisteredClient,
    add_client,
    approve,
    authorize_query,
    exchange,
    get_code,
    redirect_params,
    refresh,
)

# -- a partner's back-channel receiver that misbehaves ------------------------------------


@dataclass
class RawServer:
    """A TCP server on 127.0.0.1 that answers each connection with ``behave``."""

    behave: Callable[[socket.socket], None]
    port: int = 0
    connections: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backchannel"


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    listeners: list[socket.socket] = []
    stop = threading.Event()

    def start(behave: Callable[[socket.socket], None]) -> RawServer:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(0.2)
        listeners.append(listener)
        server = RawServer(behave, listener.getsockname()[1])

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(5)
                    try:
                        server.connections.append(conn.recv(65536))
                        behave(conn)
                    except OSError:
                        pass  # the poster hung up: that is the point

        threading.Thread(target=serve, daemon=True).start()
        return server

    yield start
    stop.set()
    for listener in listeners:
        listener.close()


def dribble(conn: socket.socket) -> None:
    """A status line, then a header one byte at a time, each well within the
    socket timeout, for far longer than any deadline."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(300):
        conn.sendall(b"a")
        time.sleep(0.1)
    conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_deadline(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer],
) -> None:
    server = raw_server(dribble)
    poster = StdlibPoster(timeout=0.5, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as failed:
        poster.post(OutgoingPost(server.url, (("logout_token", "t"),)))
    assert time.monotonic() - started < 4
    # Not delivered, not refused for good: it is tried again after the back-off.
    assert not isinstance(failed.value, DeliveryRefused)


def test_a_huge_or_garbled_answer_neither_hangs_nor_escapes_as_an_unknown_error(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer],
) -> None:
    def endless_body(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        for _ in range(200):
            conn.sendall(b"x" * 65536)

    def huge_header(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")

    def not_http(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    poster = StdlibPoster(timeout=0.5, deadline=2.0)
    started = time.monotonic()
    # The body is never read: a 2xx is the receiver's answer, however long.
    poster.post(OutgoingPost(raw_server(endless_body).url, ()))
    assert time.monotonic() - started < 3
    for behave in (huge_header, not_http):
        with pytest.raises(DeliveryError) as failed:
            poster.post(OutgoingPost(raw_server(behave).url, ()))
        assert not isinstance(failed.value, DeliveryRefused)
    # https to a server that speaks no TLS: a retry, like any unreachable one.
    plain = raw_server(not_http).url.replace("http://", "https://")
    with pytest.raises(DeliveryError) as failed:
        poster.post(OutgoingPost(plain, ()))
    assert not isinstance(failed.value, DeliveryRefused)


def test_a_redirect_to_an_internal_address_is_not_followed(
    raw_server: Callable[[Callable[[socket.socket], None]], RawServer],
) -> None:
    internal = raw_server(lambda conn: conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n"))

    def redirect(conn: socket.socket) -> None:
        conn.sendall(
            f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {internal.url}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )

    poster = StdlibPoster(timeout=0.5)
    with pytest.raises(DeliveryRefused):
        poster.post(OutgoingPost(raw_server(redirect).url, (("logout_token", "secret"),)))
    time.sleep(0.3)
    assert internal.connections == []  # the token never went there
    for address in ("ftp://127.0.0.1/", "http:///nohost", "http://127.0.0.1:99999/"):
        with pytest.raises(DeliveryRefused):
            poster.post(OutgoingPost(address, ()))


# -- the approval page ---------------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


@dataclass
class Browser:
    client: FlaskClient
    email: str
    password: str


@pytest.fixture
def victim(client: FlaskClient, mailbox: Any, sms: Any) -> Browser:
    who, _ = register(client, mailbox, sms, token_delivery="cookie")
    return Browser(client, who.email, who.password)


def tokens_for(browser: FlaskClient, rp: RegisteredClient, scope: str) -> dict[str, Any]:
    back = get_code(browser, rp, scope=scope)
    answer = exchange(other_browser(browser.application), rp, back["code"])
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def token_works(app: Flask, rp: RegisteredClient, token: str) -> bool:
    answer = other_browser(app).post("/oauth/introspect", data={"token": token}, headers=rp.basic)
    return bool(answer.json["active"])


def test_refusing_a_partner_approved_before_ends_what_it_holds(app: Flask, victim: Browser) -> None:
    """The page asks again (prompt=consent) and the person says no: the
    partner's access ends, as the page promises, not only the next code."""
    rp = add_client(app)
    tokens = tokens_for(victim.client, rp, "openid profile offline_access")
    page = victim.client.get(authorize_query(rp, scope="openid profile", prompt="consent"))
    assert page.status_code == 200
    refused = redirect_params(approve(victim.client, page.get_data(as_text=True), "deny"))
    assert refused["error"] == "access_denied"

    assert not token_works(app, rp, tokens["access_token"])
    assert not token_works(app, rp, tokens["refresh_token"])
    assert refresh(other_browser(app), rp, tokens["refresh_token"]).status_code == 400
    listed = victim.client.get("/privacy/partners").get_data(as_text=True)
    assert "Partner shop" not in listed
    # And nothing is silent any more.
    silent = victim.client.get(authorize_query(rp, prompt="none"))
    assert redirect_params(silent)["error"] == "consent_required"


# -- the sign-in note (privid_login_after) -------------------------------------------------


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return unescape(found.group(1))


def sign_in_when_sent(who: Browser, answer: Any) -> str:
    """The authorisation endpoint sent the browser to sign in: do so; the
    address it returns to (the request again, with its sign-in note)."""
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin?")
    page = who.client.get(answer.headers["Location"]).get_data(as_text=True)
    done = who.client.post(
        "/signin",
        data={
            "csrf_token": hidden(page, "csrf_token"),
            "next": hidden(page, "next"),
            "identifier": who.email,
            "password": who.password,
        },
    )
    assert done.status_code == 303, done.data[:300]
    back: str = done.headers["Location"]
    assert back.startswith("/oauth/authorize?") and LOGIN_AFTER in back
    return back


def note_of(address: str) -> str:
    return parse_qs(urlsplit(address).query)[LOGIN_AFTER][0]


def sent_to_sign_in(answer: Any) -> bool:
    return answer.status_code == 303 and answer.headers["Location"].startswith("/signin?")


def test_an_old_sign_in_note_does_not_skip_the_sign_in_a_new_request_forces(
    app: Flask, victim: Browser
) -> None:
    """Someone at the victim's signed-in browser takes the note from the
    history of an earlier prompt=login and adds it to the partner's new one:
    the new request still asks for the password."""
    rp = add_client(app)
    get_code(victim.client, rp)  # approved, so only the sign-in stands between
    first = victim.client.get(authorize_query(rp, prompt="login"))
    back = sign_in_when_sent(victim, first)
    assert "code" in redirect_params(victim.client.get(back))

    fresh_request = authorize_query(rp, prompt="login")
    replayed = victim.client.get(f"{fresh_request}&{LOGIN_AFTER}={quote(note_of(back))}")
    assert sent_to_sign_in(replayed)
    same_for_max_age = authorize_query(rp, max_age="0")
    replayed = victim.client.get(f"{same_for_max_age}&{LOGIN_AFTER}={quote(note_of(back))}")
    assert sent_to_sign_in(replayed)


def test_the_note_still_carries_its_own_request_through_the_approval_page(
    app: Flask, victim: Browser
) -> None:
    rp = add_client(app)
    back = sign_in_when_sent(victim, victim.client.get(authorize_query(rp, max_age="0")))
    page = victim.client.get(back)
    assert page.status_code == 200  # never approved: the page, not another sign-in
    assert "code" in redirect_params(approve(victim.client, page.get_data(as_text=True)))


class TestSignInNoteOnAFrozenClock:
    @pytest.fixture
    def clock(self, frozen_clock: Any) -> Any:
        return frozen_clock

    def test_the_note_expires(self, app: Flask, victim: Browser, clock: Any) -> None:
        """The very address the sign-in returned to, opened again much later
        in the same browser, does not stand for a fresh sign-in."""
        rp = add_client(app)
        get_code(victim.client, rp)
        first = victim.client.get(authorize_query(rp, prompt="login"))
        clock.advance(seconds=5)
        back = sign_in_when_sent(victim, first)
        clock.advance(seconds=5)
        assert "code" in redirect_params(victim.client.get(back))
        for _ in range(3):  # an hour, the session kept alive all along
            clock.advance(minutes=20)
            assert victim.client.get("/account").status_code == 200
        assert sent_to_sign_in(victim.client.get(back))


# -- forged answers, redirect URIs, injected parameters -----------------------------------

OAUTH_TABLES = ("client_authorizations", "oauth_grants", "oauth_codes", "consent_records")


def oauth_rows(app: Flask) -> dict[str, int]:
    counts = row_counts(table_rows(app))
    return {name: counts[name] for name in OAUTH_TABLES}


def request_fields(rp: RegisteredClient, **params: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(authorize_query(rp, **params)).query).items()}


def test_a_cross_site_form_cannot_approve_a_partner_for_the_victim(
    app: Flask, victim: Browser, mailbox: Any, sms: Any
) -> None:
    """A partner's page auto-submits the approval to the victim's browser:
    to the decision endpoint without the form token, with the token of the
    attacker's own session, or to the authorisation endpoint (no CSRF there)
    with decision=approve. No approval, no code, nothing recorded."""
    rp = add_client(app)
    attacker = other_browser(app)
    register(attacker, mailbox, sms, token_delivery="cookie")
    attackers_token = account_csrf(attacker)
    fields = request_fields(rp, scope="openid profile email")
    before = oauth_rows(app)
    for forged in ({}, {"csrf_token": attackers_token}, {"csrf_token": ""}):
        answer = victim.client.post(
            "/oauth/authorize/decision", data={**fields, **forged, "decision": "approve"}
        )
        assert answer.status_code == 403 and "Location" not in answer.headers
    answer = victim.client.post("/oauth/authorize", data={**fields, "decision": "approve"})
    assert answer.status_code == 200 and "Location" not in answer.headers  # the page, asking
    assert oauth_rows(app) == before
    silent = victim.client.get(authorize_query(rp, prompt="none"))
    assert redirect_params(silent)["error"] == "consent_required"


@pytest.mark.parametrize(
    "variant",
    [
        "https://RP.example/callback",
        "https://rp.example/Callback",
        "https://rp.example/callback/",
        "https://rp.example/callback?x=1",
        "https://rp.example/callback#frag",
        "https://rp.example/callback/../evil",
        "https://rp.example%2fcallback",
        "https://rp.example/callback%2F..%2Fevil",
        "https://rp.example:443/callback",
        "http://rp.example/callback",
        "https://rp.example@evil.example/callback",
        "https://evil.example/?https://rp.example/callback",
        "//rp.example/callback",
        " https://rp.example/callback",
        '"><script>alert(1)</script>',
    ],
)
def test_a_redirect_uri_not_registered_exactly_gets_a_page_never_a_redirect(
    app: Flask, victim: Browser, variant: str
) -> None:
    rp = add_client(app)
    get_code(victim.client, rp)  # approved: a valid request would go straight back
    before = oauth_rows(app)
    answer = victim.client.get(authorize_query(rp, redirect_uri=variant, prompt="none"))
    assert answer.status_code == 400 and "Location" not in answer.headers
    page = answer.get_data(as_text=True)
    assert "<script>alert(1)" not in page and "This sign-in link does not work" in page
    assert oauth_rows(app) == before


@pytest.mark.parametrize(
    "params",
    [
        {"redirect_uri": "https://rp.example/callback\\"},
        {"redirect_uri": "https://例子.example/callback"},
        {"response_type": 'code"'},
        {"response_type": "código"},
    ],
)
def test_characters_an_oauth_error_may_not_quote_get_a_page_not_a_500(
    app: Flask, victim: Browser, params: dict[str, str]
) -> None:
    """authlib will not build an error whose description quotes them."""
    rp = add_client(app)
    before = oauth_rows(app)
    answer = victim.client.get(authorize_query(rp, **params))
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert "This sign-in link does not work" in answer.get_data(as_text=True)
    assert oauth_rows(app) == before


def test_a_second_redirect_uri_or_client_id_cannot_steer_the_code(
    app: Flask, victim: Browser
) -> None:
    """Parameters sent twice: whichever value is read, the code goes to an
    address registered for the client the page named, or nowhere."""
    rp = add_client(app)
    get_code(victim.client, rp)
    evil = add_client(app, redirect_uris=("https://evil.example/cb",))
    get_code(victim.client, evil)  # approved too: only the steering is in question
    twice = [
        (rp, {"redirect_uri": evil.redirect_uri}),
        (rp, {"client_id": evil.client_id}),
        (rp, {"client_id": evil.client_id, "redirect_uri": evil.redirect_uri}),
    ]
    for first, extra in twice:
        answer = victim.client.get(f"{authorize_query(first)}&{urlencode(extra)}")
        location = answer.headers.get("Location", "")
        assert answer.status_code == 400 or location.startswith(rp.redirect_uri + "?"), location


def test_login_hint_and_ui_locales_cannot_inject_into_the_pages(
    app: Flask, client: FlaskClient
) -> None:
    rp = add_client(app)
    payload = '"><script>alert(1)</script>'
    answer = client.get(authorize_query(rp, login_hint=payload, ui_locales=payload))
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"])
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.get_data(as_text=True)


def test_the_approval_page_cannot_be_framed_or_cached(app: Flask, victim: Browser) -> None:
    rp = add_client(app)
    page = victim.client.get(authorize_query(rp))
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "no-store" in page.headers["Cache-Control"]


def test_an_approval_row_written_into_the_database_is_not_an_approval(
    app: Flask, victim: Browser
) -> None:
    """Someone who can write the database adds an approval for the victim:
    the consent ledger (keyed, chained) has no grant for it, so the page is
    still shown and prompt=none gets no code."""
    rp = add_client(app)
    victim.client.get("/account")
    with app.app_context(), unit_of_work() as svc:
        user_id = svc.db.scalars(select(Session.user_id)).first()
        svc.db.add(
            ClientAuthorization(
                user_id=user_id,
                client_id=rp.client_id,
                scopes=["openid", "profile"],
                granted_at=svc.runtime.clock.now(),
            )
        )
    silent = victim.client.get(authorize_query(rp, prompt="none"))
    assert redirect_params(silent)["error"] == "consent_required"
    assert victim.client.get(authorize_query(rp)).status_code == 200


# -- RP-initiated logout -------------------------------------------------------------------

LOGOUT_PAGE = "https://rp.example/signed-out"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(token: str, alg: str, key: bytes | None) -> str:
    """The token's claims, for another subject, under a header naming
    ``alg``, signed with ``key`` by HMAC (or not at all for none)."""
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    head = b64(json.dumps({**header, "alg": alg}).encode())
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    body = b64(json.dumps({**claims, "sub": "someone-else"}).encode())
    if key is None:
        return f"{head}.{body}."
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def live_sessions(app: Flask) -> int:
    with app.app_context(), unit_of_work() as svc:
        return len(svc.db.scalars(select(Session).where(Session.revoked_at.is_(None))).all())


def logout_query(**params: str) -> str:
    return "/oauth/logout?" + urlencode(params)


def test_a_hint_under_alg_none_or_hmac_with_the_public_key_is_not_ours(
    app: Flask, victim: Browser
) -> None:
    rp = add_client(app, post_logout_redirect_uris=(LOGOUT_PAGE,))
    id_token = tokens_for(victim.client, rp, "openid")["id_token"]
    kid = json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "=="))["kid"]
    keys = app.test_client().get("/.well-known/jwks.json").json["keys"]
    [jwk] = [k for k in keys if k["kid"] == kid]
    public = [jwk["n"].encode(), json.dumps(jwk).encode(), base64.urlsafe_b64decode(
        jwk["n"] + "==")]  # fmt: skip
    attempts = [forged(id_token, "none", None), forged(id_token, "None", None)]
    attempts += [forged(id_token, "HS256", key) for key in public]
    for hint in attempts:
        answer = victim.client.get(
            logout_query(id_token_hint=hint, post_logout_redirect_uri=LOGOUT_PAGE)
        )
        assert answer.status_code == 400 and "Location" not in answer.headers
        # Nor does it name someone else at the authorisation endpoint (which
        # would send the victim to sign in again).
        silent = victim.client.get(
            authorize_query(rp, scope="openid", prompt="none", id_token_hint=hint)
        )
        assert "code" in redirect_params(silent)
    assert live_sessions(app) == 1


def test_state_cannot_add_parameters_to_the_post_logout_redirect(
    app: Flask, client: FlaskClient
) -> None:
    rp = add_client(app, post_logout_redirect_uris=(LOGOUT_PAGE,))
    state = "x&next=https://evil.example/#frag"
    back = client.get(
        logout_query(client_id=rp.client_id, post_logout_redirect_uri=LOGOUT_PAGE, state=state)
    )
    assert back.status_code == 303
    location = back.headers["Location"]
    parts = urlsplit(location)
    assert location.startswith(LOGOUT_PAGE + "?") and parts.fragment == ""
    assert parse_qs(parts.query) == {"state": [state]}


def test_a_confirmation_left_open_does_not_sign_out_whoever_is_signed_in_now(
    app: Flask, victim: Browser, mailbox: Any, sms: Any
) -> None:
    """The partner's logout request named one person's session; by the time
    the form is sent, another person is signed in on this browser. The form
    (CSRF-valid for the new session) must not end theirs."""
    rp = add_client(app, post_logout_redirect_uris=(LOGOUT_PAGE,))
    id_token = tokens_for(victim.client, rp, "openid")["id_token"]
    page = victim.client.get(
        logout_query(id_token_hint=id_token, post_logout_redirect_uri=LOGOUT_PAGE,
                     ui_locales='"><script>alert(1)</script>')
    )  # fmt: skip
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.get_data(as_text=True)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.get_data(as_text=True)))
    # The victim's browser is now someone else's session.
    victim.client.delete_cookie(app.extensions["privid.runtime"].settings.session_cookie_name)
    register(victim.client, mailbox, sms, token_delivery="cookie")
    fields = {k: unescape(v) for k, v in fields.items()}
    assert account_csrf(victim.client) != fields["csrf_token"]  # another session
    fields["csrf_token"] = account_csrf(victim.client)
    answer = victim.client.post("/oauth/logout/confirm", data=fields)
    assert answer.status_code == 303 and answer.headers["Location"] == LOGOUT_PAGE
    assert victim.client.get("/account").status_code == 200  # still signed in
    assert live_sessions(app) == 2


# -- what the database holds ---------------------------------------------------------------


def test_a_queued_logout_token_keeps_the_partners_subject_and_session_sealed(
    app: Flask, victim: Browser
) -> None:
    """Someone reading the database while a back-channel logout waits in the
    outbox learns neither whom it is about at the partner nor which session."""
    rp = add_client(app, backchannel_logout_uri="http://127.0.0.1:9/backchannel")
    id_token = tokens_for(victim.client, rp, "openid")["id_token"]
    claims = json.loads(base64.urlsafe_b64decode(id_token.split(".")[1] + "=="))
    done = victim.client.post("/signout", data={"csrf_token": account_csrf(victim.client)})
    assert done.status_code == 303
    with app.app_context(), unit_of_work() as svc:
        queued = svc.db.scalars(select(OutboxMessage).where(OutboxMessage.channel == "http"))
        assert len(list(queued)) == 1
    stored = database_text(app)
    assert claims["sub"] not in stored and claims["sid"] not in stored
