"""Races as production runs them: gunicorn with several sync workers on
PostgreSQL and Redis, 20 clients released together by a barrier, each with its
own HTTP connection. For each single-use secret (one-time code, authorisation
code, refresh token, WebAuthn challenge, DPoP proof, recovery code, second-
factor ticket) exactly one request succeeds, the others get a 4xx problem or
OAuth error, nothing answers 5xx, and the database holds one effect. Also
registration's last code (one account) and one passkey counter value sent
with twenty challenges (a copied authenticator: one sign-in, then blocked).
Parallel wrong passwords are evaluated no more often than the throttle allows.

The set-up (registration, clients, tickets) runs in-process on the same
database; only the racing requests go through gunicorn, which serves the
whole module while each test empties the database after itself.

PostgreSQL and Redis only (PRIVID_TEST_DATABASE_URL, and a shared rate-limit
storage for the DPoP replay cache): on SQLite each request takes the write
lock at BEGIN, so requests queue and nothing races; tests/test_oidc_races.py
and tests/test_totp_races.py check the same outcomes in-process there."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from tests.conftest import PG_URL, RATELIMIT_URI, suite_settings
from tests.dpop_client import DpopKey
from tests.fakes import SmsGateway, SmtpServer, free_port
from tests.helpers import (
    HIGH_LIMITS,
    PASSKEY_AUTH_OPTIONS,
    PROBLEM_MEDIA_TYPE,
    baseline_consent,
    enable_totp,
    enrol,
    login,
    new_person,
    privid_env,
    register,
    request_sms_code,
    row_count,
    start_registration,
    stop_process,
    wait_until_ready,
)
from tests.oidc_helpers import FIRST_PARTY, add_client, exchange, get_code
from tests.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.skipif(
    not PG_URL or RATELIMIT_URI.startswith("memory"),
    reason="races need PostgreSQL and a shared rate-limit storage (Redis) to overlap",
)

ROOT = Path(__file__).resolve().parent.parent
RACERS = 20
WORKERS = 4  # sync workers: four requests truly at once on two cores
REQUEST_TIMEOUT = 30  # 20 requests queue on 4 workers; each takes milliseconds

GUESSES = 40
ACCOUNT_ALLOWANCE = 10
# One gunicorn serves the whole module (starting and stopping four workers
# costs seconds), so its settings and the in-process app's are these.
RACE_SETTINGS: dict[str, object] = {
    # Request limits out of the way: the races are about single use, and the
    # set-up signs in more often than a person would.
    **HIGH_LIMITS,
    "login_free_attempts": 100,
    # The wrong-password race hits the account-wide bucket: after ten failures
    # in a row it takes no password for a day, so its allowance is exact.
    "login_account_free_attempts": ACCOUNT_ALLOWANCE,
    "login_account_max_failures": ACCOUNT_ALLOWANCE,
    # gunicorn stands behind one trusted proxy, so a racer can name its own
    # network (X-Forwarded-For) and guesses come from many places at once.
    "trusted_proxy_count": 1,
    # Each test empties the database; no worker may sign with a key it kept.
    "oidc_key_cache_seconds": 0,
}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(RACE_SETTINGS)


@dataclass
class Server:
    base: str
    log: Path

    def url(self, path: str) -> str:
        return self.base + path

    def log_size(self) -> int:
        return self.log.stat().st_size


@pytest.fixture(scope="module")
def server(
    migrated_template: str,
    smtp_server: SmtpServer,
    sms_gateway: SmsGateway,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """gunicorn (config/gunicorn.conf.py, WORKERS sync workers) on the suite's
    PostgreSQL database and Redis with RACE_SETTINGS. Each test's ``app`` is
    its in-process twin on the same database, for set-up and for reading rows."""
    folder = tmp_path_factory.mktemp("races")
    settings = suite_settings(PG_URL, smtp_server, sms_gateway, RACE_SETTINGS, folder)
    overrides = {name.upper(): str(value) for name, value in RACE_SETTINGS.items()}
    env = privid_env(settings, PUBLIC_URL=settings.public_url, **overrides)
    port = free_port()
    log_path = folder / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "-c", str(ROOT / "config" / "gunicorn.conf.py"),
                "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, log_path, "gunicorn")
        yield Server(base, log_path)
    finally:
        stop_process(process)


# -- racing and judging ----------------------------------------------------------------

Send = Callable[[int, requests.Session], requests.Response]


def race(server: Server, route: str, count: int, send: Send) -> list[requests.Response]:
    """``send(index, session)`` in ``count`` threads, each with its own HTTP
    session (so its own connection), released together by a barrier; then
    checks that the requests to ``route`` ran on more than one worker."""
    log_start = server.log_size()
    barrier = threading.Barrier(count)
    answers: list[requests.Response | None] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        with requests.Session() as session:
            try:
                barrier.wait(timeout=30)
                answers[index] = send(index, session)
            except BaseException as error:  # reported below, not lost in a thread
                failures.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 30)
    assert not failures, failures
    assert all(a is not None for a in answers), "a racer never finished"
    served_by_several_workers(server, log_start, route, count)
    return [a for a in answers if a is not None]


def describe(answers: list[requests.Response]) -> list[str]:
    return [f"{a.status_code} {a.text[:160]}" for a in answers]


def one_winner(answers: list[requests.Response], success: int = 200) -> dict[str, Any]:
    """Exactly one ``success``; every other answer a 4xx problem document (or an
    OAuth error, on the token endpoint); no 5xx. Returns the winner's body."""
    statuses = Counter(a.status_code for a in answers)
    assert not [s for s in statuses if s >= 500], describe(answers)
    assert statuses[success] == 1, (statuses, describe(answers))
    for loser in (a for a in answers if a.status_code != success):
        assert 400 <= loser.status_code < 500, describe(answers)
        kind = loser.headers.get("Content-Type", "")
        if kind.startswith(PROBLEM_MEDIA_TYPE):
            assert loser.json()["status"] == loser.status_code
        else:  # RFC 6749 section 5.2
            assert kind.startswith("application/json") and loser.json().get("error"), loser.text
    return dict(next(a for a in answers if a.status_code == success).json())


