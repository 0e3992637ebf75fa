"""The OpenID provider's signing keys: made on first use, published at the one
JWKS address beside the receipt key, verifiable by kid the way a relying party
verifies, rotated by an operator command with the old key kept published for
as long as the tokens it signed live, and never stored in clear."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import event, select

from app.cli import unit_of_work
from app.oidc.key_models import SigningKey
from app.oidc.keys import RotationRaced, SigningKeys
from app.security.envelope import DecryptionError, FieldCipher, WrappedKey
from app.security.signing import SignatureInvalid
from app.settings import Settings, SettingsError
from tests.conftest import PG_URL
from tests.helpers import database_text, race

RECEIPT_KID = "dev-signing-1"  # the receipt key of the test settings
# PRIVID_OIDC_KEY_CACHE_SECONDS by default: a rotated-in key signs this long after.
TAKES_OVER = 60


@pytest.fixture
def clock(frozen_clock):
    return frozen_clock


def published(client) -> dict[str, dict[str, Any]]:
    """The JWKS as a relying party fetches it, by kid."""
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return {key["kid"]: key for key in response.json["keys"]}


def rp_verify(client, token: str, alg: str = "RS256") -> dict[str, Any]:
    """What a relying party does: fetch the JWKS, pick the key by the token's kid."""
    keys = KeySet.import_key_set({"keys": list(published(client).values())})
    found = jws.deserialize_compact(token, keys, algorithms=[alg])
    return json.loads(found.payload)


def header_of(token: str) -> dict[str, Any]:
    encoded = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(app, claims: dict[str, Any], alg: str = "RS256") -> str:
    with app.app_context(), unit_of_work() as svc:
        return SigningKeys.of(svc).sign(claims, alg)  # type: ignore[arg-type]


def verify(app, token: str) -> dict[str, Any]:
    with app.app_context(), unit_of_work() as svc:
        return SigningKeys.of(svc).verify(token)


