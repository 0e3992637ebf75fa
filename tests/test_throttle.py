"""Per-account back-off: parallel guesses cannot get around it, and the owner
is never locked out for good."""

from __future__ import annotations

import threading

import pytest

from app.clock import FrozenClock
from tests.helpers import login, register

FREE_ATTEMPTS = 5


@pytest.fixture
def settings_overrides():
    # flask-limiter's own per-account limit is lifted so only the back-off acts.
    return {
        "login_free_attempts": FREE_ATTEMPTS,
        "login_max_delay_seconds": 900,
        "limit_login_per_account": "1000/minute",
        "limit_login_per_ip": "1000/minute",
    }


def test_parallel_wrong_passwords_run_at_most_the_allowed_argon2_checks(
    app, client, mailbox, sms, runtime
):
    person, _ = register(client, mailbox, sms)
    before = runtime.passwords.verifications
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(24)

    def guess(n: int) -> None:
        own = app.test_client()
        own.environ_base["wsgi.url_scheme"] = "https"
        barrier.wait(timeout=30)
        status = login(own, person.email, f"wrong-guess-{n}-xyz").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    checks = runtime.passwords.verifications - before
    assert len(statuses) == 24
    assert set(statuses) <= {401, 429}
    # The first free attempts and the one that starts the back-off; no more.
    assert checks <= FREE_ATTEMPTS + 1, checks
    assert statuses.count(401) == checks
    # Now even the right password waits for the back-off to pass.
    blocked = login(client, person.email, person.password)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


def test_back_off_is_capped_so_the_owner_always_gets_back_in(
    client, mailbox, sms, clock: FrozenClock
):
    person, _ = register(client, mailbox, sms)
    waits = []
    for n in range(40):
        response = login(client, person.phone, f"attacker-guess-{n}-abc")
        if response.status_code == 429:
            wait = int(response.headers["Retry-After"])
            waits.append(wait)
            clock.advance(seconds=wait)
    assert waits, "the back-off never started"
    assert max(waits) <= 900 + 1
    # After the longest wait the real owner signs in, and the count starts over.
    clock.advance(seconds=901)
    assert login(client, person.phone, person.password).status_code == 200
    assert login(client, person.phone, "one-more-typo-123").status_code == 401
    assert login(client, person.phone, person.password).status_code == 200


def test_sms_code_sign_in_lifts_the_back_off(client, mailbox, sms, clock: FrozenClock):
    person, _ = register(client, mailbox, sms)
    for n in range(FREE_ATTEMPTS + 1):
        login(client, person.email, f"typo-number-{n}-zz")
    assert login(client, person.email, person.password).status_code == 429
    client.post("/api/v1/login/sms/code", json={"phone": person.phone})
    code = sms.last_code(person.phone, count=2)
    signed_in = client.post(
        "/api/v1/login/sms", json={"phone": person.phone, "code": code, "token_delivery": "bearer"}
    )
    assert signed_in.status_code == 200
    assert login(client, person.email, person.password).status_code == 200