def served_by_several_workers(server: Server, log_start: int, route: str, count: int) -> None:
    """The access log shows the race's requests spread over more than one
    worker process: they really ran side by side."""
    deadline = time.monotonic() + 5  # gunicorn writes its log a moment later
    while True:
        with server.log.open("rb") as log:
            log.seek(log_start)
            lines = log.read().decode(errors="replace").splitlines()
        pids = [entry["pid"] for entry in map(_json_line, lines) if entry.get("route") == route]
        if len(pids) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(pids) >= count, f"{len(pids)} of {count} requests logged"
    assert len(set(pids)) >= 2, "every request landed on one worker; nothing raced"


def _json_line(line: str) -> dict[str, Any]:
    """One line of the JSON log (app/telemetry); {} for anything else."""
    try:
        entry = json.loads(line)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


def audit_count(app, event_type: str, user_id: str, where: str = "1=1") -> int:
    return row_count(
        app,
        "audit_events",
        f"event_type = :e AND user_id = :u AND {where}",
        e=event_type,
        u=user_id,
    )


def user_id_of(app, session: dict[str, Any]) -> str:
    """The account a session (as registration or sign-in returned it) belongs to."""
    with app.extensions["privid.engine"].connect() as connection:
        found = connection.execute(
            text("SELECT user_id FROM sessions WHERE id = :s"), {"s": session["session_id"]}
        )
        return str(found.scalar_one())


# -- the seven secrets -------------------------------------------------------------------


def test_one_sms_code_signs_in_once(app, client, mailbox, sms, server):
    person, session = register(client, mailbox, sms)
    user = user_id_of(app, session)
    started = request_sms_code(client, person.phone)
    assert started.status_code == 202, started.json
    body = {
        "phone": person.phone,
        "flow": started.json["flow"],
        "code": sms.last_code(person.phone, count=2),
        "token_delivery": "bearer",
    }
    sessions_before = row_count(app, "sessions", "user_id = :u", u=user)

    path = "/api/v1/login/sms"

    answers = race(
        server,
        path,
        RACERS,
        lambda _, s: s.post(server.url(path), json=body, timeout=REQUEST_TIMEOUT),
    )

    winner = one_winner(answers)
    assert winner["token"]
    assert row_count(app, "sessions", "user_id = :u", u=user) == sessions_before + 1
    assert audit_count(app, "login.succeeded", user) == 1


