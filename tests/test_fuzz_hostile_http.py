"""Hostile bytes at the endpoints that parse them, through the HTTP layer.

A passkey assertion whose client data and authenticator data are anything at
all, yet correctly signed by the registered key (so py_webauthn's parsing is
what decides); a passkey registration whose client data and attestation
object are anything; a DPoP header holding anything, at sign-in and on a DPoP-bound
token; a token endpoint client_assertion that is any text, or a correctly
signed JWT whose claims hold any JSON. Each answer is a 4xx problem (or an
RFC 6749 error at the token endpoint) that changes nothing, or a success the
input had earned. Example counts come from the hypothesis profile
(tests/conftest.py); a long run needs pytest's --timeout raised.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import time
from dataclasses import replace
from typing import Any

import cbor2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import text

from tests.dpop_client import DpopKey
from tests.fakes import Mailbox, SmsOutbox
from tests.helpers import (
    HIGH_LIMITS,
    PASSKEY_AUTH_OPTIONS,
    PASSKEY_AUTH_VERIFY,
    PASSKEY_REG_OPTIONS,
    PASSKEY_REG_VERIFY,
    assert_problem,
    baseline_consent,
    enrol,
    register,
    table_rows,
)
from tests.oidc_helpers import SERVICE, add_client, unchanged
from tests.soft_authenticator import UP, SoftAuthenticator

LOGIN = "/api/v1/login/password"
ME = "/api/v1/me"
TOKEN = "/oauth/token"
ISSUER = "https://localhost"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# What a header can carry: visible Latin-1 (WSGI decodes header bytes as Latin-1).
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Hundreds of failures from one address: the throttles must not end the search.
    return {**HIGH_LIMITS, "login_free_attempts": 1_000_000}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _count(app: Flask, table: str) -> int:
    with app.extensions["privid.engine"].connect() as connection:
        return int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def session_count(app: Flask) -> int:
    return _count(app, "sessions")


# -- WebAuthn: client data and authenticator data ------------------------------------


@pytest.fixture
def passkey(client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox) -> SoftAuthenticator:
    consent = baseline_consent(device_biometrics="granted")
    _, session = register(client, mailbox, sms, consent=consent)
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    return authenticator


def _client_data(
    data: st.DataObject, challenge: str, origin: str, ceremony: str = "webauthn.get"
) -> bytes:
    """Anything, or a JSON object whose members are right or anything."""
    kind = data.draw(st.sampled_from(["bytes", "json", "object"]), label="client data")
    if kind == "bytes":
        return data.draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(data.draw(JSON_VALUES)).encode()
    members = {
        "type": data.draw(st.just(ceremony) | JSON_VALUES),
        "challenge": data.draw(st.just(challenge) | JSON_VALUES),
        "origin": data.draw(st.just(origin) | JSON_VALUES),
        **data.draw(
            st.dictionaries(st.sampled_from(["crossOrigin", "tokenBinding", "x"]), JSON_VALUES)
        ),
    }
    return json.dumps(members).encode()


def _authenticator_data(data: st.DataObject, rp_id: str, count: int) -> bytes:
    """Anything, or the right relying party hash with any flags, counter and tail."""
    if data.draw(st.booleans(), label="raw authenticator data"):
        return data.draw(st.binary(max_size=300))
    rp_hash = hashlib.sha256(rp_id.encode()).digest()
    flags = data.draw(st.integers(0, 255), label="flags")
    tail = data.draw(st.binary(max_size=120), label="attested data and extensions")
    return rp_hash + bytes([flags]) + struct.pack(">I", count) + tail


@given(data=st.data())
def test_a_signed_assertion_with_hostile_client_or_authenticator_data_changes_nothing(
    app: Flask, client: FlaskClient, passkey: SoftAuthenticator, data: st.DataObject
):
    options = client.post(PASSKEY_AUTH_OPTIONS).json
    answer = passkey.get(options)  # a real answer, its parts replaced below
    stored = passkey.credentials[0]
    stored.sign_count += 1  # the counter only climbs: a refusal must not be "cloned"
    client_data = _client_data(data, options["challenge"], passkey.origin)
    auth_data = _authenticator_data(data, options["rpId"], stored.sign_count)
    signature = stored.key.sign(auth_data + hashlib.sha256(client_data).digest())
    answer["response"].update(
        clientDataJSON=b64url(client_data),
        authenticatorData=b64url(auth_data),
        signature=b64url(signature),
    )
    before = session_count(app)
    response = client.post(
        PASSKEY_AUTH_VERIFY, json={**answer, "challenge_id": options["challenge_id"]}
    )
    if response.status_code == 200:
        # Only what a browser could have sent signs in.
        parsed = json.loads(client_data)
        assert parsed["type"] == "webauthn.get" and parsed["origin"] == passkey.origin
        assert auth_data[32] & UP and session_count(app) == before + 1
        return
    assert 400 <= response.status_code < 500, response.data[:300]
    assert_problem(response, response.status_code)
    assert session_count(app) == before


@pytest.fixture
def biometrics_token(client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox) -> str:
    consent = baseline_consent(device_biometrics="granted")
    _, session = register(client, mailbox, sms, consent=consent)
    return str(session["token"])


def _attestation_object(data: st.DataObject, rp_id: str, count: int) -> bytes:
    """Anything, or CBOR with any format and statement around authenticator
    data that is anything or the right hash with any flags and tail."""
    if data.draw(st.booleans(), label="raw attestation object"):
        return data.draw(st.binary(max_size=300))
    cbor_values = (
        st.none() | st.booleans() | st.integers() | st.binary(max_size=20) | st.text(max_size=10)
    )
    return cbor2.dumps(
        {
            "fmt": data.draw(st.sampled_from(["none", "packed", "tpm", "fido-u2f"]) | cbor_values),
            "attStmt": data.draw(
                st.dictionaries(st.sampled_from(["alg", "sig", "x5c"]), cbor_values) | cbor_values
            ),
            "authData": _authenticator_data(data, rp_id, count),
        }
    )


@given(data=st.data())
def test_a_registration_with_hostile_client_data_or_attestation_is_refused_and_stores_nothing(
    app: Flask, client: FlaskClient, biometrics_token: str, data: st.DataObject
):
    headers = {"Authorization": f"Bearer {biometrics_token}"}
    options = client.post(PASSKEY_REG_OPTIONS, headers=headers).json
    answer = SoftAuthenticator().create(options)  # a real answer, its parts replaced below
    client_data = _client_data(data, options["challenge"], "https://localhost", "webauthn.create")
    attestation = _attestation_object(data, options["rp"]["id"], 1)
    answer["response"].update(
        clientDataJSON=b64url(client_data), attestationObject=b64url(attestation)
    )
    before = _count(app, "webauthn_credentials")
    body = {**answer, "challenge_id": options["challenge_id"]}
    response = client.post(PASSKEY_REG_VERIFY, json=body, headers=headers)
    if response.status_code == 201:
        # Only an unsigned ("none") attestation of the right ceremony can pass.
        assert json.loads(client_data)["type"] == "webauthn.create"
        assert _count(app, "webauthn_credentials") == before + 1
        return
    assert 400 <= response.status_code < 500, response.data[:300]
    assert_problem(response, response.status_code)
    assert _count(app, "webauthn_credentials") == before


# -- DPoP proofs in the header -------------------------------------------------------


@given(proof=HEADER_TEXT)
def test_any_dpop_header_at_sign_in_is_a_problem_and_signs_nobody_in(
    app: Flask, client: FlaskClient, proof: str
):
    before = session_count(app)
    body = {"identifier": "nobody@example.com", "password": "x" * 12, "token_delivery": "bearer"}
    response = client.post(LOGIN, json=body, headers={"DPoP": proof})
    assert_problem(response, 400, "invalid-dpop-proof")
    assert session_count(app) == before


@pytest.fixture
def dpop_bound(client: FlaskClient, mailbox: Mailbox, sms: SmsOutbox) -> tuple[DpopKey, str]:
    person, _ = register(client, mailbox, sms)
    key = DpopKey("ES256")
    body = {"identifier": person.email, "password": person.password, "token_delivery": "bearer"}
    signed_in = client.post(LOGIN, json=body, headers={"DPoP": key.proof("POST", LOGIN)})
    assert signed_in.status_code == 200, signed_in.json
    return key, signed_in.json["token"]


@given(
    claim=st.sampled_from(["htm", "htu", "iat", "jti", "ath", "nonce"]),
    value=JSON_VALUES,
)
def test_a_signed_proof_with_any_claim_value_on_a_bound_token_is_refused_with_401(
    client: FlaskClient, dpop_bound: tuple[DpopKey, str], claim: str, value: Any
):
    key, token = dpop_bound
    good = {
        "htm": "GET",
        "htu": ISSUER + ME,
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(12),
        "ath": _ath(token),
    }
    if claim != "nonce" and good[claim] == value:
        return
    claims = {**good, claim: value}
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.key.as_dict(private=False)}
    proof = jws.serialize_compact(header, json.dumps(claims), key.key, algorithms=["ES256"])
    response = client.get(ME, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    # Still sound: a nonce string nobody asked for is ignored, and another jti
    # of the right length is just another proof (refused only when replayed).
    sound = (claim == "nonce" and isinstance(value, str | type(None))) or (
        claim == "jti" and isinstance(value, str) and 8 <= len(value) <= 256
    )
    if sound and response.status_code == 200:
        return
    assert_problem(response, 401, "invalid-dpop-proof")


def _ath(token: str) -> str:
    return b64url(hashlib.sha256(token.encode()).digest())


def test_regression_a_non_ascii_ath_on_a_bound_token_is_a_401_not_a_500(
    client: FlaskClient, dpop_bound: tuple[DpopKey, str]
):
    """Minimal example found by the DPoP property (tests/test_fuzz_parsers.py):
    ath="\\x80" made hmac.compare_digest raise TypeError."""
    key, token = dpop_bound
    proof = key.proof("GET", ME, ath="\x80")
    response = client.get(ME, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert_problem(response, 401, "invalid-dpop-proof")


# -- JWT client assertions (private_key_jwt) -----------------------------------------


class KeyClient:
    """A client_credentials client authenticating with private_key_jwt."""

    def __init__(self, app: Flask) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "fuzz-key"})
        public = self.key.as_dict(private=False)
        self.rp = add_client(
            app,
            replace(SERVICE, token_endpoint_auth_method="private_key_jwt"),
            jwks={"keys": [public]},
        )

    def claims(self) -> dict[str, Any]:
        now = int(time.time())
        cid = self.rp.client_id
        return {"iss": cid, "sub": cid, "aud": ISSUER + TOKEN, "jti": secrets.token_urlsafe(16),
                "iat": now, "exp": now + 60}  # fmt: skip

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        protected = header or {"alg": "ES256", "kid": "fuzz-key"}
        payload = json.dumps(claims).encode()
        return jws.serialize_compact(protected, payload, self.key, algorithms=["ES256"])

    def form(self, assertion: str) -> dict[str, str]:
        return {"grant_type": "client_credentials", "client_id": self.rp.client_id,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}  # fmt: skip


@pytest.fixture
def key_client(app: Flask) -> KeyClient:
    return KeyClient(app)


def oauth_refusal(response: Any) -> None:
    """An RFC 6749 section 5.2 error: 400 or 401, JSON, never cached."""
    assert response.status_code in (400, 401), (response.status_code, response.data[:300])
    assert response.mimetype == "application/json", response.data[:300]
    assert isinstance(response.json.get("error"), str), response.json
    assert response.headers["Cache-Control"] == "no-store"


def test_the_unaltered_assertion_gets_a_token(client: FlaskClient, key_client: KeyClient):
    response = client.post(TOKEN, data=key_client.form(key_client.sign(key_client.claims())))
    assert response.status_code == 200, response.json
    assert response.json["access_token"]


@given(
    assertion=st.one_of(
        HEADER_TEXT, st.from_regex(r"[A-Za-z0-9_-]{0,40}(\.[A-Za-z0-9_-]{0,40}){2}")
    )
)
def test_any_text_as_a_client_assertion_is_an_oauth_error_and_changes_nothing(
    app: Flask, client: FlaskClient, key_client: KeyClient, assertion: str
):
    with unchanged(app, "hostile client_assertion"):
        response = client.post(TOKEN, data=key_client.form(assertion))
    oauth_refusal(response)


@given(
    claim=st.sampled_from(["iss", "sub", "aud", "jti", "iat", "exp", "nbf"]),
    value=JSON_VALUES,
)
def test_a_signed_assertion_with_any_claim_value_is_an_oauth_error_or_earned_a_token(
    app: Flask, client: FlaskClient, key_client: KeyClient, claim: str, value: Any
):
    claims = {**key_client.claims(), claim: value}
    assertion = key_client.sign(claims)
    before = table_rows(app)
    response = client.post(TOKEN, data=key_client.form(assertion))
    if response.status_code == 200:
        # Only a claim that is still valid as changed: a later nbf/iat in the
        # window, another unique jti, an audience list holding the endpoint.
        assert claim in ("jti", "iat", "nbf", "aud", "exp"), (claim, value)
        return
    oauth_refusal(response)
    after = table_rows(app)
    assert {n: len(r) for n, r in after.items()} == {n: len(r) for n, r in before.items()}


@given(
    member=st.sampled_from(["alg", "kid", "typ", "crit", "jwk", "b64", "zip"]),
    value=JSON_VALUES | st.sampled_from(["none", "HS256", "RS256", "EdDSA", "fuzz-key"]),
)
def test_an_assertion_with_any_header_member_is_an_oauth_error_or_a_token_for_a_sound_one(
    app: Flask, client: FlaskClient, key_client: KeyClient, member: str, value: Any
):
    header = {"alg": "ES256", "kid": "fuzz-key", member: value}
    payload = json.dumps(key_client.claims()).encode()
    # Signed by the client's key over exactly this header, whatever it says.
    protected = b64url(json.dumps(header).encode())
    signing_input = f"{protected}.{b64url(payload)}".encode()
    signature = _es256(key_client.key, signing_input)
    assertion = f"{signing_input.decode()}.{b64url(signature)}"
    before = table_rows(app)
    response = client.post(TOKEN, data=key_client.form(assertion))
    if response.status_code == 200:
        # Still an ES256 assertion by the registered key, and a member that
        # does not change how it is verified (b64 only as its default, crit
        # only as a list of names the header has).
        assert header["alg"] == "ES256", header
        if member == "b64":
            assert value is True, header
        if member == "crit":
            assert isinstance(value, list) and value and set(value) <= set(header), header
        return
    oauth_refusal(response)
    after = table_rows(app)
    assert {n: len(r) for n, r in after.items()} == {n: len(r) for n, r in before.items()}


def _es256(key: ECKey, message: bytes) -> bytes:
    """A JWS ES256 signature (r || s, 32 bytes each) over the message."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    der = key.private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# -- regressions: "crit" that is not a list of names ---------------------------------
