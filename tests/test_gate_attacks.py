"""Attacks on the access gate (app/http/gate.py) and what surrounds it: the
order of refusals, CSRF for cookie sessions and pre-session forms, the
surfaces' error answers, the unit of work. Each test is named for the attack;
it passes where the gate holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from app.api.problems import JSON_API
from app.errors import ServiceError
from app.http.access import EXPORT, public, signed_in
from app.http.gate import PRE_SESSION_COOKIE, csrf_token, current_caller, submitted_form
from app.http.scope import services
from app.pages.surface import PAGES
from tests.helpers import (
    CATALOGUE,
    assert_problem,
    baseline_consent,
    bearer,
    login,
    register,
    row_count,
)

CSRF = "X-CSRF-Token"
REQUESTS = "/api/v1/me/requests"
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def _browser(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


def _cookie_session(app: Flask, client: FlaskClient, mailbox: Any, sms: Any) -> dict[str, Any]:
    """A browser signed in with a cookie session; returns the session payload."""
    person, _ = register(client, mailbox, sms)
    browser = _browser(app)
    signed = login(browser, person.email, person.password, delivery="cookie")
    assert signed.status_code == 200, signed.json
    return {"browser": browser, "person": person, **signed.json}


def _assert_api_problem(response: Any, status: int, slug: str | None = None) -> None:
    assert_problem(response, status, slug)
    assert response.headers["Content-Security-Policy"] == API_CSP


# -- the order of refusals -----------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"limit_requests_per_account": "2/hour"}])
def test_csrf_less_cross_site_posts_cannot_use_up_the_accounts_request_limit(
    app, client, mailbox, sms, settings_overrides
) -> None:
    """Before the gate, the per-account key (caller_key) ran the full caller
    check, CSRF included, so a forged post was refused before it was counted.
    A page on a sibling site (SameSite=Lax still sends the cookie there) must
    not be able to exhaust the owner's data-subject requests."""
    signed = _cookie_session(app, client, mailbox, sms)
    browser = signed["browser"]
    body = {"kind": "deletion", "categories": ["ended_sessions"]}
    for _ in range(3):
        forged = browser.post(REQUESTS, json=body)
        _assert_api_problem(forged, 403, "csrf-failed")
    own = browser.post(REQUESTS, json=body, headers={CSRF: signed["csrf_token"]})
    assert own.status_code == 201, own.get_data(as_text=True)


@pytest.mark.parametrize("settings_overrides", [{"limit_login_per_ip": "1/hour"}])
def test_a_flood_of_made_up_dpop_proofs_is_held_by_the_sign_in_limit(
    client, settings_overrides
) -> None:
    """Before the gate, a sign-in's DPoP proof was checked inside the view,
    after the limit: a client over its limit heard 429 whatever it sent. The
    gate now checks the proof first, so every proof is verified (and a
    client over the limit hears 400) without the limit counting it."""
    body = {"identifier": "nobody@example.com", "password": "x" * 12}
    client.post("/api/v1/login/password", json=body)
    response = client.post("/api/v1/login/password", json=body, headers={"DPoP": "not.a.proof"})
    _assert_api_problem(response, 429, "rate-limited")


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock


def test_a_stale_non_operator_hears_operators_only_not_a_step_up_challenge(
    client, mailbox, sms, frozen_clock
) -> None:
    """The role is refused before the age: a step-up would not help."""
    _, session = register(client, mailbox, sms)
    frozen_clock.advance(seconds=20 * 60)
    response = client.get("/api/v1/admin/requests", headers=bearer(session["token"]))
    _assert_api_problem(response, 403, "operator-only")


def test_a_consent_pending_session_is_refused_before_its_step_up_age(
    client, mailbox, sms, frozen_clock
) -> None:
    """A session that owes consent decisions hears consent-required, the
    same as before the gate, even where a fresher sign-in is also needed."""
    owed_later = baseline_consent()
    required = {p.code for p in CATALOGUE.decided_at_sign_in() if p.required}
    owed_later["decisions"] = [d for d in owed_later["decisions"] if d["purpose"] in required]
    _, session = register(client, mailbox, sms, consent=owed_later)
    assert session["status"] == "consent_required"
    frozen_clock.advance(seconds=20 * 60)
    response = client.post("/api/v1/me/export", headers=bearer(session["token"]))
    _assert_api_problem(response, 403, "consent-required")


# -- CSRF ----------------------------------------------------------------------


