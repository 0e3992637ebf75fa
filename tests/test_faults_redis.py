"""Redis (the rate-limit storage and replay cache) stopped under load, with the
service under gunicorn: the policy in docs/architecture.md ("Failure
behaviour") holds. What needs the storage fails closed with a 503 problem and
changes nothing: no sign-in without its limits, no code sent, no DPoP proof
accepted without its replay check. What does not need it (a bearer session's
reads, a refresh token rotation) goes on. When Redis is back at the same
address, everything works again without restarting the service."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import text

from tests.dpop_client import DpopKey
from tests.helpers import HIGH_LIMITS, bearer, https_client, privid_env, register
from tests.load import REQUEST_TIMEOUT, Load
from tests.load_steps import Refreshes
from tests.oidc_helpers import FIRST_PARTY, add_client, exchange, get_code
from tests.own_servers import RedisServer, gunicorn, redis_server

LOGIN = "/api/v1/login/password"
SMS_CODE = "/api/v1/login/sms/code"
ME = "/api/v1/me"
# A bearer session's reads and a refresh with a client secret need no Redis.
NEED_NO_REDIS = {"me", "refresh"}
# Requests in flight when Redis stops or starts may go either way; these
# margins keep them out of the phases that are checked.
SETTLE = 0.3
# How long the server stays down while the load goes on.
DOWN_SECONDS = 1.0


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def settings_overrides(own_redis: RedisServer) -> dict[str, object]:
    return {**HIGH_LIMITS, "ratelimit_storage_uri": own_redis.url}


def limits_env() -> dict[str, str]:
    return {name.upper(): value for name, value in HIGH_LIMITS.items()}


def counts(app) -> tuple[int, int]:
    """(sessions, outbox messages): what a sign-in or a code request writes."""
    with app.extensions["privid.engine"].connect() as connection:
        sessions = connection.execute(text("SELECT count(*) FROM sessions")).scalar_one()
        messages = connection.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one()
    return int(sessions), int(messages)


def test_redis_stopped_under_load_fails_closed_and_recovers(
    app, client, settings, mailbox, sms, own_redis, tmp_path
):
    person, session = register(client, mailbox, sms)
    rp = add_client(app, FIRST_PARTY)
    browser = https_client(app)
    register(browser, mailbox, sms, token_delivery="cookie")
    issued = exchange(client, rp, get_code(browser, rp, scope="openid offline_access")["code"])
    assert issued.status_code == 200, issued.json
    env = privid_env(settings, PUBLIC_URL=settings.public_url, **limits_env())
    with gunicorn(env, tmp_path / "gunicorn.log") as server:
        base = server.base
        key = DpopKey()
        bound = requests.post(
            base + LOGIN,
            json={"identifier": person.email, "password": person.password,
                  "token_delivery": "bearer"},
            headers={"DPoP": key.proof("POST", LOGIN)}, timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        assert bound.status_code == 200 and bound.json()["token_type"] == "DPoP", bound.text
        dpop_token = bound.json()["token"]
        workers = server.worker_pids()

        def sign_in() -> requests.Response:
            body = {"identifier": person.email, "password": person.password,
                    "token_delivery": "bearer"}  # fmt: skip
            return requests.post(base + LOGIN, json=body, timeout=REQUEST_TIMEOUT)

        def sms_code() -> requests.Response:
            # A number nobody has: the answer and the work (an outbox row) are
            # the same as for a real one, without any resend cooldown.
            phone = f"+86137{random.randrange(10**8):08d}"
            return requests.post(base + SMS_CODE, json={"phone": phone}, timeout=REQUEST_TIMEOUT)

        def read_profile() -> requests.Response:
            return requests.get(
                base + ME, headers=bearer(session["token"]), timeout=REQUEST_TIMEOUT
            )

        def read_profile_dpop() -> requests.Response:
            headers = key.headers("GET", ME, token=dpop_token)
            return requests.get(base + ME, headers=headers, timeout=REQUEST_TIMEOUT)

        refreshes = Refreshes(base, rp.basic, issued.json["refresh_token"])
        steps = {"sign-in": sign_in, "sms-code": sms_code, "me": read_profile,
                 "me-dpop": read_profile_dpop, "refresh": refreshes.step}  # fmt: skip
        with Load(steps) as load:
            began = time.monotonic()
            for kind in steps:
                load.wait_for(kind, 3, began)
            stopping = time.monotonic()
            own_redis.stop()
            down_from = time.monotonic() + SETTLE
            time.sleep(SETTLE)
            before = counts(app)
            for kind in steps:
                load.wait_for(kind, 3, down_from)
            assert requests.get(base + "/readyz", timeout=REQUEST_TIMEOUT).status_code == 503
            assert requests.get(base + "/healthz", timeout=REQUEST_TIMEOUT).status_code == 200
            time.sleep(max(0.0, down_from + DOWN_SECONDS - time.monotonic()))
            after = counts(app)
            down_until = time.monotonic()
            own_redis.start()
            up_from = time.monotonic() + SETTLE
            time.sleep(SETTLE)
            for kind in steps:
                load.wait_for(kind, 3, up_from)
            ended = time.monotonic()
        assert not load.errors, load.errors
        assert server.worker_pids() == workers  # the same processes throughout
    assert load.broken() == []  # no 500, no dropped connection

    # Before: everything works.
    for answer in load.between(began, stopping):
        assert answer.status in (200, 202), answer

    # Down: what needs Redis is a 503 problem with Retry-After, and writes nothing.
    down = load.between(down_from, down_until)
    for answer in down:
        if answer.kind in NEED_NO_REDIS:
            assert answer.status == 200, answer
        else:
            assert answer.is_problem(503, "service-unavailable"), answer
            assert answer.retry_after == "5", answer
    assert {a.kind for a in down} == set(steps)
    assert after == before, "a sign-in or a code request wrote while Redis was down"

    # Back: the same processes answer everything again.
    for answer in load.between(up_from, ended):
        assert answer.status in (200, 202), answer
