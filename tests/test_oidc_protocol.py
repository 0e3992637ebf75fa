"""The authorisation endpoint as relying parties and the conformance suite
drive it: PKCE, refused response types and request objects, prompt, max_age,
acr_values and the claims parameter; what the tokens say (signatures, at_hash,
formats, subjects); UserInfo three ways; discovery. In process, on a frozen
clock so sign-in times can be told apart."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.clock import FrozenClock
from app.services.sessions import Acr
from tests.helpers import Person, enable_totp, other_browser, register
from tests.oidc_helpers import (
    FIRST_PARTY,
    PARTNER,
    PUBLIC_APP,
    RegisteredClient,
    add_client,
    approval_fields,
    approve,
    authorize_query,
    bearer_get,
    exchange,
    get_code,
    pkce_pair,
    redirect_params,
    sign_in_when_asked,
    signed_jwt,
    step_aligned_now,
    unchanged,
)

ISSUER = "https://localhost"
MFA = Acr.MULTI_FACTOR.value


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(step_aligned_now())


@pytest.fixture
def signed_in(client: FlaskClient, mailbox: Any, sms: Any) -> tuple[FlaskClient, Person]:
    """A browser with a fresh cookie session (single factor), and its person."""
    person, _ = register(client, mailbox, sms, token_delivery="cookie")
    return client, person


def _error_to_client(answer: Any, rp: RegisteredClient, error: str, state: str) -> dict[str, str]:
    """An error redirect to the client: only the RFC 6749 members, the state
    sent, the issuer (RFC 9207), and a description the suite accepts."""
    assert answer.status_code in (302, 303), (answer.status_code, answer.data[:300])
    assert answer.headers["Location"].startswith(rp.redirect_uri + "?")
    back = redirect_params(answer)
    assert back["error"] == error, back
    assert back["state"] == state and back["iss"] == ISSUER
    assert "code" not in back
    assert set(back) <= {"error", "error_description", "error_uri", "state", "iss"}, back
    description = back.get("error_description", "")
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description), description
    return back


def _error_page(answer: Any) -> None:
    assert answer.status_code == 400, answer.status_code
    assert answer.mimetype == "text/html"
    assert "Location" not in answer.headers


def _tokens(client: FlaskClient, rp: RegisteredClient, code: str, verifier: str | None = None):
    answer = exchange(client, rp, code, verifier)
    assert answer.status_code == 200, answer.json
    return answer.json


# -- PKCE -----------------------------------------------------------------------------


def test_public_client_without_code_challenge_is_told_at_its_redirect_uri(
    app: Flask, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, PUBLIC_APP)
    answer = browser.get(authorize_query(rp, state="s-1"))
    _error_to_client(answer, rp, "invalid_request", "s-1")


def test_plain_code_challenge_is_refused(app: Flask, signed_in: tuple[FlaskClient, Person]):
    browser, _ = signed_in
    rp = add_client(app, PUBLIC_APP)
    verifier = secrets.token_urlsafe(48)
    answer = browser.get(
        authorize_query(rp, state="s-2", code_challenge=verifier, code_challenge_method="plain")
    )
    _error_to_client(answer, rp, "invalid_request", "s-2")
    # No method at all means plain too (RFC 7636 section 4.3).
    answer = browser.get(authorize_query(rp, state="s-3", code_challenge=verifier))
    _error_to_client(answer, rp, "invalid_request", "s-3")


def test_wrong_code_verifier_is_invalid_grant_and_the_right_one_still_works(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, PUBLIC_APP, first_party=True)
    verifier, challenge = pkce_pair()
    back = get_code(browser, rp, code_challenge=challenge, code_challenge_method="S256")
    wrong = exchange(client, rp, back["code"], pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_grant"
    missing = exchange(client, rp, back["code"])
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"
    # A failed attempt does not spend the code: its holder with the verifier is served.
    assert exchange(client, rp, back["code"], verifier).status_code == 200


def test_verifier_without_a_challenge_is_refused(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)  # require_pkce=False
    back = get_code(browser, rp)
    answer = exchange(client, rp, back["code"], pkce_pair()[0])
    assert answer.status_code == 400 and answer.json["error"] == "invalid_request"


def test_confidential_client_requires_pkce_by_default(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY, require_pkce=None)
    answer = browser.get(authorize_query(rp, state="s-4"))
    _error_to_client(answer, rp, "invalid_request", "s-4")
    verifier, challenge = pkce_pair()
    back = get_code(browser, rp, code_challenge=challenge, code_challenge_method="S256")
    assert _tokens(client, rp, back["code"], verifier)["access_token"]


# -- requests that get an error page, or an error at the redirect URI -----------------


def test_unknown_client_gets_an_error_page(signed_in: tuple[FlaskClient, Person]) -> None:
    browser, _ = signed_in
    rp = RegisteredClient("0" * 32, None, "https://rp.example/callback")
    _error_page(browser.get(authorize_query(rp)))
    # Not even an unsupported response type redirects for an unknown client.
    _error_page(browser.get(authorize_query(rp, response_type="token")))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://rp.example/callback/extra",  # the suite's check: one more segment
        "https://rp.example/callback?x=1",
        "https://rp.example/Callback",
        "https://rp.example/callback_invalid",  # the suite's request-object check
        "https://evil.example/callback",
        "http://rp.example/callback",
        "",
    ],
)
def test_unregistered_redirect_uri_gets_an_error_page(
    app: Flask, signed_in: tuple[FlaskClient, Person], redirect_uri: str
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    stray = RegisteredClient(rp.client_id, rp.secret, redirect_uri)
    _error_page(browser.get(authorize_query(stray)))
    _error_page(browser.get(authorize_query(stray, response_type="token")))
    _error_page(browser.get(authorize_query(stray, request="e30.e30.")))


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token"])
def test_other_response_types_are_unsupported(
    app: Flask, signed_in: tuple[FlaskClient, Person], response_type: str
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    answer = browser.get(authorize_query(rp, response_type=response_type, state="s-5"))
    _error_to_client(answer, rp, "unsupported_response_type", "s-5")


def test_missing_response_type_is_an_error_for_the_client(
    app: Flask, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    answer = browser.get(authorize_query(rp, response_type=None, state="s-6"))  # type: ignore[arg-type]
    back = redirect_params(answer)
    assert back["error"] in ("invalid_request", "unsupported_response_type")
    assert back["state"] == "s-6" and "code" not in back


def test_request_objects_are_refused_with_the_standard_errors(
    app: Flask, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    obj = "eyJhbGciOiJub25lIn0.eyJzdGF0ZSI6ImlubmVyIn0."
    answer = browser.get(authorize_query(rp, request=obj, state="s-7"))
    _error_to_client(answer, rp, "request_not_supported", "s-7")
    answer = browser.get(
        authorize_query(rp, request_uri="https://rp.example/request.jwt", state="s-8")
    )
    _error_to_client(answer, rp, "request_uri_not_supported", "s-8")


def test_bad_authorization_requests_change_nothing(
    app: Flask, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    stray = RegisteredClient(rp.client_id, rp.secret, "https://evil.example/cb")
    unknown = RegisteredClient("0" * 32, None, rp.redirect_uri)
    bad = [
        authorize_query(stray), authorize_query(unknown),
        authorize_query(rp, response_type="token"),
        authorize_query(rp, request="e30.e30."), authorize_query(rp, claims="{"),
        authorize_query(rp, max_age="-1"), authorize_query(rp, prompt="none login"),
        authorize_query(rp, code_challenge="x" * 43, code_challenge_method="plain"),
        authorize_query(rp, prompt="none"),
        authorize_query(rp) + "&state=twice",
    ]  # fmt: skip
    for query in bad:
        with unchanged(app, query):
            answer = browser.get(query)
        assert answer.status_code in (302, 303, 400), (query, answer.status_code)
        assert "code=" not in answer.headers.get("Location", ""), query


@pytest.mark.parametrize("display", ["page", "popup"])
def test_unknown_and_ignored_parameters_do_not_matter(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person], display: str
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    back = get_code(
        browser, rp, extra="foobar", display=display, claims_locales="se", ui_locales="se",
        login_hint="nobody@example.test",
    )  # fmt: skip
    assert _tokens(client, rp, back["code"])["id_token"]


def test_login_hint_goes_to_the_sign_in_page(app: Flask, client: FlaskClient) -> None:
    rp = add_client(app, FIRST_PARTY)
    answer = client.get(authorize_query(rp, login_hint="buffy@localhost"))
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin?")
    assert "login_hint=buffy%40localhost" in answer.headers["Location"]
    assert client.get(answer.headers["Location"]).status_code == 200


def test_nonce_is_optional_and_then_absent_from_the_id_token(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    back = get_code(browser, rp, nonce=None)  # type: ignore[arg-type]
    _, claims = signed_jwt(client, _tokens(client, rp, back["code"])["id_token"])
    assert "nonce" not in claims


def test_a_long_state_comes_back_intact(app: Flask, signed_in: tuple[FlaskClient, Person]):
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    state = secrets.token_urlsafe(96)[:128]
    assert len(state) == 128
    back = get_code(browser, rp, state=state)
    assert back["state"] == state and back["iss"] == ISSUER and back["code"]


def test_post_to_the_authorization_endpoint_works(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    form = {
        "response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uri,
        "scope": "openid", "state": "posted", "nonce": "n-post",
    }  # fmt: skip
    back = redirect_params(browser.post("/oauth/authorize", data=form))
    assert back["state"] == "posted"
    _, claims = signed_jwt(client, _tokens(client, rp, back["code"])["id_token"])
    assert claims["nonce"] == "n-post"


def test_post_without_a_session_is_kept_across_the_sign_in(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    person, _ = register(other_browser(app), mailbox, sms)
    rp = add_client(app, FIRST_PARTY)
    form = {
        "response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uri,
        "scope": "openid", "state": "posted-2",
    }  # fmt: skip
    answer = sign_in_when_asked(
        client, client.post("/oauth/authorize", data=form), person.email, person.password
    )
    assert redirect_params(answer)["state"] == "posted-2"


# -- prompt ---------------------------------------------------------------------------


def test_prompt_none_without_a_session_is_login_required(app: Flask, client: FlaskClient):
    rp = add_client(app)
    state = "x" * 128
    answer = client.get(authorize_query(rp, prompt="none", state=state))
    _error_to_client(answer, rp, "login_required", state)


def test_prompt_none_with_a_session_and_a_remembered_partner_gives_a_code_silently(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    first = _tokens(client, rp, get_code(browser, rp, scope="openid profile")["code"])
    silent = browser.get(authorize_query(rp, scope="openid profile", prompt="none"))
    back = redirect_params(silent)
    second = _tokens(client, rp, back["code"])
    _, one = signed_jwt(client, first["id_token"])
    _, two = signed_jwt(client, second["id_token"])
    assert one["sub"] == two["sub"] and one["auth_time"] == two["auth_time"]
    # With the first ID token as a hint (oidcc-id-token-hint): silent as well.
    hinted = browser.get(
        authorize_query(rp, scope="openid", prompt="none", id_token_hint=first["id_token"])
    )
    assert redirect_params(hinted)["code"]


def test_id_token_hint_for_someone_else_is_login_required_with_prompt_none(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any
) -> None:
    rp, other_rp = add_client(app, FIRST_PARTY), add_client(app, FIRST_PARTY)
    first = other_browser(app)
    register(first, mailbox, sms, token_delivery="cookie")
    hint = _tokens(client, rp, get_code(first, rp)["code"])["id_token"]
    second = other_browser(app)
    register(second, mailbox, sms, token_delivery="cookie")
    answer = second.get(authorize_query(rp, prompt="none", id_token_hint=hint, state="h"))
    _error_to_client(answer, rp, "login_required", "h")
    # Without prompt=none, whoever is here signs in again as the hinted person.
    answer = second.get(authorize_query(rp, id_token_hint=hint))
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin?")
    # A hint that is not this client's, or not signed by this provider, names
    # nobody: ignored.
    forged = hint[:-8] + ("A" * 8 if not hint.endswith("A" * 8) else "B" * 8)
    for query in (
        authorize_query(other_rp, prompt="none", id_token_hint=hint),
        authorize_query(rp, prompt="none", id_token_hint=forged),
    ):
        assert redirect_params(second.get(query))["code"]


def test_prompt_none_for_a_partner_never_approved_is_consent_required(
    app: Flask, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    answer = browser.get(authorize_query(rp, prompt="none", state="s-9"))
    _error_to_client(answer, rp, "consent_required", "s-9")
    # More scopes than approved are not covered either.
    get_code(browser, rp, scope="openid profile")
    answer = browser.get(authorize_query(rp, scope="openid email", prompt="none", state="s-10"))
    _error_to_client(answer, rp, "consent_required", "s-10")


def test_prompt_none_that_would_need_a_page_says_which_error(
    app: Flask, client: FlaskClient, mailbox: Any, sms: Any, clock: FrozenClock
) -> None:
    _, session = register(client, mailbox, sms, token_delivery="cookie")
    enable_totp(client, session, at=clock.now())
    rp = add_client(app, FIRST_PARTY)
    clock.advance(seconds=5)
    too_old = client.get(authorize_query(rp, prompt="none", max_age="1", state="a"))
    _error_to_client(too_old, rp, "login_required", "a")
    weaker = client.get(authorize_query(rp, prompt="none", acr_values=MFA, state="b"))
    _error_to_client(weaker, rp, "interaction_required", "b")
    both = client.get(authorize_query(rp, prompt="none login", state="c"))
    _error_to_client(both, rp, "invalid_request", "c")


def test_prompt_login_forces_a_new_sign_in_with_a_later_auth_time(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person], clock: FrozenClock
) -> None:
    browser, person = signed_in
    rp = add_client(app, FIRST_PARTY)
    first = _tokens(client, rp, get_code(browser, rp)["code"])
    clock.advance(seconds=5)
    asked = browser.get(authorize_query(rp, prompt="login", state="again"))
    clock.advance(seconds=1)
    back = redirect_params(sign_in_when_asked(browser, asked, person.email, person.password))
    assert back["state"] == "again"
    second = _tokens(client, rp, back["code"])
    _, one = signed_jwt(client, first["id_token"])
    _, two = signed_jwt(client, second["id_token"])
    assert two["auth_time"] > one["auth_time"] and two["sub"] == one["sub"]


def test_prompt_login_note_is_bound_to_its_client(
    app: Flask, signed_in: tuple[FlaskClient, Person], clock: FrozenClock
) -> None:
    """The signed 'sign-in after' note of one client does not excuse another
    client's prompt=login, nor does a forged one."""
    browser, _ = signed_in
    rp, other = add_client(app, FIRST_PARTY), add_client(app, FIRST_PARTY)
    asked = browser.get(authorize_query(rp, prompt="login"))
    note = asked.headers["Location"].split("privid_login_after%3D", 1)[1]
    clock.advance(seconds=2)
    for forged in (note.replace("%2E", ".").split("%")[0], "9999999999999.0000"):
        answer = browser.get(authorize_query(other, prompt="login", privid_login_after=forged))
        assert answer.status_code == 303 and answer.headers["Location"].startswith("/signin?")


