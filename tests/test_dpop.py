"""DPoP (RFC 9449): the proof verifier on its own, then key-bound session
tokens as a client sees them: sign-in with a proof, a proof per request, and
every way a proof must be refused without anything changing."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, RSAKey

from app.clock import FrozenClock
from app.security.dpop import (
    MAX_PROOF_LENGTH,
    DpopInvalid,
    DpopProof,
    DpopVerifier,
    access_token_hash,
)
from tests.dpop_client import BASE, DpopKey
from tests.helpers import (
    Person,
    assert_problem,
    bearer,
    nothing_changes,
    register,
    www_authenticate,
)

START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
MAX_AGE, SKEW = 300, 30  # the settings' defaults
T = int(START.timestamp())
URL = "https://localhost/api/v1/me"
TOKEN = "an-access-token-the-proof-is-for"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

ME = "/api/v1/me"
SESSIONS = "/api/v1/me/sessions"
LOGIN = "/api/v1/login/password"
LOGOUT = "/api/v1/logout"
STEP_UP = "/api/v1/me/step-up"


# -- building proofs by hand ---------------------------------------------------------

DROP = object()  # a claim or header member to leave out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def public(key: DpopKey) -> dict[str, Any]:
    return dict(key.key.as_dict(private=False))


def claims(**changes: Any) -> dict[str, Any]:
    base = {"htm": "GET", "htu": URL, "iat": T, "jti": "jti-0123456789"}
    return {k: v for k, v in {**base, **changes}.items() if v is not DROP}


def signed(key: DpopKey, payload: dict[str, Any] | str, **header: Any) -> str:
    """A proof signed by ``key`` with any header and payload (NaN allowed)."""
    head = {"typ": "dpop+jwt", "alg": key.alg, "jwk": public(key), **header}
    head = {k: v for k, v in head.items() if v is not DROP}
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return jws.serialize_compact(head, text, key.key, algorithms=[key.alg])


def rfc7638(jwk: dict[str, Any]) -> str:
    """The SHA-256 JWK thumbprint, computed from the RFC's text (section 3.2)."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64(hashlib.sha256(canonical.encode()).digest())


def flip_first_char(segment: str) -> str:
    return ("B" if segment[0] == "A" else "A") + segment[1:]


@dataclass(frozen=True)
class Keys:
    es: DpopKey
    es_other: DpopKey
    ed: DpopKey
    rs: DpopKey
    ps: DpopKey

    def by_alg(self, alg: str) -> DpopKey:
        return {"ES256": self.es, "Ed25519": self.ed, "RS256": self.rs, "PS256": self.ps}[alg]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        es=DpopKey("ES256"),
        es_other=DpopKey("ES256"),
        ed=DpopKey("Ed25519"),
        rs=DpopKey("RS256"),
        ps=DpopKey("PS256", RSAKey.generate_key(2048)),
    )


def verify(proof: str, **options: Any) -> DpopProof:
    verifier = DpopVerifier(max_age_seconds=MAX_AGE, future_skew_seconds=SKEW)
    kwargs: dict[str, Any] = {"method": "GET", "url": URL, "now": START, **options}
    return verifier.verify(proof, **kwargs)


# -- the verifier: what it accepts ----------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "Ed25519", "RS256", "PS256"])
def test_a_valid_proof_is_accepted_and_names_its_keys_thumbprint(keys, alg):
    key = keys.by_alg(alg)
    proof = key.proof("GET", URL, iat=T, jti="jti-for-" + alg)
    checked = verify(proof)
    assert checked.jkt == rfc7638(public(key)) == key.thumbprint
    assert checked.jti == "jti-for-" + alg
    assert checked.issued_at == START
    assert checked.nonce is None
    assert checked.public_jwk["kty"] == public(key)["kty"]
    assert PRIVATE_MEMBERS.isdisjoint(checked.public_jwk)
    assert rfc7638(checked.public_jwk) == checked.jkt


def test_keys_of_the_same_type_have_different_thumbprints(keys):
    one = verify(keys.es.proof("GET", URL, iat=T))
    other = verify(keys.es_other.proof("GET", URL, iat=T))
    assert one.jkt != other.jkt


