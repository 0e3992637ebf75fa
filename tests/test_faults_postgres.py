"""PostgreSQL stopped and started again under load, on a cluster this module
owns (initdb into a temporary folder, once per module), with the service under
gunicorn and a `privid worker` sending the codes. While it is down every
request that needs it is a 503 with Retry-After (a problem document on the
API, RFC 6749's temporarily_unavailable on the token endpoint); once it is
back the same processes answer again (the pool replaces its dead
connections). Nothing is half written: every user has its data key and its
consent decisions, every decision and audit event is in its chain, every
rotated refresh token has exactly one successor; and nothing answered as done
is lost."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from app.migrate import upgrade
from tests.helpers import (
    HIGH_LIMITS,
    bearer,
    privid_command,
    privid_env,
    register,
    row_count,
    session_user,
    stop_process,
)
from tests.invariants import assert_nothing_half_written
from tests.load import REQUEST_TIMEOUT, Answer, Load
from tests.load_steps import ConsentToggles, Refreshes, Registrations
from tests.oidc_helpers import FIRST_PARTY, add_client, exchange, get_code
from tests.own_servers import PostgresCluster, gunicorn, postgres_cluster

SETTLE = 0.3
# How long the server stays down while the load goes on.
DOWN_SECONDS = 1.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        upgrade(cluster.url)
        yield cluster


@pytest.fixture
def database_url(own_postgres: PostgresCluster) -> str:
    """This module's database is its own cluster, never the suite's."""
    return own_postgres.url


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def is_unavailable(answer: Answer) -> bool:
    if answer.retry_after != "5":
        return False
    if answer.kind == "refresh":  # the token endpoint answers as RFC 6749 says
        body = answer.body if isinstance(answer.body, dict) else {}
        return answer.status == 503 and body.get("error") == "temporarily_unavailable"
    return answer.is_problem(503, "service-unavailable")


def test_postgres_restarted_under_load_503_then_recovers_with_nothing_half_written(
    app, client, settings, mailbox, sms, own_postgres, tmp_path
):
    person, session = register(client, mailbox, sms)
    _, toggler = register(app.test_client(), mailbox, sms)
    toggler_id = session_user(app, toggler["session_id"])
    rp = add_client(app, FIRST_PARTY)
    browser = app.test_client()
    browser.environ_base["wsgi.url_scheme"] = "https"
    register(browser, mailbox, sms, token_delivery="cookie")
    code = get_code(browser, rp, scope="openid offline_access")["code"]
    issued = exchange(client, rp, code)
    assert issued.status_code == 200, issued.json
    mailbox.deliver = sms.deliver = None  # from here only the `privid worker` below sends

    env = privid_env(
        settings, PUBLIC_URL=settings.public_url,
        **{name.upper(): value for name, value in HIGH_LIMITS.items()},
    )  # fmt: skip
    with (tmp_path / "worker.log").open("wb") as worker_log:
        worker = subprocess.Popen(
            [privid_command(), "worker"], env={**env, "PRIVID_OUTBOX_POLL_SECONDS": "0.1"},
            stdout=worker_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with gunicorn(env, tmp_path / "gunicorn.log") as server:
            base = server.base
            registrations = Registrations(base, mailbox, sms)
            toggles = ConsentToggles(base, toggler["token"])
            refreshes = Refreshes(base, rp.basic, issued.json["refresh_token"])
            users_before = row_count(app, "users")
            records_before = row_count(app, "consent_records", "user_id = :u", u=toggler_id)
            sessions_before = row_count(app, "sessions")

            def sign_in() -> requests.Response:
                body = {"identifier": person.email, "password": person.password,
                        "token_delivery": "bearer"}  # fmt: skip
                return requests.post(
                    base + "/api/v1/login/password", json=body, timeout=REQUEST_TIMEOUT
                )

            def read_profile() -> requests.Response:
                return requests.get(
                    base + "/api/v1/me", headers=bearer(session["token"]), timeout=REQUEST_TIMEOUT
                )

            steps = {"registration": registrations.step, "consent": toggles.step,
                     "refresh": refreshes.step, "sign-in": sign_in, "me": read_profile}  # fmt: skip
            workers = server.worker_pids()
            with Load(steps) as load:
                began = time.monotonic()
                for kind in steps:
                    load.wait_for(kind, 2, began)
                stopping = time.monotonic()
                own_postgres.stop("fast")
                down_from = time.monotonic() + SETTLE
                time.sleep(SETTLE)
                for kind in steps:
                    load.wait_for(kind, 2, down_from)
                time.sleep(max(0.0, down_from + DOWN_SECONDS - time.monotonic()))
                down_until = time.monotonic()
                own_postgres.start()
                up_from = time.monotonic() + SETTLE
                time.sleep(SETTLE)
                for kind in steps:
                    load.wait_for(kind, 2, up_from, timeout=15)
                load.wait_for("registration", 6, up_from, timeout=20)
                ended = time.monotonic()
            assert not load.errors, load.errors
            assert server.worker_pids() == workers
    finally:
        stop_process(worker)

    answers = load.answers
    assert load.broken() == []  # no 500, no dropped connection
    for answer in load.between(began, stopping):
        assert answer.status in (200, 201, 202), answer
    down = load.between(down_from, down_until)
    assert {a.kind for a in down} == set(steps)
    for answer in down:
        assert is_unavailable(answer), answer
    for answer in load.between(up_from, ended):
        assert answer.status in (200, 201, 202), answer
    assert registrations.created >= 1, "no registration finished"

    # Nothing answered as done is lost, and nothing refused was kept.
    new_users = row_count(app, "users") - users_before
    assert new_users == registrations.created
    records = row_count(app, "consent_records", "user_id = :u", u=toggler_id)
    assert records - records_before == toggles.recorded
    signed_in = sum(1 for a in answers if a.kind == "sign-in" and a.status == 200)
    new_sessions = row_count(app, "sessions") - sessions_before
    assert new_sessions == signed_in + registrations.created
    # The refresh token handed out last is the one that works.
    rotated = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refreshes.token},
        headers=rp.basic,
    )  # fmt: skip
    assert rotated.status_code == 200, rotated.json
    assert_nothing_half_written(app)