def test_max_age_older_than_the_sign_in_forces_a_new_one(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person], clock: FrozenClock
) -> None:
    browser, person = signed_in
    rp = add_client(app, FIRST_PARTY)
    first = _tokens(client, rp, get_code(browser, rp, max_age="15000")["code"])
    kept = _tokens(client, rp, get_code(browser, rp, max_age="10000")["code"])
    _, one = signed_jwt(client, first["id_token"])
    _, same = signed_jwt(client, kept["id_token"])
    assert one["auth_time"] == same["auth_time"]  # oidcc-max-age-10000
    clock.advance(seconds=2)
    asked = browser.get(authorize_query(rp, max_age="1"))
    back = redirect_params(sign_in_when_asked(browser, asked, person.email, person.password))
    _, two = signed_jwt(client, _tokens(client, rp, back["code"])["id_token"])
    assert two["auth_time"] > one["auth_time"]
    assert two["auth_time"] >= int(clock.now().timestamp()) - 1


def test_max_age_zero_is_satisfied_by_the_sign_in_it_asked_for(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person], clock: FrozenClock
) -> None:
    browser, person = signed_in
    rp = add_client(app, FIRST_PARTY)
    clock.advance(seconds=3)
    asked = browser.get(authorize_query(rp, max_age="0"))
    clock.advance(seconds=3)  # the sign-in itself takes a while: no loop
    back = redirect_params(sign_in_when_asked(browser, asked, person.email, person.password))
    assert back["code"]