ACCEPTED: list[Any] = [
    pytest.param(claims(iat=T - MAX_AGE), {}, id="iat-exactly-max-age-old"),
    pytest.param(claims(iat=T + SKEW), {}, id="iat-exactly-skew-ahead"),
    pytest.param(claims(iat=T - 0.5), {}, id="iat-fractional"),
    pytest.param(claims(htu=URL + "?page=2#top"), {}, id="htu-query-and-fragment-ignored"),
    pytest.param(claims(), {"url": URL + "?page=2"}, id="request-query-ignored"),
    pytest.param(claims(htu="HTTPS://LocalHost:443/api/v1/me"), {}, id="htu-case-and-port"),
    pytest.param(claims(htu="https://localhost"), {"url": "https://localhost/"}, id="empty-path"),
    pytest.param(
        claims(htu="http://localhost:80/x"), {"url": "http://LOCALHOST/x"}, id="http-port-80"
    ),
    pytest.param(claims(jti="j" * 8), {}, id="jti-8-chars"),
    pytest.param(claims(jti="j" * 256), {}, id="jti-256-chars"),
    pytest.param(
        claims(ath=access_token_hash(TOKEN)), {"access_token": TOKEN}, id="ath-matches-token"
    ),
    pytest.param(claims(htm="POST"), {"method": "POST"}, id="post"),
]


@pytest.mark.parametrize(("payload", "options"), ACCEPTED)
def test_edge_cases_that_are_accepted(keys, payload, options):
    checked = verify(signed(keys.es, payload), **options)
    assert checked.jkt == keys.es.thumbprint
    assert checked.jti == payload["jti"]


def test_a_nonce_is_handed_back_for_its_issuer_to_compare(keys):
    assert verify(signed(keys.es, claims(nonce="server-nonce-1"))).nonce == "server-nonce-1"


def test_the_challenge_offers_exactly_the_algorithms_a_proof_may_use(client, keys):
    """RFC 9449 section 7.1: the algs a client is offered are the ones that verify;
    a sound asymmetric algorithm that is not offered is refused."""
    refused = client.get(
        "/api/v1/me",
        headers={"Authorization": "DPoP not-a-token", "DPoP": keys.es.proof("GET", "/api/v1/me")},
    )
    offered = re.search(r'algs="([^"]+)"', www_authenticate(refused))
    assert offered is not None, www_authenticate(refused)
    algs = set(offered.group(1).split())
    assert "ES256" in algs  # the one every client can be expected to have
    for alg in algs:
        assert verify(signed(keys.by_alg(alg), claims())).jkt == keys.by_alg(alg).thumbprint
    not_offered = [
        DpopKey("ES384", ECKey.generate_key("P-384")),
        DpopKey("RS512", keys.rs.key),
        DpopKey("PS384", keys.ps.key),
    ]
    for key in not_offered:
        assert key.alg not in algs
        with pytest.raises(DpopInvalid, match="alg"):
            verify(signed(key, claims()))


# -- the verifier: what it refuses ----------------------------------------------------

ProofBuilder = Callable[[Keys], str]


def alg_none(k: Keys) -> str:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": public(k.es)}
    return f"{b64json(header)}.{b64json(claims())}."


def hs256(k: Keys) -> str:
    """A correctly computed MAC, under an asymmetric key's header."""
    secret = OctKey.import_key(b"a-shared-secret-of-32-bytes-long")
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": public(k.es)}
    return jws.serialize_compact(header, json.dumps(claims()), secret, algorithms=["HS256"])


def hs256_oct_jwk(k: Keys) -> str:
    secret = OctKey.import_key(b"a-shared-secret-of-32-bytes-long")
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.as_dict(private=False)}
    return jws.serialize_compact(header, json.dumps(claims()), secret, algorithms=["HS256"])


def tampered_payload(k: Keys) -> str:
    head, _, signature = signed(k.es, claims()).split(".")
    return f"{head}.{b64json(claims(jti='a-different-jti'))}.{signature}"


def tampered_signature(k: Keys) -> str:
    head, payload, signature = signed(k.es, claims()).split(".")
    return f"{head}.{payload}.{flip_first_char(signature)}"


def header_alg_swapped(k: Keys) -> str:
    _, payload, signature = signed(k.es, claims()).split(".")
    header = {"typ": "dpop+jwt", "alg": "RS256", "jwk": public(k.es)}
    return f"{b64json(header)}.{payload}.{signature}"


def jwk_not_an_object(k: Keys) -> str:
    _, payload, signature = signed(k.es, claims()).split(".")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": "not-a-key"}
    return f"{b64json(header)}.{payload}.{signature}"


