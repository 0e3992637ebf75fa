"""Nobody can lock the owner out (issue 8, item 2; NIST SP 800-63B-4 §3.2.2).

An attacker who knows the owner's email and phone sends ten wrong passwords a
minute for ten minutes, with junk SMS sign-in and reset codes alongside and
enough code requests to fill the per-destination limits, from one address or
from twenty networks. The owner still signs in from their
recognised device (even behind the attacker's own address), by SMS code, and
by password reset; and the attacker gets no more password checks than the
account-wide back-off allows."""

from __future__ import annotations

from collections import Counter

import pytest

from app.clock import FrozenClock
from app.extensions import limiter
from tests.helpers import (
    baseline_consent,
    finish_reset,
    https_client,
    login,
    register,
    request_sms_code,
    sms_sign_in,
    start_reset,
)

OWNER_ADDRESS = "192.0.2.10"
NEW_PASSWORD = "quiet-harbor-lantern-58"


@pytest.fixture
def clock(frozen_clock: FrozenClock) -> FrozenClock:
    return frozen_clock


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Production limits; addresses arrive in X-Forwarded-For from one proxy.
    return {"trusted_proxy_count": 1}


def attacker_addresses(count: int) -> list[str]:
    # One address per /24 network: the strongest spread for per-source counting.
    return [f"203.0.{n}.77" for n in range(count)]


def attack_one_minute(app, attackers, person, minute: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for a, attacker in enumerate(attackers):
        for n in range(10):
            identifier = person.email if n % 2 else person.phone
            guess = login(attacker, identifier, f"guess-{minute}-{a}-{n}-wrong")
            statuses[guess.status_code] += 1
            # Junk codes for the owner's phone and email, in every shape the
            # API has seen: without a flow handle and with a made-up one.
            sms = {"phone": person.phone, "code": f"{n:06d}", "token_delivery": "bearer"}
            attacker.post("/api/v1/login/sms", json=sms)
            attacker.post("/api/v1/login/sms", json={**sms, "flow": f"made-up-{n}"})
            reset = {"identifier": person.email, "code": f"{n:06d}", "new_password": NEW_PASSWORD}
            attacker.post("/api/v1/password-reset/confirm", json=reset)
            attacker.post("/api/v1/password-reset/confirm", json={**reset, "flow": f"x-{n}"})
        for _ in range(6):  # more than the per-destination limit allows in an hour
            attacker.post("/api/v1/login/sms/code", json={"phone": person.phone})
            attacker.post("/api/v1/password-reset", json={"identifier": person.email})
    return statuses


@pytest.mark.parametrize("networks", [1, 20], ids=["one-address", "twenty-networks"])
def test_an_attacker_cannot_lock_the_owner_out(
    app, runtime, mailbox, sms, clock: FrozenClock, networks: int
):
    owner = https_client(app, OWNER_ADDRESS)
    person, _ = register(owner, mailbox, sms, consent=baseline_consent(security="granted"))
    assert owner.get_cookie("__Host-privid_device") is not None  # a recognised browser
    # The owner's phone: signed in once, so it is a recognised device.
    phone_app = https_client(app, OWNER_ADDRESS)
    assert login(phone_app, person.email, person.password).status_code == 200
    attackers = [https_client(app, address) for address in attacker_addresses(networks)]
    checks_before = runtime.passwords.verifications

    outcomes: Counter[int] = Counter()
    for minute in range(10):
        with app.app_context():
            limiter.reset()  # a minute passes for flask-limiter's windows too
        outcomes += attack_one_minute(app, attackers, person, minute)
        if minute == 8:
            # Under attack, the owner asks (from their browser) for an SMS code
            # and a reset code, then types them after another minute of attack.
            runtime.dispatcher.drain()
            mails, texts = len(mailbox.to(person.email)), len(sms.to(person.phone))
            sms_started = request_sms_code(owner, person.phone)
            assert sms_started.status_code == 202, sms_started.json
            reset_started = start_reset(owner, person.email)
            runtime.dispatcher.drain()
            sms_code = sms.last_code(person.phone, count=texts + 1)
            reset_code = mailbox.last_code(person.email, count=mails + 1)
        clock.advance(seconds=60)
    guesses_checked = runtime.passwords.verifications - checks_before

    # The owner's phone, even behind the attacker's own (NAT) address.
    phone_app.environ_base["HTTP_X_FORWARDED_FOR"] = attacker_addresses(networks)[0]
    results = {"recognised device": login(phone_app, person.email, person.password).status_code}
    results["sms code"] = sms_sign_in(owner, sms_started, person.phone, sms_code).status_code
    reset = finish_reset(owner, reset_started, person.email, reset_code, NEW_PASSWORD)
    results["reset"] = reset.status_code
    results["new password"] = login(owner, person.email, NEW_PASSWORD).status_code
    assert results == {"recognised device": 200, "sms code": 200, "reset": 204,
                       "new password": 200}, (results, outcomes)  # fmt: skip

    # NIST SP 800-63B-4 §3.2.2: at most 100 failed attempts on one account.
    assert outcomes[401] == guesses_checked
    assert guesses_checked <= 100, outcomes