@pytest.mark.parametrize("forcing", [{"prompt": "login"}, {"max_age": "1"}])
def test_a_forced_sign_in_then_the_approval_page_does_not_loop(
    app: Flask,
    client: FlaskClient,
    signed_in: tuple[FlaskClient, Person],
    clock: FrozenClock,
    forcing: dict[str, str],
) -> None:
    """The approval page that follows a forced sign-in carries the sign-in
    note: approving it a few seconds later gives the code, not a new sign-in."""
    browser, person = signed_in
    rp = add_client(app)
    clock.advance(seconds=3)
    asked = browser.get(authorize_query(rp, state="loop", **forcing))
    clock.advance(seconds=1)
    page = sign_in_when_asked(browser, asked, person.email, person.password)
    assert page.status_code == 200
    clock.advance(seconds=5)
    back = redirect_params(approve(browser, page.get_data(as_text=True)))
    assert back["state"] == "loop" and back["code"]


@pytest.mark.parametrize("kind", [PARTNER, FIRST_PARTY], ids=["partner", "first-party"])
def test_prompt_consent_shows_the_page_once_and_then_gives_the_code(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person], kind: Any
) -> None:
    browser, _ = signed_in
    rp = add_client(app, kind)
    get_code(browser, rp, scope="openid offline_access")
    page = browser.get(authorize_query(rp, scope="openid offline_access", prompt="consent"))
    assert page.status_code == 200  # asked again, although remembered
    back = redirect_params(approve(browser, page.get_data(as_text=True)))
    tokens = _tokens(client, rp, back["code"])
    assert tokens["refresh_token"]  # offline_access with prompt=consent (Core 11)
    denied = browser.get(authorize_query(rp, prompt="consent", state="d"))
    answer = approve(browser, denied.get_data(as_text=True), decision="deny")
    _error_to_client(answer, rp, "access_denied", "d")