def list_header(k: Keys) -> str:
    return f"{b64json([1])}.{b64json(claims())}.AAAA"


def param(builder: ProofBuilder, options: dict[str, Any] | None = None, *, id: str) -> Any:
    return pytest.param(builder, options or {}, id=id)


REFUSED: list[Any] = [
    # header
    param(lambda k: signed(k.es, claims(), typ="JWT"), id="typ-jwt"),
    param(lambda k: signed(k.es, claims(), typ="at+jwt"), id="typ-access-token"),
    param(lambda k: signed(k.es, claims(), typ=DROP), id="typ-missing"),
    param(alg_none, id="alg-none-unsigned"),
    param(hs256, id="alg-hs256-with-ec-jwk"),
    param(hs256_oct_jwk, id="alg-hs256-with-oct-jwk"),
    param(header_alg_swapped, id="alg-does-not-fit-the-key"),
    param(lambda k: signed(k.es, claims(), jwk=k.es.key.as_dict(private=True)), id="jwk-has-d"),
    param(lambda k: signed(k.rs, claims(), jwk=k.rs.key.as_dict(private=True)), id="rsa-jwk-d"),
    param(lambda k: signed(k.es, claims(), jwk=DROP), id="jwk-missing"),
    param(jwk_not_an_object, id="jwk-not-an-object"),
    param(lambda k: signed(k.es, claims(), jwk={"kty": "EC"}), id="jwk-incomplete"),
    param(lambda k: signed(k.es, claims(), jwk=public(k.es_other)), id="signed-by-another-key"),
    param(lambda k: signed(k.ed, claims(), jwk=public(k.es)), id="jwk-of-another-type"),
    param(tampered_payload, id="payload-tampered"),
    param(tampered_signature, id="signature-tampered"),
    # htm
    param(lambda k: signed(k.es, claims(htm="POST")), id="htm-other-method"),
    param(lambda k: signed(k.es, claims(htm="get")), id="htm-lower-case"),
    param(lambda k: signed(k.es, claims(htm=DROP)), id="htm-missing"),
    param(lambda k: signed(k.es, claims()), {"method": "DELETE"}, id="request-is-delete"),
    # htu
    param(lambda k: signed(k.es, claims(htu="https://evil.example/api/v1/me")), id="htu-host"),
    param(lambda k: signed(k.es, claims(htu="https://localhost/api/v1/me/x")), id="htu-path"),
    param(lambda k: signed(k.es, claims(htu="https://localhost/API/v1/me")), id="htu-path-case"),
    param(lambda k: signed(k.es, claims(htu="http://localhost/api/v1/me")), id="htu-scheme"),
    param(lambda k: signed(k.es, claims(htu="https://localhost:8443/api/v1/me")), id="htu-port"),
    param(lambda k: signed(k.es, claims(htu="/api/v1/me")), id="htu-relative"),
    param(lambda k: signed(k.es, claims(htu=DROP)), id="htu-missing"),
    param(lambda k: signed(k.es, claims(htu=["https://localhost/api/v1/me"])), id="htu-list"),
    param(
        lambda k: signed(k.es, claims(htu="https://localhost:99999/api/v1/me")), id="htu-bad-port"
    ),
    param(lambda k: signed(k.es, claims(htu="https://[::1/api/v1/me")), id="htu-broken-ipv6"),
    # iat
    param(lambda k: signed(k.es, claims(iat=T - MAX_AGE - 1)), id="iat-max-age-plus-1"),
    param(lambda k: signed(k.es, claims(iat=T + SKEW + 1)), id="iat-skew-plus-1"),
    param(lambda k: signed(k.es, claims(iat=0)), id="iat-epoch"),
    param(lambda k: signed(k.es, claims(iat=str(T))), id="iat-string"),
    param(lambda k: signed(k.es, claims(iat=True)), id="iat-bool"),
    param(
        lambda k: signed(k.es, claims(iat=True)),
        {"now": datetime.fromtimestamp(1, UTC)},
        id="iat-bool-when-true-would-be-fresh",
    ),
    param(lambda k: signed(k.es, claims(iat=None)), id="iat-null"),
    param(lambda k: signed(k.es, claims(iat=DROP)), id="iat-missing"),
    param(lambda k: signed(k.es, claims(iat=float("inf"))), id="iat-infinity"),
    param(lambda k: signed(k.es, claims(iat=float("nan"))), id="iat-nan"),
    # jti
    param(lambda k: signed(k.es, claims(jti=DROP)), id="jti-missing"),
    param(lambda k: signed(k.es, claims(jti="1234567")), id="jti-7-chars"),
    param(lambda k: signed(k.es, claims(jti="j" * 257)), id="jti-257-chars"),
    param(lambda k: signed(k.es, claims(jti=123456789)), id="jti-number"),
    # ath, when a token is presented
    param(lambda k: signed(k.es, claims()), {"access_token": TOKEN}, id="ath-missing"),
    param(
        lambda k: signed(k.es, claims(ath=access_token_hash("another-token"))),
        {"access_token": TOKEN},
        id="ath-of-another-token",
    ),
    param(lambda k: signed(k.es, claims(ath=TOKEN)), {"access_token": TOKEN}, id="ath-unhashed"),
    # nonce
    param(lambda k: signed(k.es, claims(nonce=5)), id="nonce-number"),
    # payload and framing
    param(lambda k: signed(k.es, "this is not JSON"), id="payload-not-json"),
    param(lambda k: signed(k.es, "[1, 2]"), id="payload-json-array"),
    param(lambda k: signed(k.es, '{"a":' + "[" * 1000), id="payload-nested-too-deep"),
    param(lambda k: signed(k.es, claims(padding="x" * MAX_PROOF_LENGTH)), id="too-long"),
    param(lambda k: "", id="empty"),
    param(lambda k: "garbage", id="garbage"),
    param(lambda k: "a.b.c", id="three-garbage-segments"),
    param(lambda k: signed(k.es, claims()).rsplit(".", 1)[0], id="two-segments"),
    param(lambda k: signed(k.es, claims()) + ".AAAA", id="four-segments"),
    param(lambda k: "é" + signed(k.es, claims()), id="non-ascii"),
    param(list_header, id="header-is-a-list"),
]


