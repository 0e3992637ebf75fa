"""Password back-off per (identifier, source) and account-wide: parallel guesses
cannot get around it, one network's guesses do not hold up another, and the
owner is never locked out for good."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.clock import FrozenClock
from tests.helpers import https_client, login, register, request_sms_code, sms_sign_in

FREE_ATTEMPTS = 5
ACCOUNT_FREE_ATTEMPTS = 12
MAX_FAILURES = 30


@pytest.fixture
def settings_overrides():
    # flask-limiter's own per-account limit is lifted so only the back-off acts.
    return {
        "login_free_attempts": FREE_ATTEMPTS,
        "login_account_free_attempts": ACCOUNT_FREE_ATTEMPTS,
        "login_account_max_failures": MAX_FAILURES,
        "login_max_delay_seconds": 900,
        "trusted_proxy_count": 1,
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


def test_sms_code_sign_in_lifts_the_back_off(app, client, mailbox, sms, clock: FrozenClock):
    person, _ = register(client, mailbox, sms)
    for n in range(FREE_ATTEMPTS + 1):
        login(client, person.email, f"typo-number-{n}-zz")
    assert login(client, person.email, person.password).status_code == 429
    started = request_sms_code(client, person.phone)
    signed_in = sms_sign_in(client, started, person.phone, sms.last_code(person.phone, count=2))
    assert signed_in.status_code == 200
    assert login(client, person.email, person.password).status_code == 200


def test_guesses_from_one_network_do_not_hold_up_another(app, mailbox, sms, clock: FrozenClock):
    person, _ = register(https_client(app), mailbox, sms)
    attacker = https_client(app, "198.51.100.9")
    for n in range(FREE_ATTEMPTS + 3):
        login(attacker, person.email, f"guess-{n}-abcdef")
    assert login(attacker, person.email, person.password).status_code == 429
    # The same /24 is the same source; another network is not held up.
    neighbour = https_client(app, "198.51.100.200")
    assert login(neighbour, person.email, person.password).status_code == 429
    owner = https_client(app, "192.0.2.44")
    assert login(owner, person.email, person.password).status_code == 200


def test_guesses_spread_over_networks_meet_the_account_wide_back_off(
    app, mailbox, sms, clock: FrozenClock
):
    person, _ = register(https_client(app), mailbox, sms)
    statuses = [
        login(https_client(app, f"198.51.{n}.9"), person.phone, f"guess-{n}-abcdef").status_code
        for n in range(ACCOUNT_FREE_ATTEMPTS + 3)
    ]
    # Each network is within its own free attempts; the account-wide bucket is not.
    assert statuses[:ACCOUNT_FREE_ATTEMPTS] == [401] * ACCOUNT_FREE_ATTEMPTS
    assert set(statuses[ACCOUNT_FREE_ATTEMPTS:]) == {429}
    # It holds the right password from a new network too, until the wait is over...
    fresh = https_client(app, "192.0.2.44")
    refused = login(fresh, person.phone, person.password)
    assert refused.status_code == 429
    clock.advance(seconds=int(refused.headers["Retry-After"]))
    assert login(fresh, person.phone, person.password).status_code == 200
    # ...and it counts per identifier typed: the email was not touched.
    assert (
        login(https_client(app, "192.0.2.45"), person.email, "wrong-one-abcdef").status_code == 401
    )


def test_a_day_of_distributed_guessing_meets_a_hard_cap_and_a_code_still_gets_in(
    app, mailbox, sms, clock: FrozenClock
):
    person, _ = register(https_client(app), mailbox, sms)
    start, checked, n = clock.now(), 0, 0
    # The attacker comes back the moment each wait is over, from ever new networks.
    while clock.now() - start < timedelta(hours=23):
        guess = login(https_client(app, f"198.51.{n % 250}.9"), person.phone, f"guess-{n}-xyz")
        n += 1
        if guess.status_code == 401:
            checked += 1
            continue
        assert guess.status_code == 429
        wait = int(guess.headers["Retry-After"])
        if wait > 20 * 3600:
            break  # the hard stop: nothing more until tomorrow
        clock.advance(seconds=wait)
    assert checked == MAX_FAILURES
    assert clock.now() - start < timedelta(hours=23)
    # Password guesses from networks are over for the day; the owner's code is not.
    owner = https_client(app, "192.0.2.44")
    assert login(owner, person.phone, person.password).status_code == 429
    started = request_sms_code(owner, person.phone)
    code = sms.last_code(person.phone, count=2)
    assert sms_sign_in(owner, started, person.phone, code).status_code == 200
    assert login(owner, person.phone, person.password).status_code == 200


def test_cancelling_the_account_removes_its_failure_counts(app, mailbox, sms, clock: FrozenClock):
    person, session = register(https_client(app), mailbox, sms)
    for n, address in enumerate(["198.51.100.9", "203.0.113.9"]):
        login(https_client(app, address), person.email, f"guess-{n}-abcdef")
        login(https_client(app, address), person.phone, f"guess-{n}-abcdef")
    with app.extensions["privid.engine"].connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM login_throttles")).scalar() == 6
    cancelled = https_client(app).post(
        "/api/v1/me/cancellation",
        json={"confirm": "cancel my account"},
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert cancelled.status_code == 200, cancelled.json
    with app.extensions["privid.engine"].connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM login_throttles")).scalar() == 0
