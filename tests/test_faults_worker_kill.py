"""A gunicorn worker killed (SIGKILL) while requests are in flight:
registrations, sign-ins and consent changes. The requests it held are cut off
without an answer; everything answered as done is in the database, nothing
is half written (a transaction either committed whole or not at all), and
the master starts a new worker that serves the requests that follow."""

from __future__ import annotations

import random
import time

import pytest
import requests

from tests.helpers import (
    HIGH_LIMITS,
    bearer,
    https_client,
    privid_env,
    register,
    row_count,
    session_user,
)
from tests.invariants import assert_nothing_half_written
from tests.load import REQUEST_TIMEOUT, Load
from tests.load_steps import ConsentToggles, Registrations
from tests.own_servers import gunicorn

# Kills until one of them cut off a request that writes (usually the first:
# each kill aims at a worker caught computing, which on this load is mostly a
# password hash, a sign-in's or a registration's; a fast machine leaves the
# workers idle between requests often enough that a kill at random can miss).
MAX_KILLS = 10
WRITES = {"registration", "consent", "sign-in"}
SETTLE = 0.3


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(HIGH_LIMITS)


def test_a_worker_killed_mid_request_loses_nothing_committed(
    app, client, settings, mailbox, sms, tmp_path
):
    person, session = register(client, mailbox, sms)
    _, toggler = register(https_client(app), mailbox, sms)
    toggler_id = session_user(app, toggler["session_id"])
    users_before = row_count(app, "users")
    sessions_before = row_count(app, "sessions")
    records_before = row_count(app, "consent_records", "user_id = :u", u=toggler_id)

    env = privid_env(
        settings, PUBLIC_URL=settings.public_url,
        **{name.upper(): value for name, value in HIGH_LIMITS.items()},
    )  # fmt: skip
    with gunicorn(env, tmp_path / "gunicorn.log") as server:
        base = server.base
        registrations = Registrations(base, mailbox, sms)
        toggles = ConsentToggles(base, toggler["token"])

        def sign_in() -> requests.Response:
            body = {"identifier": person.email, "password": person.password,
                    "token_delivery": "bearer"}  # fmt: skip
            return requests.post(
                base + "/api/v1/login/password", json=body, timeout=REQUEST_TIMEOUT
            )

        def read_profile() -> requests.Response:
            headers = bearer(session["token"])
            return requests.get(base + "/api/v1/me", headers=headers, timeout=REQUEST_TIMEOUT)

        steps = {"registration": registrations.step, "consent": toggles.step,
                 "sign-in": sign_in, "me": read_profile}  # fmt: skip
        replacements: set[int] = set()
        with Load(steps) as load:
            began = time.monotonic()
            for kind in steps:
                load.wait_for(kind, 2, began)
            for _ in range(MAX_KILLS):
                workers = server.worker_pids()
                victim = server.computing_worker(within=1.0) or random.choice(sorted(workers))
                server.kill_worker(victim)
                now_serving = server.wait_for_workers(2, not_among={victim})
                replacements |= now_serving - workers
                if any(a.status is None and a.kind in WRITES for a in load.answers):
                    break
            server.wait_until_serving(replacements)
            recovered_from = time.monotonic() + SETTLE
            time.sleep(SETTLE)
            for kind in steps:
                load.wait_for(kind, 3, recovered_from, timeout=20)
            ended = time.monotonic()
        assert not load.errors, load.errors

    cut = [a for a in load.answers if a.status is None]
    assert {a.kind for a in cut} & WRITES, f"no kill cut off a write (cut: {cut})"
    assert [a for a in load.answers if a.status is not None and a.status >= 500] == []
    for answer in load.between(recovered_from, ended):
        assert answer.status in (200, 201, 202), answer

    # Everything answered as done is there; what was cut off is there whole or not at all.
    new_users = row_count(app, "users") - users_before
    assert registrations.created <= new_users <= registrations.created + registrations.maybe
    signed_in = sum(1 for a in load.answers if a.kind == "sign-in" and a.status == 200)
    cut_sign_ins = sum(1 for a in cut if a.kind == "sign-in")
    new_sessions = row_count(app, "sessions") - sessions_before
    assert signed_in + registrations.created <= new_sessions
    assert new_sessions <= signed_in + cut_sign_ins + registrations.created + registrations.maybe
    new_records = row_count(app, "consent_records", "user_id = :u", u=toggler_id) - records_before
    assert toggles.recorded <= new_records <= toggles.recorded + toggles.maybe
    assert_nothing_half_written(app)