@pytest.mark.parametrize(("build", "options"), REFUSED)
def test_refused(keys, build, options):
    proof = build(keys)
    with pytest.raises(DpopInvalid) as refused:
        verify(proof, **options)
    message = str(refused.value)
    assert message
    if proof:
        assert proof not in message


@pytest.mark.filterwarnings("ignore:Key size should be")
def test_rsa_keys_shorter_than_2048_bits_are_refused():
    """RFC 7518 sections 3.3 and 3.5: RS256 and PS256 keys MUST be 2048 bits or more."""
    weak = DpopKey("RS256", RSAKey.generate_key(1024))
    with pytest.raises(DpopInvalid):
        verify(weak.proof("GET", URL, iat=T))


# -- through the API ------------------------------------------------------------------


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


@dataclass
class Bound:
    """A person with a key-bound session, and the unbound session registration opened."""

    person: Person
    key: DpopKey
    token: str
    session_id: str
    unbound_token: str
    clock: FrozenClock

    def proof(self, method: str, path: str, **kw: Any) -> str:
        kw.setdefault("token", self.token)
        kw.setdefault("iat", self.clock.now().timestamp())
        return self.key.proof(method, path, **kw)

    def headers(self, method: str, path: str, **kw: Any) -> dict[str, str]:
        token = kw.pop("token", self.token)
        proof = self.proof(method, path, token=token, **kw)
        return {"Authorization": f"DPoP {token}", "DPoP": proof}


def password_body(person: Person, delivery: str = "bearer") -> dict[str, str]:
    return {"identifier": person.email, "password": person.password, "token_delivery": delivery}


def now(clock: FrozenClock) -> float:
    return clock.now().timestamp()


def session_ids(client, token: str) -> set[str]:
    listed = client.get(SESSIONS, headers=bearer(token))
    assert listed.status_code == 200, listed.json
    return {s["session_id"] for s in listed.json["sessions"]}


@pytest.fixture
def bound(client, mailbox, sms, clock) -> Bound:
    person, session = register(client, mailbox, sms)
    assert session["token_type"] == "Bearer"
    key = DpopKey("ES256")
    signed_in = client.post(
        LOGIN,
        json=password_body(person),
        headers={"DPoP": key.proof("POST", LOGIN, iat=now(clock))},
    )
    assert signed_in.status_code == 200, signed_in.json
    body = signed_in.json
    return Bound(person, key, body["token"], body["session_id"], session["token"], clock)