def test_bad_max_age_is_invalid_request(app: Flask, signed_in: tuple[FlaskClient, Person]):
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    for value in ("-1", "soon", "1e3"):
        answer = browser.get(authorize_query(rp, max_age=value, state="m"))
        _error_to_client(answer, rp, "invalid_request", "m")


# -- acr_values and the claims parameter ----------------------------------------------


def test_acr_values_multi_factor_sends_a_totp_account_to_step_up(
    app: Flask,
    client: FlaskClient,
    mailbox: Any,
    sms: Any,
    clock: FrozenClock,
) -> None:
    person, session = register(client, mailbox, sms, token_delivery="cookie")
    totp, _ = enable_totp(client, session, at=clock.now())
    rp = add_client(app, FIRST_PARTY)
    asked = client.get(authorize_query(rp, acr_values=MFA, state="mfa"))
    assert asked.status_code == 303 and asked.headers["Location"].startswith("/step-up?")
    page = client.get(asked.headers["Location"])
    assert page.status_code == 200 and 'name="totp_code"' in page.text
    clock.advance(seconds=30)
    fields = approval_fields(page.text)
    done = client.post(
        "/step-up",
        data={**fields, "password": person.password, "totp_code": totp.at(clock.now())},
    )
    assert done.status_code == 303 and done.headers["Location"].startswith("/oauth/authorize?")
    back = redirect_params(client.get(done.headers["Location"]))
    assert back["state"] == "mfa"
    _, claims = signed_jwt(client, _tokens(client, rp, back["code"])["id_token"])
    assert claims["acr"] == MFA and "otp" in claims["amr"]