# Found by the header property above (minimal example {"crit": null}): joserfc
# walks crit before checking its type or the signature, so an unsigned token
# raised TypeError, a 500, wherever a JWS from outside is verified.


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    parts = (json.dumps(header).encode(), json.dumps(claims).encode(), b"x" * 64)
    return ".".join(b64url(part) for part in parts)


def test_regression_a_client_assertion_with_crit_null_is_invalid_client(
    client: FlaskClient, key_client: KeyClient
):
    assertion = _unsigned({"alg": "ES256", "kid": "fuzz-key", "crit": None}, key_client.claims())
    response = client.post(TOKEN, data=key_client.form(assertion))
    oauth_refusal(response)
    assert response.json["error"] == "invalid_client"


@pytest.mark.parametrize("crit", [None, 1, [], [1], ["typ", None]])
def test_regression_a_dpop_proof_with_a_malformed_crit_is_a_400_problem(
    app: Flask, client: FlaskClient, crit: Any
):
    key = DpopKey("ES256")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.key.as_dict(private=False)}
    claims = {"htm": "POST", "htu": ISSUER + LOGIN, "iat": int(time.time()), "jti": "a" * 16}
    proof = _unsigned({**header, "crit": crit}, claims)
    body = {"identifier": "nobody@example.com", "password": "x" * 12, "token_delivery": "bearer"}
    response = client.post(LOGIN, json=body, headers={"DPoP": proof})
    assert_problem(response, 400, "invalid-dpop-proof")