def assert_dpop_refusal(response, status: int, *secrets: str) -> dict[str, Any]:
    body = assert_problem(response, status, "invalid-dpop-proof")
    if status == 401:
        challenge = www_authenticate(response)
        assert challenge.startswith("DPoP "), challenge
        assert 'error="invalid_dpop_proof"' in challenge, challenge
        assert "ES256" in challenge, challenge
    assert_not_echoed(response, *secrets)
    return body


def assert_invalid_dpop_token(response, *secrets: str) -> None:
    assert_problem(response, 401)
    challenge = www_authenticate(response)
    assert challenge.startswith("DPoP "), challenge
    assert 'error="invalid_token"' in challenge, challenge
    assert_not_echoed(response, *secrets)


def assert_not_echoed(response, *secrets: str) -> None:
    text = response.get_data(as_text=True) + str(response.headers)
    for secret in secrets:
        assert secret and secret not in text


def test_a_sign_in_with_a_proof_gets_a_dpop_token_that_works_with_proofs(client, bound):
    me = client.get(ME, headers=bound.headers("GET", ME))
    assert me.status_code == 200, me.json
    assert bound.person.email in me.get_data(as_text=True)
    # The scheme name is case-insensitive (RFC 9110 11.1); each request has its own proof.
    lower = {"Authorization": f"dpop {bound.token}", "DPoP": bound.proof("GET", ME)}
    assert client.get(ME, headers=lower).status_code == 200
    # The query string is no part of htu.
    listed = client.get(SESSIONS + "?view=all", headers=bound.headers("GET", SESSIONS))
    assert listed.status_code == 200, listed.json


@pytest.mark.parametrize("alg", ["ES256", "Ed25519", "RS256"])
def test_the_sign_in_response_says_dpop(client, mailbox, sms, clock, alg):
    person, _ = register(client, mailbox, sms)
    key = DpopKey(alg)
    response = client.post(
        LOGIN,
        json=password_body(person),
        headers={"DPoP": key.proof("POST", LOGIN, iat=now(clock))},
    )
    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "DPoP"
    token = response.json["token"]
    me = client.get(ME, headers=key.headers("GET", ME, token, iat=now(clock)))
    assert me.status_code == 200, me.json
    plain = client.post(LOGIN, json=password_body(person))
    assert plain.json["token_type"] == "Bearer"
    cookie = client.post(LOGIN, json=password_body(person, "cookie"))
    assert cookie.json["token_type"] is None


def test_a_bound_token_sent_as_bearer_is_refused(client, bound):
    plain = client.get(ME, headers=bearer(bound.token))
    assert_invalid_dpop_token(plain, bound.token)
    # A proof alongside does not make the Bearer scheme acceptable.
    proof = bound.proof("GET", ME)
    with_proof = client.get(ME, headers={**bearer(bound.token), "DPoP": proof})
    assert_invalid_dpop_token(with_proof, bound.token, proof)


def other_key_proof(b: Bound) -> str:
    return DpopKey("ES256").proof("GET", ME, token=b.token, iat=now(b.clock))


BAD_REQUEST_PROOFS: list[Any] = [
    pytest.param(lambda b: b.proof("POST", ME), id="for-another-method"),
    pytest.param(lambda b: b.proof("GET", SESSIONS), id="for-another-path"),
    pytest.param(lambda b: b.proof("GET", "http://localhost" + ME), id="for-http"),
    pytest.param(lambda b: b.proof("GET", "https://evil.example" + ME), id="for-another-host"),
    pytest.param(lambda b: b.proof("GET", ME, iat=now(b.clock) - MAX_AGE - 1), id="stale"),
    pytest.param(lambda b: b.proof("GET", ME, iat=now(b.clock) + SKEW + 1), id="from-future"),
    pytest.param(other_key_proof, id="signed-by-another-key"),
    pytest.param(lambda b: b.proof("GET", ME, token=b.unbound_token), id="ath-of-another-token"),
    pytest.param(lambda b: b.proof("GET", ME, token=None), id="no-ath"),
    pytest.param(lambda b: b.proof("GET", ME, typ="JWT"), id="wrong-typ"),
    pytest.param(lambda b: "", id="empty-header"),
    pytest.param(lambda b: "not-a-proof", id="garbage"),
]