def test_acr_values_the_account_cannot_reach_are_a_preference(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    back = get_code(browser, rp, acr_values=MFA)
    _, claims = signed_jwt(client, _tokens(client, rp, back["code"])["id_token"])
    # The level reached is reported, not the one asked for.
    assert claims["acr"] == Acr.SINGLE_FACTOR.value


def test_every_supported_acr_value_at_once_succeeds(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    supported = client.get("/.well-known/openid-configuration").json["acr_values_supported"]
    back = get_code(browser, rp, acr_values=" ".join(supported))
    _, claims = signed_jwt(client, _tokens(client, rp, back["code"])["id_token"])
    assert claims["acr"] in supported


def test_essential_acr_the_account_cannot_reach_is_access_denied(
    app: Flask, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    claims = {"id_token": {"acr": {"essential": True, "values": [MFA]}}}
    answer = browser.get(authorize_query(rp, claims=json.dumps(claims), state="ess"))
    _error_to_client(answer, rp, "access_denied", "ess")


def test_essential_name_asked_for_userinfo_is_there_and_not_in_the_id_token(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, person = signed_in
    rp = add_client(app)
    claims = {"userinfo": {"name": {"essential": True}}}
    back = get_code(browser, rp, scope="openid", claims=json.dumps(claims))
    tokens = _tokens(client, rp, back["code"])
    _, id_claims = signed_jwt(client, tokens["id_token"])
    assert "name" not in id_claims
    info = bearer_get(client, "/oauth/userinfo", tokens["access_token"])
    assert info.status_code == 200 and info.json["name"] == person.full_name
    assert "email" not in info.json


def test_claims_asked_one_by_one_need_the_partner_approval_of_their_scope(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    """The claims parameter is no way around the approval page: asking for
    email in the ID token shows it on the page, and a remembered approval
    of other scopes does not cover a phone number asked for silently."""
    browser, person = signed_in
    rp = add_client(app)
    ask_email = json.dumps({"id_token": {"email": None}})
    page = browser.get(authorize_query(rp, scope="openid", claims=ask_email))
    assert page.status_code == 200 and "Your email address" in page.text
    assert "Your mobile phone number" not in page.text
    back = redirect_params(approve(browser, page.get_data(as_text=True)))
    _, id_claims = signed_jwt(client, _tokens(client, rp, back["code"])["id_token"])
    assert id_claims["email"] == person.email
    ask_phone = json.dumps({"userinfo": {"phone_number": {"essential": True}}})
    answer = browser.get(
        authorize_query(rp, scope="openid", claims=ask_phone, prompt="none", state="p")
    )
    _error_to_client(answer, rp, "consent_required", "p")


def test_claims_of_scopes_the_client_is_not_registered_for_are_not_released(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, PARTNER, scopes=("openid", "profile"))
    asked = {"userinfo": {"email": None, "name": None}, "id_token": {"phone_number": None}}
    back = get_code(browser, rp, scope="openid", claims=json.dumps(asked))
    tokens = _tokens(client, rp, back["code"])
    _, id_claims = signed_jwt(client, tokens["id_token"])
    assert "phone_number" not in id_claims
    info = bearer_get(client, "/oauth/userinfo", tokens["access_token"]).json
    assert "email" not in info and info["name"]


@pytest.mark.parametrize(
    "claims",
    [
        "{not json", "[]", '"name"', '{"userinfo": ["name"]}', '{"id_token": 3}',
        '{"userinfo":' + "[" * 1000,  # deeper than the parser recurses, under 4096 bytes
        '{"userinfo": {"name": null}, "pad": "' + "x" * 4096 + '"}',  # too long
    ],
)  # fmt: skip
def test_malformed_claims_parameter_is_invalid_request(
    app: Flask, signed_in: tuple[FlaskClient, Person], claims: str
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    answer = browser.get(authorize_query(rp, claims=claims, state="c"))
    _error_to_client(answer, rp, "invalid_request", "c")


# -- scopes and the approval page -----------------------------------------------------


def test_email_scope_claims_are_in_userinfo_only(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, person = signed_in
    rp = add_client(app)
    # Scope values reversed, parameters in another order (oidcc-alternate-happy-flow).
    query = {
        "nonce": "n", "state": "alt", "scope": "email openid", "redirect_uri": rp.redirect_uri,
        "client_id": rp.client_id, "response_type": "code",
    }  # fmt: skip
    page = browser.get("/oauth/authorize?" + urlencode(query))
    back = redirect_params(approve(browser, page.get_data(as_text=True)))
    tokens = _tokens(client, rp, back["code"])
    _, id_claims = signed_jwt(client, tokens["id_token"])
    assert not {"email", "email_verified", "name"} & id_claims.keys()
    info = bearer_get(client, "/oauth/userinfo", tokens["access_token"])
    assert info.mimetype == "application/json"
    assert info.json["email"] == person.email and info.json["email_verified"] is True
    assert "name" not in info.json and info.json["sub"] == id_claims["sub"]


def test_phone_scope_gives_the_verified_phone(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, person = signed_in
    rp = add_client(app)
    tokens = _tokens(client, rp, get_code(browser, rp, scope="openid phone")["code"])
    info = bearer_get(client, "/oauth/userinfo", tokens["access_token"]).json
    assert info["phone_number"] == person.phone and info["phone_number_verified"] is True


def test_refusing_a_partner_is_access_denied_and_recorded(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    page = browser.get(authorize_query(rp, state="no"))
    assert page.status_code == 200
    answer = approve(browser, page.get_data(as_text=True), decision="deny")
    _error_to_client(answer, rp, "access_denied", "no")
    engine = app.extensions["privid.engine"]
    with engine.connect() as connection:
        from sqlalchemy import text

        rows = connection.execute(
            text("SELECT purpose, decision FROM consent_records WHERE purpose = 'partner_sharing'")
        ).all()
    assert [tuple(r) for r in rows] == [("partner_sharing", "refused")]


def test_the_approval_page_answer_needs_its_form_token(
    app: Flask, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app)
    page = browser.get(authorize_query(rp))
    fields = approval_fields(page.get_data(as_text=True))
    fields.pop("csrf_token")
    forged = browser.post("/oauth/authorize/decision", data={**fields, "decision": "approve"})
    assert forged.status_code in (400, 403) and "Location" not in forged.headers
    answer = browser.get(authorize_query(rp, prompt="none", state="still"))
    _error_to_client(answer, rp, "consent_required", "still")


# -- the tokens -----------------------------------------------------------------------


def test_id_token_is_rs256_by_default_with_kid_and_a_correct_at_hash(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    tokens = _tokens(client, rp, get_code(browser, rp, nonce="n-9")["code"])
    header, claims = signed_jwt(client, tokens["id_token"])
    assert header["alg"] == "RS256" and header["kid"]
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json["keys"]]
    assert header["kid"] in kids and len(kids) == len(set(kids))
    digest = hashlib.sha256(tokens["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert claims["iss"] == ISSUER and claims["aud"] == rp.client_id
    assert claims["nonce"] == "n-9" and claims["exp"] > claims["iat"]
    assert tokens["expires_in"] > 0 and tokens["token_type"] == "Bearer"


# What the Basic plan lets an ID token carry without a warning (oidcc-server).
ID_TOKEN_CLAIMS = {
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "at_hash",
    "c_hash", "nbf", "jti", "sid", "s_hash", "txn",
}  # fmt: skip


def test_first_flow_meets_the_basic_plan_checks(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person], clock: FrozenClock
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY)
    back = get_code(browser, rp, scope="openid")
    codes = {back["code"], get_code(browser, rp, scope="openid")["code"]}
    assert len(codes) == 2 and all(len(c) >= 43 for c in codes)  # 256 random bits
    answer = exchange(client, rp, back["code"])
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    tokens = answer.json
    assert 0 < tokens["expires_in"] < 365 * 86400
    _, claims = signed_jwt(client, tokens["id_token"])
    assert set(claims) <= ID_TOKEN_CLAIMS, set(claims) - ID_TOKEN_CLAIMS
    now = int(clock.now().timestamp())
    assert abs(claims["iat"] - now) < 300 and claims["exp"] > now
    assert claims["auth_time"] <= now and isinstance(claims["acr"], str) and claims["acr"]
    info = bearer_get(client, "/oauth/userinfo", tokens["access_token"])
    assert info.status_code == 200 and info.json == {"sub": claims["sub"]}


def test_id_token_is_es256_for_a_client_registered_so(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    rp = add_client(app, FIRST_PARTY, id_token_signed_response_alg="ES256")
    tokens = _tokens(client, rp, get_code(browser, rp)["code"])
    header, _ = signed_jwt(client, tokens["id_token"])
    assert header["alg"] == "ES256" and header["kid"]


def test_access_token_is_an_rfc9068_jwt_or_opaque_per_client(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    as_jwt = add_client(app, FIRST_PARTY)
    opaque = add_client(app, FIRST_PARTY, access_token_format="opaque")
    token = _tokens(client, as_jwt, get_code(browser, as_jwt)["code"])["access_token"]
    header, claims = signed_jwt(client, token)
    assert header["typ"] == "at+jwt" and header["kid"]
    assert {"iss", "exp", "aud", "sub", "client_id", "iat", "jti"} <= claims.keys()
    assert claims["client_id"] == as_jwt.client_id and claims["iss"] == ISSUER
    plain = _tokens(client, opaque, get_code(browser, opaque)["code"])["access_token"]
    assert plain.count(".") == 0 and len(plain) >= 32
    assert bearer_get(client, "/oauth/userinfo", plain).status_code == 200


# -- UserInfo three ways --------------------------------------------------------------


def test_userinfo_by_get_post_header_and_post_body(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, person = signed_in
    rp = add_client(app, FIRST_PARTY)
    token = _tokens(client, rp, get_code(browser, rp)["code"])["access_token"]
    header = {"Authorization": f"Bearer {token}"}
    answers = [
        client.get("/oauth/userinfo", headers=header),
        client.post("/oauth/userinfo", headers=header),
        client.post("/oauth/userinfo", data={"access_token": token}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.json
        assert answer.mimetype == "application/json"
        assert answer.json["name"] == person.full_name
    both = client.post("/oauth/userinfo", headers=header, data={"access_token": token})
    assert both.status_code == 400 and both.json["error"] == "invalid_request"
    # The token in the query string is not accepted (RFC 9700 section 2.5).
    query = client.get(f"/oauth/userinfo?access_token={token}")
    assert query.status_code == 401


# -- subjects -------------------------------------------------------------------------


def test_pairwise_subjects_differ_across_sectors_and_agree_within_one(
    app: Flask, client: FlaskClient, signed_in: tuple[FlaskClient, Person]
) -> None:
    browser, _ = signed_in
    shop = add_client(app, PARTNER, redirect_uris=("https://shop.example/cb",))
    shop_app = add_client(
        app, PARTNER, redirect_uris=("https://m.shop.example/cb",),
        sector_identifier="shop.example",
    )  # fmt: skip
    bank = add_client(app, PARTNER, redirect_uris=("https://bank.example/cb",))
    platform = add_client(app, FIRST_PARTY)
    subs = {}
    for name, rp in (("shop", shop), ("shop_app", shop_app), ("bank", bank), ("own", platform)):
        _, claims = signed_jwt(
            client, _tokens(client, rp, get_code(browser, rp)["code"])["id_token"]
        )
        subs[name] = claims["sub"]
    me = browser.get("/api/v1/me").json
    assert subs["shop"] == subs["shop_app"]
    assert subs["shop"] != subs["bank"] and me["user_id"] not in (subs["shop"], subs["bank"])
    assert subs["own"] == me["user_id"]


# -- discovery ------------------------------------------------------------------------


# Members from the registries (OIDC Discovery 1.0, RFC 8414, RFC 9207,
# RFC 9449, OIDC prompt=create): the Config plan warns about any other.
BOOLEAN_METADATA = {
    "claims_parameter_supported", "request_parameter_supported",
    "request_uri_parameter_supported", "require_request_uri_registration",
    "backchannel_logout_supported", "backchannel_logout_session_supported",
    "frontchannel_logout_supported", "frontchannel_logout_session_supported",
    "authorization_response_iss_parameter_supported",
}  # fmt: skip
REGISTERED_METADATA = BOOLEAN_METADATA | {
    "issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
    "registration_endpoint", "scopes_supported", "response_types_supported",
    "response_modes_supported", "grant_types_supported", "acr_values_supported",
    "subject_types_supported", "id_token_signing_alg_values_supported",
    "id_token_encryption_alg_values_supported", "userinfo_signing_alg_values_supported",
    "request_object_signing_alg_values_supported", "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported", "display_values_supported",
    "claim_types_supported", "claims_supported", "service_documentation",
    "claims_locales_supported", "ui_locales_supported", "claims_parameter_supported",
    "request_parameter_supported", "request_uri_parameter_supported",
    "require_request_uri_registration", "op_policy_uri", "op_tos_uri", "revocation_endpoint",
    "revocation_endpoint_auth_methods_supported", "introspection_endpoint",
    "introspection_endpoint_auth_methods_supported", "code_challenge_methods_supported",
    "end_session_endpoint", "backchannel_logout_supported",
    "backchannel_logout_session_supported", "frontchannel_logout_supported",
    "authorization_response_iss_parameter_supported", "dpop_signing_alg_values_supported",
    "prompt_values_supported",
}  # fmt: skip


def test_discovery_publishes_what_the_conformance_plans_check(client: FlaskClient) -> None:
    answer = client.get("/.well-known/openid-configuration")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    doc = answer.json
    assert doc["issuer"] == ISSUER
    for member, value in doc.items():
        if member.endswith("_endpoint") or member == "jwks_uri":
            assert value.startswith(ISSUER + "/"), member
    assert "registration_endpoint" not in doc
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["subject_types_supported"]) == {"public", "pairwise"}
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert "none" not in doc["id_token_signing_alg_values_supported"]
    assert {"openid", "offline_access"} <= set(doc["scopes_supported"])
    assert "address" not in doc["scopes_supported"]
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["request_parameter_supported"] is False
    assert doc["request_uri_parameter_supported"] is False
    assert doc["claims_parameter_supported"] is True
    assert "request_object_signing_alg_values_supported" not in doc
    assert doc["ui_locales_supported"] == doc["claims_locales_supported"] == ["zh-CN", "en"]
    assert set(doc) <= REGISTERED_METADATA, set(doc) - REGISTERED_METADATA
    assert "userinfo_signing_alg_values_supported" not in doc
    assert {"authorization_code", "refresh_token"} <= set(doc["grant_types_supported"])
    assert MFA in doc["acr_values_supported"]
    assert doc["claims_supported"] and "DPoP" not in json.dumps(doc["claims_supported"])
    jwks = client.get("/.well-known/jwks.json").json
    for member, value in doc.items():
        if member in BOOLEAN_METADATA:
            assert isinstance(value, bool), member
        elif member.endswith("_supported"):
            assert isinstance(value, list) and value, member
            assert all(isinstance(v, str) and v and " " not in v for v in value), member
        else:
            assert isinstance(value, str), member
    for key in jwks["keys"]:
        assert key["kid"] and not {"d", "p", "q", "k"} & key.keys()