def rotate(app) -> str:
    result = app.test_cli_runner().invoke(args=["oidc-keys", "rotate", "--alg", "RS256"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def stored_keys(app) -> dict[str, SigningKey]:
    with app.extensions["privid.session_factory"]() as db:
        return {row.kid: row for row in db.scalars(select(SigningKey))}


# -- first use and the JWKS --------------------------------------------------------


def test_the_first_token_makes_a_key_that_the_jwks_publishes_by_its_thumbprint(app, client):
    assert set(published(client)) == {RECEIPT_KID}  # nothing signed, nothing published

    token = sign(app, {"sub": "alice", "aud": "partner"})

    keys = published(client)
    (kid,) = set(keys) - {RECEIPT_KID}
    key = keys[kid]
    assert header_of(token) == {"alg": "RS256", "kid": kid, "typ": "JWT"}
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert kid == thumbprint(key)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()  # never the private part
    assert len(base64.urlsafe_b64decode(key["n"] + "==")) * 8 >= 2048
    assert rp_verify(client, token) == {"sub": "alice", "aud": "partner"}
    assert verify(app, token) == {"sub": "alice", "aud": "partner"}

    # Later tokens use the same key: no key per token.
    assert header_of(sign(app, {"sub": "bob"}))["kid"] == kid
    assert set(published(client)) == {RECEIPT_KID, kid}


def test_es256_has_a_key_of_its_own_beside_rs256(app, client):
    rs = sign(app, {"sub": "alice"})
    es = sign(app, {"sub": "alice"}, alg="ES256")

    keys = published(client)
    es_kid = header_of(es)["kid"]
    assert header_of(es)["alg"] == "ES256" and es_kid != header_of(rs)["kid"]
    assert keys[es_kid]["kty"] == "EC" and keys[es_kid]["crv"] == "P-256"
    assert keys[es_kid]["alg"] == "ES256" and "d" not in keys[es_kid]
    assert es_kid == thumbprint(keys[es_kid])
    assert rp_verify(client, es, alg="ES256") == {"sub": "alice"}
    assert verify(app, es) == {"sub": "alice"}
    assert set(keys) == {RECEIPT_KID, header_of(rs)["kid"], es_kid}


def test_workers_making_the_first_key_at_once_end_up_with_one(app, client):
    def first_use(index: int, own) -> str:
        with own.application.app_context(), unit_of_work() as svc:
            return SigningKeys.of(svc).active("ES256").kid

    kids = race(app, 4, first_use)
    assert len(set(kids)) == 1 and None not in kids
    assert set(published(client)) == {RECEIPT_KID, kids[0]}


@pytest.mark.skipif(not PG_URL, reason="SQLite's write lock lets no other worker in between")
def test_losing_the_race_for_the_first_key_does_not_keep_a_copy_without_it(
    app, client, monkeypatch
):
    """The interleaving the race above can hit, forced: this process reads the
    keys (none yet), another worker makes and commits the first ES256 key,
    then this one's insert collides. Its copy read before the key existed
    must go, or its JWKS lacks the key that signs until the copy expires."""
    made_elsewhere: list[str] = []
    make_row = SigningKeys._new_row
    entered: list[bool] = []

    def another_worker_first(self: SigningKeys, alg: Any, **kwargs: Any) -> SigningKey:
        if not entered:
            entered.append(True)
            with unit_of_work() as svc:  # its own process: a cache of its own
                rt = svc.runtime
                elsewhere = SigningKeys(svc.db, rt.clock, rt.key_ring, timedelta(hours=1),
                                        svc.audit, timedelta(seconds=60), {})  # fmt: skip
                made_elsewhere.append(elsewhere.active("ES256").kid)
        return make_row(self, alg, **kwargs)

    monkeypatch.setattr(SigningKeys, "_new_row", another_worker_first)
    with app.app_context(), unit_of_work() as svc:
        kid = SigningKeys.of(svc).active("ES256").kid
    assert made_elsewhere == [kid]
    assert kid in published(client)


# -- verification refuses what no published key signed ----------------------------------


def test_tampered_and_foreign_tokens_are_refused(app, client):
    token = sign(app, {"sub": "alice", "acr": "1"})
    head, _, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"mallory","acr":"1"}').rstrip(b"=").decode()
    # Keys made elsewhere: one claiming our kid, one naming a kid we never had.
    stranger = RSAKey.generate_key(2048)
    kid = header_of(token)["kid"]
    impostor = jws.serialize_compact({"alg": "RS256", "kid": kid}, b'{"sub":"alice"}', stranger)
    unknown = jws.serialize_compact({"alg": "RS256", "kid": "x"}, b'{"sub":"alice"}', stranger)

    for bad in (f"{head}.{forged}.{signature}", impostor, unknown, "not-a-token", token[:-4]):
        with pytest.raises(SignatureInvalid):
            verify(app, bad)
    assert verify(app, token) == {"sub": "alice", "acr": "1"}


# -- rotation -------------------------------------------------------------------------


def test_rotation_announces_the_new_key_before_it_signs_and_keeps_the_old_one_published(
    app, client, frozen_clock
):
    old_token = sign(app, {"sub": "alice"})
    old_kid = header_of(old_token)["kid"]

    new_kid = rotate(app)

    # Published at once, signing only once every worker's copy has it.
    assert new_kid != old_kid
    assert set(published(client)) == {RECEIPT_KID, old_kid, new_kid}
    frozen_clock.advance(seconds=TAKES_OVER - 1)
    assert header_of(sign(app, {"sub": "bob"}))["kid"] == old_kid
    assert stored_keys(app)[old_kid].private_key_sealed is not None

    frozen_clock.advance(seconds=1)
    assert header_of(sign(app, {"sub": "bob"}))["kid"] == new_kid
    # The retired key signs nothing more: its private part is gone.
    retired = stored_keys(app)[old_kid]
    assert retired.private_key_sealed is None and retired.wrapped_key is None
    assert set(published(client)) == {RECEIPT_KID, old_kid, new_kid}

    # The ID token lives 3600 s by default, the longest of the token lifetimes,
    # counted from the last moment the old key signed.
    frozen_clock.advance(seconds=3599)
    assert old_kid in published(client)
    assert rp_verify(client, old_token) == verify(app, old_token) == {"sub": "alice"}

    frozen_clock.advance(seconds=1)
    assert set(published(client)) == {RECEIPT_KID, new_kid}
    with pytest.raises(SignatureInvalid):
        verify(app, old_token)


def test_a_rotation_at_once_signs_with_the_new_key_now_and_erases_the_old_one(
    app, client, frozen_clock
):
    old_kid = header_of(sign(app, {"sub": "alice"}))["kid"]

    result = app.test_cli_runner().invoke(args=["oidc-keys", "rotate", "--at-once"])

    assert result.exit_code == 0, result.output
    new_kid = result.output.strip()
    assert header_of(sign(app, {"sub": "bob"}))["kid"] == new_kid
    assert stored_keys(app)[old_kid].private_key_sealed is None
    assert set(published(client)) == {RECEIPT_KID, old_kid, new_kid}
    # Another worker may sign with the old key until its copy expires: the
    # old key stays published that much longer than its tokens live.
    frozen_clock.advance(seconds=TAKES_OVER + 3599)
    assert old_kid in published(client)
    frozen_clock.advance(seconds=1)
    assert old_kid not in published(client)


def test_the_first_rotation_signs_at_once_as_there_is_nothing_to_hand_over_from(app):
    first = rotate(app)
    assert header_of(sign(app, {"sub": "alice"}))["kid"] == first


@pytest.mark.parametrize(
    ("settings_overrides", "window"),
    [
        ({"oidc_access_token_lifetime_seconds": 7200}, 7200),
        ({"oidc_max_token_lifetime_seconds": 86400}, 86400),
    ],
)
def test_the_publication_window_follows_the_longest_token_lifetime(
    app, client, frozen_clock, window
):
    old_kid = header_of(sign(app, {"sub": "alice"}))["kid"]
    rotate(app)
    frozen_clock.advance(seconds=TAKES_OVER + window - 1)
    assert old_kid in published(client)
    frozen_clock.advance(seconds=1)
    assert old_kid not in published(client)


def test_a_window_shorter_than_a_token_lifetime_is_refused_at_start():
    with pytest.raises(SettingsError, match="PRIVID_OIDC_MAX_TOKEN_LIFETIME_SECONDS"):
        Settings(oidc_max_token_lifetime_seconds=600).check()  # ID tokens live 3600 s


def test_the_cli_rotates_and_prints_only_the_new_kid(app, client, frozen_clock):
    first = rotate(app)
    second = rotate(app)

    assert first != second
    assert first == thumbprint(published(client)[first])
    assert second == thumbprint(published(client)[second])
    assert header_of(sign(app, {"sub": "alice"}))["kid"] == first
    frozen_clock.advance(seconds=TAKES_OVER)
    assert header_of(sign(app, {"sub": "alice"}))["kid"] == second
    assert set(published(client)) == {RECEIPT_KID, first, second}

    refused = app.test_cli_runner().invoke(args=["oidc-keys", "rotate", "--alg", "HS256"])
    assert refused.exit_code == 2
    assert set(published(client)) == {RECEIPT_KID, first, second}


# -- at rest ----------------------------------------------------------------------------


def test_private_keys_are_stored_only_sealed(app):
    sign(app, {"sub": "alice"})
    sign(app, {"sub": "alice"}, alg="ES256")
    dump = database_text(app)
    rt = app.extensions["privid.runtime"]

    rows = stored_keys(app).values()
    assert {row.alg for row in rows} == {"RS256", "ES256"}
    for row in rows:
        # Opened with the service's key ring, under the label bound to the kid.
        owner = f"oidc-signing-key:{row.kid}"
        data_key = rt.key_ring.unwrap(WrappedKey(row.kek_id, row.wrapped_key), owner)
        pem = FieldCipher(data_key, owner).decrypt("oidc_private_key", row.private_key_sealed)
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        numbers = private.private_numbers()
        secret = numbers.d if row.alg == "RS256" else numbers.private_value
        d = base64.urlsafe_b64encode(secret.to_bytes((secret.bit_length() + 7) // 8, "big"))
        body = "".join(pem.strip().splitlines()[1:-1])
        for clear in (body, body[:64], d.rstrip(b"=").decode(), der.decode("latin-1")):
            assert clear not in dump
        # The key sealed in one row does not open under another kid.
        with pytest.raises(DecryptionError):
            rt.key_ring.unwrap(WrappedKey(row.kek_id, row.wrapped_key), "oidc-signing-key:x")


def test_rotations_racing_leave_one_active_key(app, client):
    first = rotate(app)

    # The service, not the CLI: click's runner swaps sys.stdout, one thread at a time.
    def rotation(index: int, own) -> str:
        try:
            with own.application.app_context(), unit_of_work() as svc:
                return SigningKeys.of(svc).rotate("RS256").new.kid
        except RotationRaced:
            return "raced"

    results = race(app, 3, rotation)
    made = [kid for kid in results if kid not in ("raced", None)]
    assert made and None not in results, results
    active = [row.kid for row in stored_keys(app).values() if row.retired_at is None]
    assert len(active) == 1 and active[0] in made
    assert set(published(client)) == {RECEIPT_KID, first, *made}


# -- each worker's copy ------------------------------------------------------------------


def key_reads(app) -> list[str]:
    """The statements that read the signing keys table, as they run."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "signing_keys" in statement:
            seen.append(statement)

    event.listen(app.extensions["privid.engine"], "before_cursor_execute", note)
    return seen


def test_a_worker_reads_the_keys_once_per_cache_period(app, client, frozen_clock):
    first = header_of(sign(app, {"sub": "alice"}))["kid"]
    reads = key_reads(app)

    for _ in range(5):
        assert first in published(client)
        assert header_of(sign(app, {"sub": "alice"}))["kid"] == first
    assert len(reads) <= 1

    frozen_clock.advance(seconds=TAKES_OVER)
    assert first in published(client)
    assert len(reads) == 2


def test_a_worker_that_meets_a_kid_it_has_not_seen_looks_again(app):
    """Two workers, each with its own copy: a key the other one made since
    this one last looked is found, not refused."""
    with app.app_context(), unit_of_work() as svc:
        rt = svc.runtime
        settings = rt.settings
        this_worker = SigningKeys(
            svc.db,
            rt.clock,
            rt.key_ring,
            timedelta(seconds=settings.oidc_key_publish_seconds),
            svc.audit,
            timedelta(seconds=TAKES_OVER),
            {},
        )
        assert this_worker.jwks() == []
    token = sign(app, {"sub": "alice"})  # the other worker makes the first key

    with app.app_context(), unit_of_work() as svc:
        this_worker._db = svc.db  # the next request's session
        assert this_worker.verify(token) == {"sub": "alice"}
        assert [key["kid"] for key in this_worker.jwks()] == [header_of(token)["kid"]]