@pytest.mark.parametrize("make_proof", BAD_REQUEST_PROOFS)
def test_a_bad_proof_with_a_bound_token_is_refused(client, bound, make_proof):
    proof = make_proof(bound)
    headers = {"Authorization": f"DPoP {bound.token}", "DPoP": proof}
    response = client.get(ME, headers=headers)
    assert_dpop_refusal(response, 401, bound.token, *([proof] if proof else []))
    assert client.get(ME, headers=bound.headers("GET", ME)).status_code == 200


def test_a_missing_proof_is_refused(client, bound):
    response = client.get(ME, headers={"Authorization": f"DPoP {bound.token}"})
    assert_dpop_refusal(response, 401, bound.token)


def test_two_proofs_are_refused(client, bound):
    first, second = bound.proof("GET", ME), bound.proof("GET", ME)
    headers = [("Authorization", f"DPoP {bound.token}"), ("DPoP", first), ("DPoP", second)]
    response = client.get(ME, headers=headers)
    assert_dpop_refusal(response, 401, bound.token, first, second)


def test_a_proof_is_good_for_one_request(client, bound):
    headers = bound.headers("GET", ME)
    assert client.get(ME, headers=headers).status_code == 200
    replayed = client.get(ME, headers=headers)
    assert_dpop_refusal(replayed, 401, bound.token, headers["DPoP"])
    # Even once the clock has moved on, within the proof's lifetime.
    bound.clock.advance(seconds=MAX_AGE - 1)
    assert_dpop_refusal(client.get(ME, headers=headers), 401)
    assert client.get(ME, headers=bound.headers("GET", ME)).status_code == 200


def test_the_same_jti_from_another_key_is_its_own_proof(client, bound):
    """The replay cache is per key: another client's jti does not block this one."""
    other_key = DpopKey("ES256")
    jti = "shared-jti-0001"
    signed_in = client.post(
        LOGIN,
        json=password_body(bound.person),
        headers={"DPoP": other_key.proof("POST", LOGIN, iat=now(bound.clock), jti=jti)},
    )
    assert signed_in.status_code == 200, signed_in.json
    assert client.get(ME, headers=bound.headers("GET", ME, jti=jti)).status_code == 200
    # The same key may not use it twice, though.
    assert_dpop_refusal(client.get(ME, headers=bound.headers("GET", ME, jti=jti)), 401)


BAD_LOGOUT_PROOFS: list[Any] = [
    pytest.param(lambda b: b.proof("GET", LOGOUT), id="wrong-method"),
    pytest.param(lambda b: b.proof("POST", ME), id="wrong-path"),
    pytest.param(lambda b: b.proof("POST", LOGOUT, iat=now(b.clock) - MAX_AGE - 1), id="stale"),
    pytest.param(
        lambda b: DpopKey("ES256").proof("POST", LOGOUT, token=b.token, iat=now(b.clock)),
        id="another-key",
    ),
    pytest.param(lambda b: b.proof("POST", LOGOUT, token=b.unbound_token), id="ath-mismatch"),
    pytest.param(None, id="missing"),
]


@pytest.mark.parametrize("make_proof", BAD_LOGOUT_PROOFS)
def test_a_refused_logout_changes_nothing(app, client, runtime, mailbox, sms, bound, make_proof):
    headers = {"Authorization": f"DPoP {bound.token}"}
    if make_proof is not None:
        headers["DPoP"] = make_proof(bound)
    with nothing_changes(app, runtime, mailbox, sms, "a logout with a bad DPoP proof"):
        response = client.post(LOGOUT, headers=headers)
        assert_dpop_refusal(response, 401, bound.token)
    assert client.get(ME, headers=bound.headers("GET", ME)).status_code == 200
    # With a good proof the logout happens, and the token is dead.
    assert client.post(LOGOUT, headers=bound.headers("POST", LOGOUT)).status_code == 204
    after = client.get(ME, headers=bound.headers("GET", ME))
    assert after.status_code == 401
    assert 'error="invalid_token"' in www_authenticate(after)
    assert bound.session_id not in session_ids(client, bound.unbound_token)


def test_a_proof_spent_by_a_failed_request_cannot_be_replayed(
    app, client, runtime, mailbox, sms, bound
):
    headers = bound.headers("POST", STEP_UP)
    wrong = client.post(STEP_UP, json={"password": "not-the-password-1"}, headers=headers)
    assert wrong.status_code == 422, wrong.json  # the password, not the proof
    assert wrong.json["type"].rsplit("/", 1)[-1] != "invalid-dpop-proof", wrong.json
    with nothing_changes(app, runtime, mailbox, sms, "a step-up with a replayed proof"):
        replayed = client.post(STEP_UP, json={"password": bound.person.password}, headers=headers)
        assert_dpop_refusal(replayed, 401, bound.token, bound.person.password)
    # Not rotated: the token still works.
    assert client.get(ME, headers=bound.headers("GET", ME)).status_code == 200