def test_regression_an_id_token_hint_with_crit_null_is_refused_not_a_500(
    app: Flask, client: FlaskClient
):
    from app.cli import unit_of_work
    from app.oidc.keys import SigningKeys

    with app.app_context(), unit_of_work() as svc:
        kid = SigningKeys.of(svc).active("RS256").kid  # a published key's kid
    hint = _unsigned({"alg": "RS256", "kid": kid, "crit": None}, {"iss": ISSUER})
    for path in ("/oauth/logout", "/oauth/authorize"):
        response = client.get(path, query_string={"id_token_hint": hint})
        assert 400 <= response.status_code < 500, (path, response.status_code)


@pytest.mark.parametrize(
    "header",
    [{"kid": "\u00e9"}, {"alg": "\u00e9"}, {"crit": ["\u00e9"]}, {"crit": ['"']}],
    ids=["kid", "alg", "crit", "crit-quote"],
)
def test_regression_an_assertion_header_echoed_in_the_error_is_invalid_client_not_a_500(
    client: FlaskClient, key_client: KeyClient, header: dict[str, Any]
):
    """Found by the header property's long run (kid "\u00e9"): joserfc's error
    description quoted the header, and authlib raised ValueError building an
    error whose description held characters RFC 6749 does not allow."""
    assertion = _unsigned({"alg": "ES256", "kid": "fuzz-key", **header}, key_client.claims())
    response = client.post(TOKEN, data=key_client.form(assertion))
    oauth_refusal(response)
    assert response.json["error"] == "invalid_client"