def test_one_registration_code_creates_one_account(app, client, mailbox, sms, server):
    person = new_person()
    started = start_registration(client, person)
    assert started.status_code == 202, started.json
    flow = started.json["flow_id"]
    path = f"/api/v1/registration/{flow}/verify"
    email = {"channel": "email", "code": mailbox.last_code(person.email)}
    assert client.post(path, json=email).status_code == 200
    phone = {"channel": "phone", "code": sms.last_code(person.phone), "token_delivery": "bearer"}

    answers = race(
        server,
        "/api/v1/registration/<id:flow_id>/verify",
        RACERS,
        lambda _, s: s.post(server.url(path), json=phone, timeout=REQUEST_TIMEOUT),
    )

    one_winner(answers, success=201)
    assert row_count(app, "users") == 1
    assert row_count(app, "sessions") == 1
    assert row_count(app, "registration_flows") == 0


def token_form(rp, **form: str) -> dict[str, Any]:
    """requests' keyword arguments for a confidential client's token request."""
    return {"data": form, "auth": (rp.client_id, rp.secret), "timeout": REQUEST_TIMEOUT}


def test_one_authorization_code_is_redeemed_once(app, client, mailbox, sms, server):
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, FIRST_PARTY)
    code = get_code(client, rp, scope="openid offline_access")["code"]
    form = token_form(rp, grant_type="authorization_code", code=code, redirect_uri=rp.redirect_uri)

    answers = race(
        server, "/oauth/token", RACERS, lambda _, s: s.post(server.url("/oauth/token"), **form)
    )

    winner = one_winner(answers)
    assert winner["access_token"] and winner["refresh_token"]
    assert {a.json()["error"] for a in answers if a.status_code != 200} == {"invalid_grant"}
    # One token family, one access and one refresh token in it; the reused code
    # then revoked it (RFC 6749 section 4.1.2), once.
    assert row_count(app, "oauth_grants") == 1
    assert row_count(app, "oauth_tokens") == 2
    assert row_count(app, "oauth_grants", "revoke_reason = 'code_reused'") == 1
    assert row_count(app, "audit_events", "event_type = 'oidc.grant_revoked'") == 1


def test_one_refresh_token_is_rotated_once(app, client, mailbox, sms, server):
    register(client, mailbox, sms, token_delivery="cookie")
    rp = add_client(app, FIRST_PARTY)
    first = exchange(client, rp, get_code(client, rp, scope="openid offline_access")["code"])
    assert first.status_code == 200, first.json
    form = token_form(rp, grant_type="refresh_token", refresh_token=first.json["refresh_token"])

    answers = race(
        server, "/oauth/token", RACERS, lambda _, s: s.post(server.url("/oauth/token"), **form)
    )

    winner = one_winner(answers)
    assert winner["refresh_token"] != first.json["refresh_token"]
    assert {a.json()["error"] for a in answers if a.status_code != 200} == {"invalid_grant"}
    # The first pair and one rotation: four tokens, one family; the rotated
    # token presented again then ended the family (RFC 9700 section 4.14.2), once.
    assert row_count(app, "oauth_grants") == 1
    assert row_count(app, "oauth_tokens") == 4
    assert row_count(app, "oauth_tokens", "kind = 'refresh' AND used_at IS NOT NULL") == 1
    assert row_count(app, "oauth_grants", "revoke_reason = 'refresh_reused'") == 1
    assert row_count(app, "audit_events", "event_type = 'oidc.grant_revoked'") == 1


def counter(app) -> int:
    """The stored signature counter of the only passkey."""
    with app.extensions["privid.engine"].connect() as connection:
        found = connection.execute(text("SELECT sign_count FROM webauthn_credentials"))
        return int(found.scalar_one())