@pytest.fixture
def form_app(app: Flask) -> Flask:
    """A public page that reads a form, and one that gives out the token."""
    pages = Blueprint("attack_forms", __name__)

    @pages.get("/attack/token")
    @public()
    def token() -> str:
        return csrf_token()

    @pages.post("/attack/form")
    @public(reads_forms=True)
    def form() -> str:
        return submitted_form().get("name", "")

    app.register_blueprint(pages)
    app.extensions["privid.surfaces"].adopt(pages, PAGES)
    return app


def test_a_planted_pre_session_cookie_too_short_to_be_ours_forges_nothing(form_app) -> None:
    """An attacker who sets a weak, guessable pre-session value (and knows the
    token for it from the service) gets a fresh random cookie instead."""
    attacker = _browser(form_app)
    attacker.set_cookie(PRE_SESSION_COOKIE, "short")
    forged_for_short = attacker.get("/attack/token").get_data(as_text=True)
    victim = _browser(form_app)
    victim.set_cookie(PRE_SESSION_COOKIE, "short")
    refused = victim.post("/attack/form", data={"name": "x", "csrf_token": forged_for_short})
    assert refused.status_code == 403
    # ... and the victim's browser is given a random value of its own.
    fresh = victim.get_cookie(PRE_SESSION_COOKIE)
    assert fresh is not None and fresh.value != "short" and len(fresh.value) >= 20


def test_the_pre_session_cookie_is_host_only_so_a_sibling_site_cannot_plant_it(
    form_app,
) -> None:
    response = _browser(form_app).get("/attack/token")
    cookie = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith(PRE_SESSION_COOKIE)
    )
    assert PRE_SESSION_COOKIE.startswith("__Host-")
    for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax"):
        assert attribute in cookie, cookie
    assert "Domain=" not in cookie, cookie


def test_a_pre_session_token_does_not_pass_for_a_signed_in_cookie_session(
    app, client, mailbox, sms
) -> None:
    """The form token a browser had before signing in (or one an attacker
    got for a cookie value of their own) is no token for the session."""
    signed = _cookie_session(app, client, mailbox, sms)
    browser = signed["browser"]
    with app.test_request_context(headers={"Cookie": f"{PRE_SESSION_COOKIE}={'a' * 32}"}):
        pre_token = csrf_token()
    browser.set_cookie(PRE_SESSION_COOKIE, "a" * 32)
    refused = browser.post("/api/v1/me/sessions/revoke-others", headers={CSRF: pre_token})
    _assert_api_problem(refused, 403, "csrf-failed")


def test_a_cookie_session_token_sent_as_a_form_field_still_needs_the_right_value(
    app, client, mailbox, sms
) -> None:
    """Cross-site forms can post form bodies to JSON endpoints: the field is
    read, but only this session's token passes."""
    signed = _cookie_session(app, client, mailbox, sms)
    browser = signed["browser"]
    forged = browser.post("/api/v1/logout", data={"csrf_token": "0" * 64})
    _assert_api_problem(forged, 403, "csrf-failed")
    assert browser.get("/api/v1/me").status_code == 200


# -- surfaces ------------------------------------------------------------------


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/v1/me"), ("DELETE", "/api/v1/purposes"), ("POST", "/healthz")],
)
def test_a_browser_using_the_wrong_method_on_a_json_endpoint_gets_a_problem_document(
    client, method, path
) -> None:
    """A 405 has no matched rule, so no blueprint; the surface must still be
    the endpoint's own (the JSON API), whatever the client accepts."""
    response = client.open(path, method=method, headers=HTML)
    _assert_api_problem(response, 405, "method-not-allowed")
    assert response.headers.get("Allow")


def test_the_gates_refusals_on_json_endpoints_are_problem_documents_for_browsers_too(
    client,
) -> None:
    response = client.post("/api/v1/logout", headers=HTML)
    _assert_api_problem(response, 401, "authentication-required")


@pytest.mark.parametrize("settings_overrides", [{"limit_login_per_ip": "1/hour"}])
def test_a_rate_limit_raised_before_the_view_is_a_problem_document(
    client, settings_overrides
) -> None:
    body = {"identifier": "nobody@example.com", "password": "x" * 12}
    client.post("/api/v1/login/password", json=body)
    response = client.post("/api/v1/login/password", json=body, headers=HTML)
    _assert_api_problem(response, 429, "rate-limited")