MALFORMED_PROOFS: list[Any] = [
    pytest.param(
        lambda b: signed(
            b.key, claims(iat=float("nan"), htu=BASE + ME, ath=access_token_hash(b.token))
        ),
        id="iat-nan",
    ),
    pytest.param(
        lambda b: signed(
            b.key,
            claims(htu="https://[::1" + ME, iat=now(b.clock), ath=access_token_hash(b.token)),
        ),
        id="htu-broken-ipv6",
    ),
]


@pytest.mark.parametrize("make_proof", MALFORMED_PROOFS)
def test_a_malformed_proof_is_refused_not_a_server_error(client, bound, make_proof):
    proof = make_proof(bound)
    response = client.get(ME, headers={"Authorization": f"DPoP {bound.token}", "DPoP": proof})
    assert_dpop_refusal(response, 401, bound.token, proof)


# -- sign-in ----------------------------------------------------------------------------

BAD_SIGN_IN_PROOFS: list[Any] = [
    pytest.param(lambda k, c: k.proof("GET", LOGIN, iat=now(c)), id="wrong-method"),
    pytest.param(lambda k, c: k.proof("POST", "/api/v1/login/sms", iat=now(c)), id="wrong-path"),
    pytest.param(lambda k, c: k.proof("POST", LOGIN, iat=now(c) - MAX_AGE - 1), id="stale"),
    pytest.param(lambda k, c: k.proof("POST", LOGIN, iat=now(c), typ="JWT"), id="wrong-typ"),
    pytest.param(
        lambda k, c: k.proof("POST", LOGIN, iat=now(c), jwk=public(DpopKey("ES256"))),
        id="another-key",
    ),
    pytest.param(lambda k, c: "", id="empty"),
    pytest.param(lambda k, c: "garbage", id="garbage"),
]


@pytest.mark.parametrize("make_proof", BAD_SIGN_IN_PROOFS)
def test_a_sign_in_with_a_bad_proof_opens_no_session(
    app, client, runtime, mailbox, sms, clock, make_proof
):
    person, session = register(client, mailbox, sms)
    before = session_ids(client, session["token"])
    proof = make_proof(DpopKey("ES256"), clock)
    with nothing_changes(app, runtime, mailbox, sms, "a sign-in with a bad DPoP proof"):
        response = client.post(LOGIN, json=password_body(person), headers={"DPoP": proof})
        assert_dpop_refusal(response, 400, person.password, *([proof] if proof else []))
    assert "token" not in (response.get_json() or {})
    assert session_ids(client, session["token"]) == before


def test_a_sign_in_with_two_proofs_is_refused(app, client, runtime, mailbox, sms, clock):
    person, _ = register(client, mailbox, sms)
    key = DpopKey("ES256")
    first, second = (
        key.proof("POST", LOGIN, iat=now(clock)),
        key.proof("POST", LOGIN, iat=now(clock)),
    )
    with nothing_changes(app, runtime, mailbox, sms, "a sign-in with two proofs"):
        response = client.post(
            LOGIN, json=password_body(person), headers=[("DPoP", first), ("DPoP", second)]
        )
        assert_dpop_refusal(response, 400, first, second)


def test_a_cookie_sign_in_with_a_proof_is_refused(app, client, runtime, mailbox, sms, clock):
    person, _ = register(client, mailbox, sms)
    proof = DpopKey("ES256").proof("POST", LOGIN, iat=now(clock))
    with nothing_changes(app, runtime, mailbox, sms, "a cookie sign-in with DPoP"):
        response = client.post(LOGIN, json=password_body(person, "cookie"), headers={"DPoP": proof})
        assert_dpop_refusal(response, 400, proof)
    assert "Set-Cookie" not in response.headers


def test_a_sign_in_proof_is_good_for_one_sign_in(app, client, runtime, mailbox, sms, clock):
    person, session = register(client, mailbox, sms)
    proof = DpopKey("ES256").proof("POST", LOGIN, iat=now(clock))
    first = client.post(LOGIN, json=password_body(person), headers={"DPoP": proof})
    assert first.status_code == 200, first.json
    after_first = session_ids(client, session["token"])
    with nothing_changes(app, runtime, mailbox, sms, "a replayed sign-in proof"):
        again = client.post(LOGIN, json=password_body(person), headers={"DPoP": proof})
        assert_dpop_refusal(again, 400, proof, person.password)
    assert session_ids(client, session["token"]) == after_first


