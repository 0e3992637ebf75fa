"""The service as a fleet: two gunicorn instances on their own ports sharing
one PostgreSQL database through PgBouncer in transaction mode (as production
pools connections) and one Redis, plus a `privid worker` process sending the
outbox to the real SMTP server and SMS gateway on loopback. Every flow sends
its requests to the two instances in turn, so nothing may live in one
instance's memory, and nothing may rely on a server connection outlasting a
transaction (psycopg's prepared statements, session-level locks or SETs).

It needs PostgreSQL, so it makes a database of its own on the suite's server
(the machine's in the SQLite pass) and drops it at the end; the fleet is
started once for the module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from app.db import make_engine
from app.extensions import limiter
from app.migrate import upgrade
from app.settings import Environment, Settings
from tests.conftest import FAST_ARGON2, publish_test_policy
from tests.dpop_client import DpopKey
from tests.fakes import Mailbox, SmsGateway, SmsOutbox, SmtpServer
from tests.fleet_helpers import (
    REDIS_URL,
    FleetClient,
    fleet_database_url,
    fleet_processes,
    fresh_database,
    pgbouncer,
)
from tests.helpers import (
    baseline_consent,
    bearer,
    enable_totp,
    enrol,
    login,
    passkey_sign_in,
    privid_env,
    register,
)
from tests.oidc_helpers import (
    add_client,
    approve,
    authorize_query,
    bearer_get,
    exchange,
    introspect,
    pkce_pair,
    redirect_params,
    refresh,
    signed_jwt,
)
from tests.soft_authenticator import SoftAuthenticator

PASSWORD_CHECKS_PER_ADDRESS = 6
PUBLIC_URL = "https://localhost"  # what the load balancer's clients see


@dataclass
class Fleet:
    bases: list[str]
    logs: list[Path]
    app: Flask  # in-process, through the same PgBouncer: registers clients

    def client(self) -> FleetClient:
        return FleetClient(list(self.bases))


@pytest.fixture(scope="module")
def fleet(
    smtp_server: SmtpServer, sms_gateway: SmsGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("fleet")
    direct = fleet_database_url()
    with fresh_database(direct):
        # Migrations run on a direct connection, as deployment runs them.
        upgrade(direct.render_as_string(hide_password=False))
        with pgbouncer(direct, folder / "pgbouncer") as pooled:
            settings = Settings(
                env=Environment.TEST,
                database_url=pooled.render_as_string(hide_password=False),
                database_pgbouncer=True,
                ratelimit_storage_uri=REDIS_URL,
                email_backend="smtp",
                smtp_host="127.0.0.1",
                smtp_port=smtp_server.port,
                sms_backend="http",
                sms_http_url=sms_gateway.url,
                sms_http_token=sms_gateway.outbox.token,
                public_url=PUBLIC_URL,
                chain_checkpoint_dir=str(folder / "checkpoints"),
                **FAST_ARGON2,  # type: ignore[arg-type]
            )
            app = create_app(settings)
            try:
                with app.app_context():
                    limiter.reset()  # limits left in Redis by earlier runs
                    publish_test_policy(app)
                env = privid_env(
                    settings,
                    DATABASE_PGBOUNCER="true",
                    PUBLIC_URL=PUBLIC_URL,
                    LIMIT_PASSWORD_CHECK_PER_IP=f"{PASSWORD_CHECKS_PER_ADDRESS}/hour",
                    OUTBOX_POLL_SECONDS="0.1",
                )
                # Only the worker process delivers: no pass from the test's side.
                smtp_server.mailbox.deliver = sms_gateway.outbox.deliver = None
                with fleet_processes(env, folder) as processes:
                    yield Fleet(processes.bases, processes.logs, app)
            finally:
                app.extensions["privid.engine"].dispose()


def test_the_pgbouncer_setting_is_refused_with_a_driver_it_cannot_configure() -> None:
    # Only psycopg 3 has prepare_threshold; with another driver the setting
    # would be silently ignored and the fleet would fail under load instead.
    with pytest.raises(ValueError, match="PRIVID_DATABASE_PGBOUNCER"):
        make_engine("postgresql+pg8000://privid@127.0.0.1/privid", pgbouncer=True)


def both_served(client: FleetClient, fleet: Fleet) -> None:
    assert set(client.served) == set(fleet.bases), "one instance served every request"


def test_registration_sign_in_and_sign_out_across_instances(
    fleet: Fleet, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    api = fleet.client()
    # Start on one instance, prove the email code on the other, the phone on the first.
    person, _ = register(api, mailbox, sms)
    signed_in = login(api, person.email, person.password)
    assert signed_in.status_code == 200, signed_in.json
    token = signed_in.json["token"]
    for _ in fleet.bases:
        me = api.get("/api/v1/me", headers=bearer(token))
        assert me.status_code == 200, me.json
        assert me.json["full_name"] == person.full_name
    assert api.post("/api/v1/logout", headers=bearer(token)).status_code in (200, 204)
    for _ in fleet.bases:  # signed out on one instance is signed out on every one
        assert api.get("/api/v1/me", headers=bearer(token)).status_code == 401
    both_served(api, fleet)


def test_a_dpop_proof_spent_on_one_instance_is_refused_by_the_other(
    fleet: Fleet, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    api = fleet.client()
    person, _ = register(api, mailbox, sms)
    key = DpopKey("ES256")
    login_path = "/api/v1/login/password"
    bound = api.post(
        login_path,
        json={"identifier": person.email, "password": person.password, "token_delivery": "bearer"},
        headers={"DPoP": key.proof("POST", PUBLIC_URL + login_path)},
    )
    assert bound.status_code == 200 and bound.json["token_type"] == "DPoP", bound.json
    headers = key.headers("GET", "/api/v1/me", token=bound.json["token"])
    first = api.get("/api/v1/me", headers=headers)
    assert first.status_code == 200, first.json
    # The replay cache is Redis, shared: the other instance has seen this jti.
    replayed = api.get("/api/v1/me", headers=headers)
    assert replayed.served_by != first.served_by
    assert replayed.status_code == 401
    assert replayed.json["type"].endswith("/invalid-dpop-proof")


def test_step_up_and_passkey_sign_in_across_instances(
    fleet: Fleet, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    api = fleet.client()
    consent = baseline_consent(device_biometrics="granted")  # passkeys need it
    person, registered = register(api, mailbox, sms, consent=consent)
    older = login(api, person.email, person.password).json["token"]
    # An authenticator app, confirmed with the previous 30 s step's code so the
    # step-up below can use the current one (each step is accepted once).
    totp, _ = enable_totp(api, registered, at=datetime.now(UTC) - timedelta(seconds=30))

    # The session from before the authenticator app lacks the account's factors.
    refused = api.post("/api/v1/webauthn/registration/options", headers=bearer(older))
    assert refused.status_code == 401, refused.json
    assert refused.json["type"].endswith("/insufficient-user-authentication")
    raised = api.post(
        "/api/v1/me/step-up",
        json={"password": person.password, "totp_code": totp.now()},
        headers=bearer(older),
    )
    assert raised.status_code == 200, raised.json
    stepped_up = raised.json["token"]

    authenticator = SoftAuthenticator(origin=PUBLIC_URL)
    enrol(api, stepped_up, authenticator)  # options on one instance, verify on the other
    phone = fleet.client()
    answer, _ = passkey_sign_in(phone, authenticator)
    assert answer.status_code == 200, answer.json
    me = phone.get("/api/v1/me", headers=bearer(answer.json["token"]))
    assert me.status_code == 200 and me.json["full_name"] == person.full_name
    both_served(api, fleet)
    both_served(phone, fleet)


def test_code_flow_refresh_and_withdrawal_across_instances(
    fleet: Fleet, mailbox: Mailbox, sms: SmsOutbox
) -> None:
    browser = fleet.client()
    _, session = register(browser, mailbox, sms, token_delivery="cookie")
    rp = add_client(fleet.app, require_pkce=True)
    verifier, challenge = pkce_pair()
    scope = "openid profile email offline_access"
    asked = browser.get(
        authorize_query(rp, scope=scope, code_challenge=challenge, code_challenge_method="S256")
    )
    assert asked.status_code == 200, asked.data[:300]  # the partner's approval page
    back = redirect_params(approve(browser, asked.get_data(as_text=True)))

    backend = fleet.client()  # the relying party's server
    tokens = exchange(backend, rp, back["code"], verifier)
    assert tokens.status_code == 200, tokens.json
    _, claims = signed_jwt(backend, tokens.json["id_token"])
    assert claims["aud"] == rp.client_id
    info = bearer_get(backend, "/oauth/userinfo", tokens.json["access_token"])
    assert info.status_code == 200 and info.json["sub"] == claims["sub"]
    rotated = refresh(backend, rp, tokens.json["refresh_token"])
    assert rotated.status_code == 200, rotated.json
    for _ in fleet.bases:
        live = introspect(backend, rp, rotated.json["access_token"])
        assert live.status_code == 200 and live.json["active"] is True

    # The person withdraws partner sharing; every instance stops honouring the grant.
    withdrawn = browser.post(
        "/api/v1/me/consent/partner_sharing/withdraw",
        headers={"X-CSRF-Token": session["csrf_token"]},
    )
    assert withdrawn.status_code == 200, withdrawn.json
    for _ in fleet.bases:
        assert introspect(backend, rp, rotated.json["access_token"]).json["active"] is False
        gone = bearer_get(backend, "/oauth/userinfo", rotated.json["access_token"])
        assert gone.status_code == 401
    dead = refresh(backend, rp, rotated.json["refresh_token"])
    assert dead.status_code == 400 and dead.json["error"] == "invalid_grant"
    both_served(browser, fleet)
    both_served(backend, fleet)


def test_rate_limits_count_requests_to_every_instance(fleet: Fleet) -> None:
    api = fleet.client()
    extra = 4
    answers = [
        api.post("/api/v1/password/check", json={"password": "velvet-orbit-canyon-42"})
        for _ in range(PASSWORD_CHECKS_PER_ADDRESS + extra)
    ]
    # Counted per instance, each would allow the limit and nothing would be refused.
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * PASSWORD_CHECKS_PER_ADDRESS + [429] * extra, statuses
    allowed, refused = answers[:PASSWORD_CHECKS_PER_ADDRESS], answers[PASSWORD_CHECKS_PER_ADDRESS:]
    assert {a.served_by for a in allowed} == {a.served_by for a in refused} == set(fleet.bases)
    assert all(int(a.headers["Retry-After"]) > 0 for a in refused)


def test_no_process_of_the_fleet_failed(fleet: Fleet) -> None:
    """Runs last: whatever the flows above did, no instance answered a 5xx or
    logged an unhandled error, and no outbox pass failed (the worker retries,
    so only its log shows it). A prepared statement gone missing between
    transactions, or one of the same name already there, would show here."""
    time.sleep(0.3)  # the access logs flush
    failures = ('" 5', "Traceback", "unhandled", "pass failed")
    for log in fleet.logs:
        lines = log.read_text(errors="replace").splitlines()
        assert lines, f"{log} is empty: the fleet never ran"
        assert not [line for line in lines if any(f in line for f in failures)], log