@pytest.fixture
def crash_app(app: Flask) -> Flask:
    api = Blueprint("attack_crash", __name__, url_prefix="/api/v1/attack")

    @api.get("/crash")
    @public()
    def crash() -> str:
        raise ZeroDivisionError("secret-detail 13800138000")

    app.register_blueprint(api)
    app.extensions["privid.surfaces"].adopt(api, JSON_API)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def test_an_unexpected_error_in_a_json_view_is_a_problem_document_without_its_message(
    crash_app, caplog
) -> None:
    response = _browser(crash_app).get("/api/v1/attack/crash", headers=HTML)
    _assert_api_problem(response, 500, "internal-error")
    assert "13800138000" not in response.get_data(as_text=True)
    assert "13800138000" not in caplog.text


def test_an_unknown_address_is_html_for_a_browser_and_json_under_the_api(client) -> None:
    page = client.get("/no-such-page", headers=HTML)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "nonce-" in page.headers["Content-Security-Policy"]
    _assert_api_problem(client.get("/api/v1/no-such-thing", headers=HTML), 404, "not-found")


# -- the pages' redirects --------------------------------------------------------


@pytest.fixture
def page_app(app: Flask) -> Flask:
    pages = Blueprint("attack_pages", __name__)

    @pages.get("/attack/private")
    @signed_in()
    def private() -> str:
        return current_caller().user.id

    @pages.get("/attack/export")
    @signed_in(step_up=EXPORT)
    def export_page() -> str:
        return "fresh enough"

    @pages.post("/attack/private")
    @signed_in()
    def private_form() -> str:
        return submitted_form().get("name", "")

    app.register_blueprint(pages)
    app.extensions["privid.surfaces"].adopt(pages, PAGES)
    return app


def test_the_sign_in_redirect_of_a_page_never_leaves_the_site(page_app) -> None:
    """A next= the visitor (or a link) brought along is not where they go back
    to: the redirect names this page, on this site."""
    path = "/attack/private?next=https://evil.example/"
    response = _browser(page_app).get(path, headers=HTML)
    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert not target.scheme and not target.netloc and target.path == "/signin"
    back = parse_qs(target.query)["next"]
    assert back == [path]


def test_a_stale_page_session_is_sent_to_step_up_and_back_here(
    page_app, client, mailbox, sms, frozen_clock
) -> None:
    signed = _cookie_session(page_app, client, mailbox, sms)
    browser = signed["browser"]
    assert browser.get("/attack/export").get_data(as_text=True) == "fresh enough"
    frozen_clock.advance(seconds=20 * 60)
    response = browser.get("/attack/export?tab=2", headers=HTML)
    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert not target.netloc and target.path == "/step-up"
    assert parse_qs(target.query)["next"] == ["/attack/export?tab=2"]


def test_a_signed_out_form_post_is_redirected_without_its_csrf_token_in_the_url(
    page_app,
) -> None:
    """The 303 to the sign-in page names the page, never what was posted."""
    browser = _browser(page_app)
    token = browser.get("/attack/private", headers=HTML)
    assert token.status_code == 303
    posted = browser.post(
        "/attack/private", data={"name": "Ann", "csrf_token": "tok-123456"}, headers=HTML
    )
    assert posted.status_code == 303
    assert "tok-123456" not in posted.headers["Location"]
    assert "Ann" not in posted.headers["Location"]


# -- the unit of work ------------------------------------------------------------

PROBE = "CREATE TABLE IF NOT EXISTS gate_attack_probe (note VARCHAR(40))"


def _probe_rows(app: Flask) -> list[str]:
    with app.extensions["privid.engine"].connect() as connection:
        return [r[0] for r in connection.execute(text("SELECT note FROM gate_attack_probe"))]


@pytest.fixture
def writer_app(app: Flask) -> Iterator[Flask]:
    with app.extensions["privid.engine"].begin() as connection:
        connection.execute(text(PROBE))
        connection.execute(text("DELETE FROM gate_attack_probe"))
    api = Blueprint("attack_writer", __name__, url_prefix="/api/v1/attack")

    def write(note: str) -> None:
        services().db.execute(text("INSERT INTO gate_attack_probe (note) VALUES (:n)"), {"n": note})

    @api.post("/written-then-crash")
    @public(csrf=False)
    def written_then_crash() -> str:
        write("crash")
        raise RuntimeError("after a write")

    @api.post("/written-then-refused")
    @public(csrf=False)
    def written_then_refused() -> str:
        write("refused")
        raise ServiceError("attack", 409, "Refused", "Refused after a write.")

    @api.post("/written-then-hook-fails")
    @public(csrf=False)
    def written_then_hook_fails() -> str:
        write("hook")
        return "ok"

    @api.after_request
    def failing_hook(response: Any) -> Any:
        from flask import g, request

        # Once: the error response that follows passes through the hooks too.
        if request.path.endswith("hook-fails") and not g.get("attack_hook_failed"):
            g.attack_hook_failed = True
            raise RuntimeError("an after_request hook failed")
        return response

    app.register_blueprint(api)
    app.extensions["privid.surfaces"].adopt(api, JSON_API)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    yield app
    # The table is the test's own: PostgreSQL would keep it for the schema test.
    with app.extensions["privid.engine"].begin() as connection:
        connection.execute(text("DROP TABLE gate_attack_probe"))