# -- unbound tokens, step-up, the sessions list -------------------------------------------


def test_an_unbound_token_with_the_dpop_scheme_is_refused(client, mailbox, sms, clock):
    _, session = register(client, mailbox, sms)
    token = session["token"]
    key = DpopKey("ES256")
    headers = key.headers("GET", ME, token, iat=now(clock))
    assert_invalid_dpop_token(client.get(ME, headers=headers), token, headers["DPoP"])
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_step_up_keeps_the_session_bound(client, bound):
    old = bound.token
    assert_invalid_dpop_token(
        client.post(STEP_UP, json={"password": bound.person.password}, headers=bearer(old)), old
    )
    raised = client.post(
        STEP_UP, json={"password": bound.person.password}, headers=bound.headers("POST", STEP_UP)
    )
    assert raised.status_code == 200, raised.json
    assert raised.json["token_type"] == "DPoP"
    new = raised.json["token"]
    assert new and new != old
    assert raised.json["session_id"] == bound.session_id
    # The new token is bound too: Bearer is refused, a proof is needed ...
    assert_invalid_dpop_token(client.get(ME, headers=bearer(new)), new)
    assert client.get(ME, headers=bound.headers("GET", ME, token=new)).status_code == 200
    # ... with the new token's hash in it.
    stale_ath = {"Authorization": f"DPoP {new}", "DPoP": bound.proof("GET", ME, token=old)}
    assert_dpop_refusal(client.get(ME, headers=stale_ath), 401, new, old)
    # The old token is dead, with or without a proof.
    assert client.get(ME, headers=bound.headers("GET", ME, token=old)).status_code == 401
    assert client.get(ME, headers=bearer(old)).status_code == 401


def test_a_step_up_with_another_keys_proof_is_refused(app, client, runtime, mailbox, sms, bound):
    proof = DpopKey("ES256").proof("POST", STEP_UP, token=bound.token, iat=now(bound.clock))
    headers = {"Authorization": f"DPoP {bound.token}", "DPoP": proof}
    with nothing_changes(app, runtime, mailbox, sms, "a step-up with another key's proof"):
        response = client.post(STEP_UP, json={"password": bound.person.password}, headers=headers)
        assert_dpop_refusal(response, 401, bound.token, bound.person.password)
    assert client.get(ME, headers=bound.headers("GET", ME)).status_code == 200


def test_the_sessions_list_shows_which_sessions_are_key_bound(client, bound):
    listed = client.get(SESSIONS, headers=bound.headers("GET", SESSIONS))
    assert listed.status_code == 200, listed.json
    by_id = {s["session_id"]: s for s in listed.json["sessions"]}
    assert by_id[bound.session_id]["key_bound"] is True
    assert by_id[bound.session_id]["current"] is True
    others = [s for s in listed.json["sessions"] if s["session_id"] != bound.session_id]
    assert others and all(s["key_bound"] is False for s in others)
    # The same from the unbound session's point of view.
    seen = client.get(SESSIONS, headers=bearer(bound.unbound_token)).json["sessions"]
    assert {s["session_id"]: s["key_bound"] for s in seen}[bound.session_id] is True


def test_openapi_declares_the_dpop_scheme(client):
    document = client.get("/openapi.json").get_json()
    scheme = document["components"]["securitySchemes"]["dpop"]
    assert scheme["type"] == "http"
    assert scheme["scheme"].lower() == "dpop"
    assert {"dpop": []} in document["paths"][ME]["get"]["security"]
    assert {"dpop": []} in document["paths"][LOGOUT]["post"]["security"]


def test_the_servers_clock_decides_how_old_a_proof_is(client, bound):
    made_now = [bound.headers("GET", ME) for _ in range(2)]
    bound.clock.advance(seconds=MAX_AGE)
    assert client.get(ME, headers=made_now[0]).status_code == 200
    bound.clock.advance(seconds=1)
    assert_dpop_refusal(client.get(ME, headers=made_now[1]), 401, bound.token)
    assert client.get(ME, headers=bound.headers("GET", ME)).status_code == 200
