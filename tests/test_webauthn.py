"""Passkeys (WebAuthn): enrolment, username-less sign-in, biometric step-up,
and every way a ceremony must fail, driven by a software authenticator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect, text

from app.clock import FrozenClock
from app.models import WebAuthnChallenge, WebAuthnCredential
from tests.helpers import (
    PASSKEY_AUTH_OPTIONS,
    PASSKEY_AUTH_VERIFY,
    PASSKEY_REG_OPTIONS,
    PASSKEY_REG_VERIFY,
    assert_problem,
    baseline_consent,
    bearer,
    enrol,
    nothing_changes,
    passkey_sign_in,
    register,
    registration,
)
from tests.soft_authenticator import SoftAuthenticator, b64url

START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
STEP_OPTIONS = "/api/v1/me/step-up/webauthn/options"
STEP_VERIFY = "/api/v1/me/step-up/webauthn/verify"
PHISHING_RESISTANT = "urn:privid:acr:phishing-resistant"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


def count(app, table: str, where: str = "1=1") -> int:
    with app.extensions["privid.engine"].connect() as connection:
        return int(
            connection.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {where}")).scalar_one()
        )


def enrolled_user(client, mailbox, sms) -> dict[str, Any]:
    _, session = register(
        client, mailbox, sms, consent=baseline_consent(device_biometrics="granted")
    )
    return session


def step_up(client, token: str, authenticator: SoftAuthenticator, **get: Any):
    options = client.post(STEP_OPTIONS, headers=bearer(token))
    assert options.status_code == 200, options.json
    answer = authenticator.get(options.json, **get)
    body = {**answer, "challenge_id": options.json["challenge_id"]}
    return client.post(STEP_VERIFY, json=body, headers=bearer(token)), body


# -- the happy paths ---------------------------------------------------------------


@pytest.mark.parametrize("attestation", ["none", "packed"])
@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_enrol_then_sign_in_without_a_username(app, client, mailbox, sms, alg, attestation):
    session = enrolled_user(client, mailbox, sms)
    authenticator = SoftAuthenticator(alg=alg, attestation=attestation)
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"])).json
    # The shape parseCreationOptionsFromJSON takes, plus our challenge id.
    assert {"rp", "user", "challenge", "pubKeyCredParams", "challenge_id"} <= set(options)
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert "@" not in options["user"]["name"] or "***" in options["user"]["name"]

    created = enrol(client, session["token"], authenticator)
    assert created["kind"] == "bound to this device"
    assert created["user_verified_at_registration"] is True

    signed_in, _ = passkey_sign_in(client, authenticator)
    assert signed_in.status_code == 200, signed_in.json
    assert signed_in.json["acr"] == PHISHING_RESISTANT
    assert signed_in.json["amr"] == ["hwk", "user", "pop"]
    me = client.get("/api/v1/me", headers=bearer(signed_in.json["token"]))
    assert me.status_code == 200
    with app.extensions["privid.engine"].connect() as connection:
        row = connection.execute(
            text("SELECT sign_count, last_used_at, attestation_format FROM webauthn_credentials")
        ).one()
    assert row.sign_count == 2 and row.last_used_at is not None
    assert row.attestation_format == attestation


def test_request_options_are_username_less(client):
    options = client.post(PASSKEY_AUTH_OPTIONS).json
    assert options["allowCredentials"] == []
    assert options["rpId"] == "localhost" and options["challenge_id"]


def test_a_synced_passkey_without_uv_is_one_factor_and_software(client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    authenticator = SoftAuthenticator(backup_eligible=True, backed_up=True, user_verifying=False)
    created = enrol(client, session["token"], authenticator)
    assert created["kind"] == "synced passkey" and created["backed_up"] is True
    signed_in, _ = passkey_sign_in(client, authenticator)
    assert signed_in.status_code == 200, signed_in.json
    # Possession only: one factor.
    assert signed_in.json["acr"] == "urn:privid:acr:single-factor"
    assert signed_in.json["amr"] == ["swk", "pop"]


def test_an_authenticator_without_a_counter_is_fine(client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    authenticator = SoftAuthenticator(counter_step=0)
    enrol(client, session["token"], authenticator)
    for _ in range(2):
        assert passkey_sign_in(client, authenticator)[0].status_code == 200


# -- consent -----------------------------------------------------------------------


def test_enrolment_needs_the_device_biometrics_purpose(app, client, mailbox, sms):
    _, session = register(client, mailbox, sms)  # device_biometrics refused
    response = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"]))
    assert_problem(response, 403, "purpose-not-granted")
    assert count(app, "webauthn_challenges") == 0


def test_withdrawing_device_biometrics_removes_the_passkeys(app, client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    withdrawn = client.post(
        "/api/v1/me/consent/device_biometrics/withdraw", headers=bearer(session["token"])
    )
    assert withdrawn.status_code == 200, withdrawn.json
    assert count(app, "webauthn_credentials") == 0
    assert_problem(passkey_sign_in(client, authenticator)[0], 401, "invalid-credentials")


# -- registration failures ---------------------------------------------------------


def assert_nothing_registered(app, response, status: int, slug: str) -> None:
    assert_problem(response, status, slug)
    assert count(app, "webauthn_credentials") == 0


@pytest.mark.parametrize(
    ("create", "slug"),
    [
        ({"origin": "https://evil.example"}, "webauthn-registration-refused"),
        ({"rp_id": "evil.example"}, "webauthn-registration-refused"),
        ({"attestation_object": b"\xbf\x63fmt\xff\x00garbage"}, "webauthn-registration-refused"),
        ({"challenge": b64url(b"a challenge we never issued")}, "webauthn-registration-refused"),
    ],
    ids=["wrong-origin", "wrong-rp-id", "malformed-cbor", "foreign-challenge"],
)
def test_registration_refusals_store_nothing(app, client, mailbox, sms, create, slug):
    session = enrolled_user(client, mailbox, sms)
    response, body = registration(client, session["token"], SoftAuthenticator(), **create)
    assert_nothing_registered(app, response, 400, slug)
    # The challenge was spent by the attempt: a second try is refused too.
    again = client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(session["token"]))
    assert_nothing_registered(app, again, 400, "webauthn-challenge-invalid")


def test_a_registration_challenge_is_single_use(app, client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    response, body = registration(client, session["token"], SoftAuthenticator())
    assert response.status_code == 201
    replay = client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(session["token"]))
    assert_problem(replay, 400, "webauthn-challenge-invalid")
    assert count(app, "webauthn_credentials") == 1


def test_an_expired_registration_challenge_is_refused(app, client, mailbox, sms, clock):
    session = enrolled_user(client, mailbox, sms)
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"])).json
    answer = SoftAuthenticator().create(options)
    clock.advance(seconds=301)
    response = client.post(
        PASSKEY_REG_VERIFY,
        json={**answer, "challenge_id": options["challenge_id"]},
        headers=bearer(session["token"]),
    )
    assert_nothing_registered(app, response, 400, "webauthn-challenge-invalid")


def test_a_challenge_issued_to_another_user_is_refused(app, client, mailbox, sms):
    alice = enrolled_user(client, mailbox, sms)
    bob = enrolled_user(client, mailbox, sms)
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(alice["token"])).json
    answer = SoftAuthenticator().create(options)
    stolen = client.post(
        PASSKEY_REG_VERIFY,
        json={**answer, "challenge_id": options["challenge_id"]},
        headers=bearer(bob["token"]),
    )
    assert_nothing_registered(app, stolen, 400, "webauthn-challenge-invalid")
    # Not spent by Bob's try: Alice can still finish.
    mine = client.post(
        PASSKEY_REG_VERIFY,
        json={**answer, "challenge_id": options["challenge_id"]},
        headers=bearer(alice["token"]),
    )
    assert mine.status_code == 201, mine.json


def test_a_sign_in_challenge_cannot_register(app, client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    sign_in_options = client.post(PASSKEY_AUTH_OPTIONS).json
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"])).json
    answer = SoftAuthenticator().create(options)
    response = client.post(
        PASSKEY_REG_VERIFY,
        json={**answer, "challenge_id": sign_in_options["challenge_id"]},
        headers=bearer(session["token"]),
    )
    assert_nothing_registered(app, response, 400, "webauthn-challenge-invalid")


def test_malformed_base64url_changes_nothing(app, runtime, client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"])).json
    answer = SoftAuthenticator().create(options)
    for field, value in (("rawId", "not+base64/url="), ("id", "a b")):
        body = {**answer, field: value, "challenge_id": options["challenge_id"]}
        with nothing_changes(app, runtime, mailbox, sms, field):
            response = client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(session["token"]))
            problem = assert_problem(response, 422, "validation-error")
        assert {e["pointer"] for e in problem["errors"]} == {f"#/{field}"}
    inner = {**answer["response"], "attestationObject": "o2NmbXRk!!"}
    body = {**answer, "response": inner, "challenge_id": options["challenge_id"]}
    with nothing_changes(app, runtime, mailbox, sms, "attestationObject"):
        response = client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(session["token"]))
        assert_problem(response, 422, "validation-error")


@pytest.mark.parametrize(
    "extra",
    [
        {"fingerprint": "AAAA"},
        {"face_image": "data:image/png;base64,AAAA"},
        {"biometric_template": "AAAA"},
        {"image": "AAAA"},
    ],
)
def test_biometric_fields_are_refused(app, runtime, client, mailbox, sms, extra):
    session = enrolled_user(client, mailbox, sms)
    options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"])).json
    answer = SoftAuthenticator().create(options)
    name = next(iter(extra))
    for body, pointer in (
        ({**answer, **extra}, f"#/{name}"),
        ({**answer, "response": {**answer["response"], **extra}}, f"#/response/{name}"),
        (
            {**answer, "clientExtensionResults": extra},
            f"#/clientExtensionResults/{name}",
        ),
    ):
        body["challenge_id"] = options["challenge_id"]
        with nothing_changes(app, runtime, mailbox, sms, pointer):
            response = client.post(PASSKEY_REG_VERIFY, json=body, headers=bearer(session["token"]))
            problem = assert_problem(response, 422, "validation-error")
        assert {e["pointer"] for e in problem["errors"]} == {pointer}


# -- sign-in failures --------------------------------------------------------------


@pytest.fixture
def enrolled(client, mailbox, sms) -> tuple[dict[str, Any], SoftAuthenticator]:
    session = enrolled_user(client, mailbox, sms)
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    return session, authenticator


def sessions_count(app) -> int:
    return count(app, "sessions")


@pytest.mark.parametrize(
    "get",
    [{"origin": "https://evil.example"}, {"rp_id": "evil.example"}],
    ids=["wrong-origin", "wrong-rp-id"],
)
def test_sign_in_refusals_open_no_session(app, client, enrolled, get):
    _, authenticator = enrolled
    before = sessions_count(app)
    response, _ = passkey_sign_in(client, authenticator, **get)
    assert_problem(response, 401, "invalid-credentials")
    assert sessions_count(app) == before


def test_a_sign_in_challenge_is_single_use(app, client, enrolled):
    _, authenticator = enrolled
    response, body = passkey_sign_in(client, authenticator)
    assert response.status_code == 200
    before = sessions_count(app)
    assert_problem(client.post(PASSKEY_AUTH_VERIFY, json=body), 400, "webauthn-challenge-invalid")
    assert sessions_count(app) == before


def test_an_expired_sign_in_challenge_is_refused(app, client, enrolled, clock):
    _, authenticator = enrolled
    options = client.post(PASSKEY_AUTH_OPTIONS).json
    answer = authenticator.get(options)
    clock.advance(seconds=301)
    before = sessions_count(app)
    response = client.post(
        PASSKEY_AUTH_VERIFY, json={**answer, "challenge_id": options["challenge_id"]}
    )
    assert_problem(response, 400, "webauthn-challenge-invalid")
    assert sessions_count(app) == before


def test_an_unknown_credential_is_refused(app, client, enrolled):
    stranger = SoftAuthenticator()
    # A passkey made for this site but never registered here.
    stranger.create(
        {
            "rp": {"id": "localhost"},
            "user": {"id": "AAAA"},
            "challenge": "AAAA",
            "authenticatorSelection": {"residentKey": "required"},
        }
    )
    before = sessions_count(app)
    response, _ = passkey_sign_in(client, stranger)
    assert_problem(response, 401, "invalid-credentials")
    assert sessions_count(app) == before
    # The failure is on the audit trail, with its reason.
    failed = count(app, "audit_events", "event_type = 'login.failed'")
    assert failed == 1


def test_a_removed_credential_is_refused(app, client, enrolled):
    session, authenticator = enrolled
    listed = client.get("/api/v1/me/credentials", headers=bearer(session["token"])).json
    [credential] = listed["credentials"]
    removed = client.delete(
        f"/api/v1/me/credentials/{credential['id']}", headers=bearer(session["token"])
    )
    assert removed.status_code == 204
    before = sessions_count(app)
    response, _ = passkey_sign_in(client, authenticator)
    assert_problem(response, 401, "invalid-credentials")
    assert sessions_count(app) == before


def test_malformed_authenticator_data_is_refused(app, client, enrolled):
    _, authenticator = enrolled
    options = client.post(PASSKEY_AUTH_OPTIONS).json
    answer = authenticator.get(options)
    answer["response"]["authenticatorData"] = b64url(b"\xa1short")
    before = sessions_count(app)
    response = client.post(
        PASSKEY_AUTH_VERIFY, json={**answer, "challenge_id": options["challenge_id"]}
    )
    assert_problem(response, 401, "invalid-credentials")
    assert sessions_count(app) == before


def test_a_sign_count_going_backwards_flags_the_passkey(app, client, enrolled, runtime):
    _, authenticator = enrolled
    assert passkey_sign_in(client, authenticator)[0].status_code == 200  # count 2
    before = sessions_count(app)
    cloned, _ = passkey_sign_in(client, authenticator, sign_count=2)
    assert_problem(cloned, 401, "passkey-possibly-cloned")
    assert sessions_count(app) == before
    assert count(app, "webauthn_credentials", "flagged_cloned_at IS NOT NULL") == 1
    assert count(app, "audit_events", "event_type = 'webauthn.clone_suspected'") == 1
    # Blocked from now on, even with a counter that moves forward again.
    later, _ = passkey_sign_in(client, authenticator, sign_count=100)
    assert_problem(later, 401, "invalid-credentials")
    assert sessions_count(app) == before


# -- step-up -------------------------------------------------------------------------


def test_step_up_with_uv_raises_the_session_and_rotates_the_token(app, client, mailbox, sms):
    _, session = register(
        client, mailbox, sms, consent=baseline_consent(device_biometrics="granted")
    )
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    options = client.post(STEP_OPTIONS, headers=bearer(session["token"])).json
    assert options["userVerification"] == "required"
    assert len(options["allowCredentials"]) == 1
    answer = authenticator.get(options)
    raised = client.post(
        STEP_VERIFY,
        json={**answer, "challenge_id": options["challenge_id"]},
        headers=bearer(session["token"]),
    )
    assert raised.status_code == 200, raised.json
    assert raised.json["acr"] == PHISHING_RESISTANT
    assert {"hwk", "user", "pop"} <= set(raised.json["amr"])
    assert raised.json["session_id"] == session["session_id"]
    assert raised.json["token"] != session["token"]
    assert client.get("/api/v1/me", headers=bearer(session["token"])).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(raised.json["token"])).status_code == 200


def test_step_up_without_uv_raises_nothing(app, client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    authenticator.user_verifying = False
    response, _ = step_up(client, session["token"], authenticator)
    assert_problem(response, 401, "user-verification-required")
    # The old token still works: nothing was rotated.
    assert client.get("/api/v1/me", headers=bearer(session["token"])).status_code == 200
    with app.extensions["privid.engine"].connect() as connection:
        acr = connection.execute(
            text("SELECT acr FROM sessions WHERE id = :id"), {"id": session["session_id"]}
        ).scalar_one()
    assert acr != PHISHING_RESISTANT


def test_a_step_up_challenge_belongs_to_its_session(app, client, mailbox, sms):
    alice = enrolled_user(client, mailbox, sms)
    bob = enrolled_user(client, mailbox, sms)
    authenticator = SoftAuthenticator()
    enrol(client, alice["token"], authenticator)
    options = client.post(STEP_OPTIONS, headers=bearer(alice["token"])).json
    answer = authenticator.get(options)
    body = {**answer, "challenge_id": options["challenge_id"]}
    assert_problem(
        client.post(STEP_VERIFY, json=body, headers=bearer(bob["token"])),
        400,
        "webauthn-challenge-invalid",
    )
    # Nor can a step-up challenge sign anybody in.
    assert_problem(client.post(PASSKEY_AUTH_VERIFY, json=body), 400, "webauthn-challenge-invalid")


def test_step_up_without_a_passkey_is_a_conflict(client, mailbox, sms):
    session = enrolled_user(client, mailbox, sms)
    assert_problem(client.post(STEP_OPTIONS, headers=bearer(session["token"])), 409, "no-passkey")


# -- managing ------------------------------------------------------------------------


def test_list_rename_and_remove(app, client, enrolled, clock):
    session, _ = enrolled
    auth = bearer(session["token"])
    [credential] = client.get("/api/v1/me/credentials", headers=auth).json["credentials"]
    assert credential["nickname"] == "Passkey"
    renamed = client.post(
        f"/api/v1/me/credentials/{credential['id']}/rename",
        json={"nickname": "Pixel"},
        headers=auth,
    )
    assert renamed.status_code == 200 and renamed.json["nickname"] == "Pixel"
    clock.advance(seconds=301)
    stale = client.delete(f"/api/v1/me/credentials/{credential['id']}", headers=auth)
    assert_problem(stale, 401, "insufficient-user-authentication")
    assert client.get("/api/v1/me/credentials", headers=auth).json["credentials"]


def test_someone_elses_passkey_is_not_found(client, mailbox, sms, enrolled):
    session, _ = enrolled
    other = enrolled_user(client, mailbox, sms)
    [credential] = client.get("/api/v1/me/credentials", headers=bearer(session["token"])).json[
        "credentials"
    ]
    response = client.delete(
        f"/api/v1/me/credentials/{credential['id']}", headers=bearer(other["token"])
    )
    assert_problem(response, 404, "not-found")


def test_the_export_lists_passkeys_as_metadata(client, enrolled):
    session, authenticator = enrolled
    response = client.post("/api/v1/me/export", headers=bearer(session["token"]))
    assert response.status_code == 200, response.json
    passkeys = response.json["passkeys"]
    [credential] = passkeys["credentials"]
    assert credential["credential_id"] == b64url(authenticator.credentials[0].credential_id)
    assert credential["kind"] == "bound to this device"
    assert credential["transports"] == ["hybrid", "internal"]
    assert "public_key" not in credential
    assert [c["ceremony"] for c in passkeys["challenges"]] == ["registration"]


# -- attestation policy --------------------------------------------------------------


AAGUID = bytes.fromhex("00112233445566778899aabbccddeeff")


class TestAttestationRequired:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {
            "webauthn_require_attestation": True,
            "webauthn_allowed_aaguids": "00112233-4455-6677-8899-aabbccddeeff",
        }

    def test_none_is_refused_packed_from_an_allowed_model_is_accepted(
        self, app, client, mailbox, sms
    ):
        session = enrolled_user(client, mailbox, sms)
        options = client.post(PASSKEY_REG_OPTIONS, headers=bearer(session["token"])).json
        assert options["attestation"] == "direct"
        none, _ = registration(client, session["token"], SoftAuthenticator(aaguid=AAGUID))
        assert_nothing_registered(app, none, 400, "webauthn-registration-refused")
        other_model = SoftAuthenticator(attestation="packed", aaguid=bytes(16))
        refused, _ = registration(client, session["token"], other_model)
        assert_nothing_registered(app, refused, 400, "webauthn-registration-refused")
        good = SoftAuthenticator(attestation="packed", aaguid=AAGUID)
        accepted, _ = registration(client, session["token"], good)
        assert accepted.status_code == 201, accepted.json
        assert accepted.json["aaguid"] == "00112233-4455-6677-8899-aabbccddeeff"


# -- the schema holds nothing biometric ----------------------------------------------

ALLOWED_CREDENTIAL_COLUMNS = {
    "id",
    "user_id",
    "credential_id",
    "public_key",
    "sign_count",
    "transports",
    "aaguid",
    "backup_eligible",
    "backup_state",
    "user_verified_at_registration",
    "nickname",
    "created_at",
    "last_used_at",
    "revoked_at",
    "flagged_cloned_at",
    "attestation_format",
}
ALLOWED_CHALLENGE_COLUMNS = {
    "id",
    "challenge",
    "ceremony",
    "user_id",
    "session_id",
    "expires_at",
    "consumed_at",
}
BIOMETRIC_WORDS = ("face", "finger", "biometric", "template", "image")


def test_the_passkey_tables_hold_metadata_only():
    credential_columns = {c.name for c in WebAuthnCredential.__table__.columns}
    challenge_columns = {c.name for c in WebAuthnChallenge.__table__.columns}
    assert credential_columns <= ALLOWED_CREDENTIAL_COLUMNS, credential_columns
    assert challenge_columns <= ALLOWED_CHALLENGE_COLUMNS, challenge_columns
    for name in credential_columns | challenge_columns:
        assert not any(word in name.lower() for word in BIOMETRIC_WORDS), name


def test_the_migrated_database_has_no_place_for_biometric_data(app):
    """What the migrations actually built, not what their source says: no column
    anywhere is named like biometric data, and the passkey tables hold only the
    allowed metadata."""
    inspector = inspect(app.extensions["privid.engine"])
    tables = inspector.get_table_names()
    assert "webauthn_credentials" in tables and "webauthn_challenges" in tables
    for table in tables:
        for column in inspector.get_columns(table):
            name = column["name"].lower()
            assert not any(word in name for word in BIOMETRIC_WORDS), (table, column["name"])
    assert {c["name"] for c in inspector.get_columns("webauthn_credentials")} <= (
        ALLOWED_CREDENTIAL_COLUMNS
    )
    assert {c["name"] for c in inspector.get_columns("webauthn_challenges")} <= (
        ALLOWED_CHALLENGE_COLUMNS
    )


def test_a_passkey_without_uv_cannot_replace_the_totp_second_factor(client, mailbox, sms, runtime):
    import pyotp

    session = enrolled_user(client, mailbox, sms)
    auth = {"Authorization": f"Bearer {session['token']}"}
    authenticator = SoftAuthenticator(user_verifying=False)
    enrol(client, session["token"], authenticator)
    secret = client.post("/api/v1/me/mfa/totp", headers=auth).json["secret"]
    confirmed = client.post(
        "/api/v1/me/mfa/totp/confirm",
        json={"code": pyotp.TOTP(secret).at(runtime.clock.now())},
        headers=auth,
    )
    assert confirmed.status_code == 200
    signed_in, _ = passkey_sign_in(client, authenticator)
    assert signed_in.status_code == 401
    assert signed_in.json["type"].endswith("/user-verification-required")