def test_one_webauthn_challenge_signs_in_once(app, client, mailbox, sms, server):
    consent = baseline_consent(device_biometrics="granted")
    _, session = register(client, mailbox, sms, consent=consent)
    user = user_id_of(app, session)
    authenticator = SoftAuthenticator()
    enrol(client, session["token"], authenticator)
    options = client.post(PASSKEY_AUTH_OPTIONS)
    assert options.status_code == 200, options.json
    body = {
        **authenticator.get(options.json),
        "challenge_id": options.json["challenge_id"],
        "token_delivery": "bearer",
    }
    sessions_before = row_count(app, "sessions", "user_id = :u", u=user)
    counted_before = counter(app)
    path = "/api/v1/webauthn/authentication/verify"

    answers = race(
        server,
        path,
        RACERS,
        lambda _, s: s.post(server.url(path), json=body, timeout=REQUEST_TIMEOUT),
    )

    one_winner(answers)
    assert row_count(app, "sessions", "user_id = :u", u=user) == sessions_before + 1
    assert audit_count(app, "login.succeeded", user) == 1
    # One assertion counted: the signature counter moved once and nothing
    # looked like a cloned authenticator.
    assert counter(app) == counted_before + 1
    assert row_count(app, "webauthn_credentials", "flagged_cloned_at IS NOT NULL") == 0


COUNTER_ROUNDS = 3  # the window is one signature check wide: a few rounds to hit it


def test_one_signature_counter_value_is_accepted_once(app, client, mailbox, sms, server):
    """A copied authenticator answers its own challenges with the counter value
    the original uses: twenty assertions, twenty challenges, one counter value.
    Checked one after another, the second is seen going backwards and blocks
    the passkey; at once, the same must hold (one sign-in, the passkey flagged)."""
    consent = baseline_consent(device_biometrics="granted")
    _, session = register(client, mailbox, sms, consent=consent)
    user = user_id_of(app, session)
    path = "/api/v1/webauthn/authentication/verify"
    for _ in range(COUNTER_ROUNDS):
        # A fresh passkey each round: the last round's ends up blocked.
        authenticator = SoftAuthenticator()
        credential = enrol(client, session["token"], authenticator)["id"]
        bodies = []
        for _ in range(RACERS):
            options = client.post(PASSKEY_AUTH_OPTIONS)
            assert options.status_code == 200, options.json
            answer = authenticator.get(options.json, sign_count=2)
            bodies.append(
                {**answer, "challenge_id": options.json["challenge_id"], "token_delivery": "bearer"}
            )
        sessions_before = row_count(app, "sessions", "user_id = :u", u=user)

        answers = race(
            server,
            path,
            RACERS,
            lambda i, s, bodies=bodies: s.post(
                server.url(path), json=bodies[i], timeout=REQUEST_TIMEOUT
            ),
        )

        one_winner(answers)
        assert row_count(app, "sessions", "user_id = :u", u=user) == sessions_before + 1
        stored = "id = :c AND sign_count = 2 AND flagged_cloned_at IS NOT NULL"
        assert row_count(app, "webauthn_credentials", stored, c=credential) == 1


def test_one_dpop_proof_binds_one_sign_in(app, client, mailbox, sms, server):
    person, _ = register(client, mailbox, sms)
    key = DpopKey()
    path = "/api/v1/login/password"
    proof = {"DPoP": key.proof("POST", path)}
    body = {"identifier": person.email, "password": person.password, "token_delivery": "bearer"}

    answers = race(
        server,
        path,
        RACERS,
        lambda _, s: s.post(server.url(path), json=body, headers=proof, timeout=REQUEST_TIMEOUT),
    )

    winner = one_winner(answers)
    assert winner["token_type"] == "DPoP", winner
    for loser in (a for a in answers if a.status_code != 200):
        assert loser.json()["type"].endswith("/invalid-dpop-proof"), loser.text
    assert row_count(app, "sessions", "dpop_jkt = :k", k=key.thumbprint) == 1