@pytest.mark.parametrize(
    ("path", "status"),
    [("written-then-crash", 500), ("written-then-refused", 409), ("written-then-hook-fails", 500)],
)
def test_a_failed_request_commits_none_of_its_writes(writer_app, path, status) -> None:
    response = _browser(writer_app).post(f"/api/v1/attack/{path}")
    _assert_api_problem(response, status)
    assert _probe_rows(writer_app) == []


def test_a_bearer_token_in_the_header_is_who_the_limiter_and_the_gate_both_see(
    app, client, mailbox, sms
) -> None:
    """The limiter's per-account key authenticates before the gate and caches
    the caller: with a cookie of one account and a bearer token of another,
    both must count and admit the same account (the token's)."""
    cookie_side = _cookie_session(app, client, mailbox, sms)
    browser = cookie_side["browser"]
    _, token_side = register(client, mailbox, sms)
    body = {"kind": "deletion", "categories": ["ended_sessions"]}
    made = browser.post(REQUESTS, json=body, headers=bearer(token_side["token"]))
    assert made.status_code == 201, made.get_data(as_text=True)
    mine = browser.get(REQUESTS, headers=bearer(token_side["token"])).get_json()
    theirs = browser.get(REQUESTS).get_json()
    assert len(mine["requests"]) == 1
    assert theirs["requests"] == []


def test_a_rate_limit_storage_failure_after_the_view_commits_nothing_it_reports_failed(
    app, client, mailbox, sms, monkeypatch
) -> None:
    """flask-limiter reads its storage again to write the RateLimit headers,
    in an after_request hook. If that fails, the client is told 500: the
    request's writes must not have been committed already."""
    from app.extensions import limiter

    _, session = register(client, mailbox, sms)

    def storage_gone(*_args: Any) -> Any:
        raise ConnectionError("rate-limit storage unreachable")

    monkeypatch.setattr(limiter.limiter, "get_window_stats", storage_gone)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    body = {"kind": "deletion", "categories": ["other"]}
    response = client.post(REQUESTS, json=body, headers=bearer(session["token"]))
    assert response.status_code == 500
    assert row_count(app, "data_subject_requests") == 0


def test_a_pre_session_token_for_a_known_session_id_is_not_that_sessions_token(
    app, client, mailbox, sms
) -> None:
    """Session ids are no secret (GET /me/sessions lists them). The service
    signs any pre-session cookie value it is sent; sending a victim's session
    id as one must not yield the victim's session CSRF token."""
    victim = _cookie_session(app, client, mailbox, sms)
    with app.test_request_context(
        headers={"Cookie": f"{PRE_SESSION_COOKIE}={victim['session_id']}"}
    ):
        signed_for_id = csrf_token()
    assert signed_for_id != victim["csrf_token"]
    forged = victim["browser"].post("/api/v1/logout", headers={CSRF: signed_for_id})
    _assert_api_problem(forged, 403, "csrf-failed")


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/me/sessions/revoke-others"])
def test_options_is_answered_with_allow_as_before_the_gate(client, path) -> None:
    """Flask answers OPTIONS itself (no view runs); before the gate that needed
    no session, and a client asking what an address allows still gets Allow."""
    response = client.options(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "GET" in response.headers["Allow"] or "POST" in response.headers["Allow"]


def test_a_cross_site_form_cannot_sign_a_browser_in_to_the_attackers_account(
    app, client, mailbox, sms
) -> None:
    """Login CSRF through the JSON API: a form post (no preflight) is refused
    before any session is made, so no cookie is set."""
    person, _ = register(client, mailbox, sms)
    victim = _browser(app)
    fields = {"identifier": person.email, "password": person.password, "token_delivery": "cookie"}
    response = victim.post("/api/v1/login/password", data=fields)
    _assert_api_problem(response, 415)
    assert not [c for c in response.headers.getlist("Set-Cookie") if "session" in c]