def test_one_recovery_code_finishes_one_sign_in(app, client, mailbox, sms, server):
    person, session = register(client, mailbox, sms)
    user = user_id_of(app, session)
    _, codes = enable_totp(client, session, datetime.now(UTC))
    tickets = [login(client, person.email, person.password).json["ticket"] for _ in range(RACERS)]
    sessions_before = row_count(app, "sessions", "user_id = :u", u=user)
    path = "/api/v1/login/second-factor"

    def submit(index: int, s: requests.Session) -> requests.Response:
        body = {"ticket": tickets[index], "recovery_code": codes[0]}
        return s.post(server.url(path), json=body, timeout=REQUEST_TIMEOUT)

    answers = race(server, path, RACERS, submit)

    one_winner(answers)
    assert row_count(app, "recovery_codes", "used_at IS NOT NULL") == 1
    assert row_count(app, "sessions", "user_id = :u", u=user) == sessions_before + 1
    assert audit_count(app, "login.succeeded", user) == 1


def test_one_second_factor_ticket_finishes_one_sign_in(app, client, mailbox, sms, server):
    """Twenty finishes of one ticket, each with a second factor that would pass
    on its own (ten different recovery codes, the current TOTP code): the ticket
    alone decides, once."""
    person, session = register(client, mailbox, sms)
    user = user_id_of(app, session)
    totp, codes = enable_totp(client, session, datetime.now(UTC))
    ticket = login(client, person.email, person.password).json["ticket"]
    proofs = [{"recovery_code": code} for code in codes]
    proofs += [{"totp_code": totp.now()}] * (RACERS - len(proofs))
    sessions_before = row_count(app, "sessions", "user_id = :u", u=user)
    path = "/api/v1/login/second-factor"

    def submit(index: int, s: requests.Session) -> requests.Response:
        body = {"ticket": ticket, **proofs[index]}
        return s.post(server.url(path), json=body, timeout=REQUEST_TIMEOUT)

    answers = race(server, path, RACERS, submit)

    one_winner(answers)
    [won] = [proofs[i] for i, a in enumerate(answers) if a.status_code == 200]
    # The losers' factors were not spent: only the winner's recovery code, if
    # it used one, is gone.
    used = 1 if "recovery_code" in won else 0
    assert row_count(app, "recovery_codes", "used_at IS NOT NULL") == used
    assert row_count(app, "spent_tickets") == 1
    assert row_count(app, "sessions", "user_id = :u", u=user) == sessions_before + 1
    assert audit_count(app, "login.succeeded", user) == 1


# -- parallel wrong passwords -------------------------------------------------------------


def test_parallel_wrong_passwords_are_evaluated_no_more_than_the_throttle_allows(
    app, client, mailbox, sms, server
):
    person, session = register(client, mailbox, sms)
    user = user_id_of(app, session)
    path = "/api/v1/login/password"
    body = {"identifier": person.email, "password": "wrong-guess-000", "token_delivery": "bearer"}

    def guess(index: int, s: requests.Session) -> requests.Response:
        # Each guess from a network of its own: the per-network buckets never
        # fill, so only the account-wide one stands between the guesses and
        # the password, and its row lock alone must hold them to the count.
        network = {"X-Forwarded-For": f"10.77.{index}.5"}
        return s.post(server.url(path), json=body, headers=network, timeout=REQUEST_TIMEOUT)

    answers = race(server, path, GUESSES, guess)

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: ACCOUNT_ALLOWANCE, 429: GUESSES - ACCOUNT_ALLOWANCE}, statuses
    # What the audit trail says was evaluated matches the throttle's count.
    evaluated = "details->>'reason' = 'invalid_credentials'"
    assert audit_count(app, "login.failed", user, evaluated) == ACCOUNT_ALLOWANCE
    throttled = "details->>'reason' = 'throttled'"
    assert audit_count(app, "login.failed", user, throttled) == GUESSES - ACCOUNT_ALLOWANCE
    assert (
        row_count(app, "login_throttles", "key LIKE 'id:%' AND failures = :n", n=ACCOUNT_ALLOWANCE)
        == 1
    )
    # The race did not unlock the account: the right password, even from a
    # network that never guessed, is refused as the throttle says (a day).
    right = requests.post(
        server.url(path),
        json={**body, "password": person.password},
        headers={"X-Forwarded-For": "10.78.0.5"},
        timeout=REQUEST_TIMEOUT,
    )
    assert right.status_code == 429, right.text
    assert int(right.headers["Retry-After"]) > 23 * 3600
    assert audit_count(app, "login.succeeded", user) == 0
