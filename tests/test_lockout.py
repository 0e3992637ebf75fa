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
    ANDROID_CHROME,
    PASSKEY_AUTH_OPTIONS,
    PASSKEY_AUTH_VERIFY,
    baseline_consent,
    deliver_all,
    enable_totp,
    enrol,
    finish_reset,
    https_client,
    login,
    new_person,
    passkey_sign_in,
    register,
    request_sms_code,
    sms_sign_in,
    start_reset,
    statements_of,
)
from tests.soft_authenticator import SoftAuthenticator, b64url

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
            # Strangers on other networks had their codes sent too: all of them out first.
            deliver_all(app)
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


# -- the per-destination code limit, the account-wide buckets ----------------------


def owner_on_a_new_machine(app, address: str = "100.64.1.1"):
    """The owner on a borrowed laptop: no device cookie, a network of its own."""
    return https_client(app, address)


def fill_code_requests(app, person, networks: int) -> None:
    """Strangers ask for more codes to the owner's phone and email than the
    per-destination limit allows in an hour, each from its own network."""
    for n in range(networks):
        stranger = https_client(app, f"198.51.{n}.9")
        for _ in range(6):
            stranger.post("/api/v1/login/sms/code", json={"phone": person.phone})
            stranger.post("/api/v1/password-reset", json={"identifier": person.email})
            stranger.post("/api/v1/password-reset", json={"identifier": person.phone})


def test_strangers_cannot_use_up_the_owners_code_requests(app, mailbox, sms):
    # The default consent: `security` refused, so no device of the owner is recognised.
    person, _ = register(https_client(app, "192.0.2.50"), mailbox, sms)
    fill_code_requests(app, person, networks=6)

    owner = owner_on_a_new_machine(app)
    asked = {
        "sms code": request_sms_code(owner, person.phone).status_code,
        "reset by email": owner.post(
            "/api/v1/password-reset", json={"identifier": person.email}
        ).status_code,
        "reset by phone": owner.post(
            "/api/v1/password-reset", json={"identifier": person.phone}
        ).status_code,
    }
    assert asked == {"sms code": 202, "reset by email": 202, "reset by phone": 202}


def test_one_network_still_cannot_flood_a_recipient(app, mailbox, sms):
    person, _ = register(https_client(app, "192.0.2.50"), mailbox, sms)
    # Fresh made-up device cookies buy nothing: only a recognised device is a source.
    statuses = []
    for n in range(6):
        stranger = https_client(app, f"198.51.100.{n + 1}")
        stranger.set_cookie("__Host-privid_device", f"made-up-{n}", secure=True)
        statuses.append(request_sms_code(stranger, person.phone).status_code)
    assert statuses == [202] * 5 + [429]


def exhaust_password_guesses(app, person, clock: FrozenClock, networks: int = 20) -> int:
    """Wrong passwords from many networks, each back-off waited out, until the
    account-wide bucket takes no more for the day; and the code requests filled.
    Returns the number of passwords checked and refused."""
    wrong, i = 0, 0
    while i < 3000:
        if i % 25 == 0:
            with app.app_context():
                limiter.reset()  # the per-minute windows pass as the clock does
        attacker = https_client(app, f"198.18.{i % networks}.{i // networks % 250 + 1}")
        i += 1
        answer = login(attacker, person.email, f"wrong-guess-{i}")
        if answer.status_code == 401:
            wrong += 1
        elif answer.status_code == 429:
            wait = int(answer.headers["Retry-After"])
            if wait > 3600:
                break
            clock.advance(seconds=wait)
    with app.app_context():
        limiter.reset()
    fill_code_requests(app, person, networks=5)
    return wrong


def test_a_correct_code_gets_the_owner_in_after_the_password_bucket_is_spent(
    app, runtime, mailbox, sms, clock: FrozenClock
):
    person, _ = register(https_client(app, "192.0.2.50"), mailbox, sms)
    guesses = exhaust_password_guesses(app, person, clock)
    assert guesses <= 100  # NIST SP 800-63B-4 §3.2.2
    owner = owner_on_a_new_machine(app)
    # Password sign-in rests for the day (NIST allows it) ...
    assert login(owner, person.email, person.password).status_code == 429
    # ... but a correct SMS code is never refused because of password guesses.
    deliver_all(app)
    texts = len(sms.to(person.phone))
    started = request_sms_code(owner, person.phone)
    assert started.status_code == 202, started.json
    runtime.dispatcher.drain()
    code = sms.last_code(person.phone, count=texts + 1)
    assert sms_sign_in(owner, started, person.phone, code).status_code == 200

    # Spent again; this time the owner resets the password, which clears it.
    exhaust_password_guesses(app, person, clock)
    owner = owner_on_a_new_machine(app, "100.64.2.2")
    assert login(owner, person.email, person.password).status_code == 429
    deliver_all(app)
    mails = len(mailbox.to(person.email))
    started = start_reset(owner, person.email)
    runtime.dispatcher.drain()
    code = mailbox.last_code(person.email, count=mails + 1)
    assert finish_reset(owner, started, person.email, code, NEW_PASSWORD).status_code == 204
    assert login(owner, person.email, NEW_PASSWORD).status_code == 200


# -- passkeys ------------------------------------------------------------------------


def junk_assertion(client, authenticator: SoftAuthenticator):
    """An assertion naming the owner's credential (its id is no secret) with a
    signature that cannot verify."""
    options = client.post(PASSKEY_AUTH_OPTIONS).json
    answer = authenticator.get(dict(options), sign_count=0)
    answer["response"]["signature"] = b64url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    body = {**answer, "challenge_id": options["challenge_id"], "token_delivery": "bearer"}
    return client.post(PASSKEY_AUTH_VERIFY, json=body)


def test_junk_passkey_assertions_never_refuse_the_genuine_passkey(app, mailbox, sms, clock):
    phone = https_client(app, "192.0.2.60")
    phone.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    consent = baseline_consent(security="granted", device_biometrics="granted")
    _, session = register(phone, mailbox, sms, consent=consent)
    owner_key = SoftAuthenticator()
    enrol(phone, session["token"], owner_key)

    # From one network, junk backs off (that source only) ...
    one = [junk_assertion(https_client(app, "203.0.113.5"), owner_key) for _ in range(12)]
    assert {r.status_code for r in one[:5]} == {401} and one[-1].status_code == 429
    # ... from many, it is refused; nothing of it holds up the owner's signature,
    # not even from the network the junk came from.
    statuses: Counter[int] = Counter()
    for i in range(300):
        if i % 25 == 0:
            with app.app_context():
                limiter.reset()
        answer = junk_assertion(https_client(app, f"198.51.{i % 200}.7"), owner_key)
        statuses[answer.status_code] += 1
        if answer.status_code == 429:
            clock.advance(seconds=int(answer.headers["Retry-After"]))
    assert statuses[200] == 0, statuses
    with app.app_context():
        limiter.reset()
    for address in ("192.0.2.60", "203.0.113.5", "198.51.7.7"):
        owner = https_client(app, address)
        owner.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
        assert passkey_sign_in(owner, owner_key)[0].status_code == 200, address


# -- the second factor ---------------------------------------------------------------


def second_factor(client, person, code: str):
    first = login(client, person.email, person.password)
    assert first.status_code == 202, first.json
    body = {"ticket": first.json["ticket"], "totp_code": code}
    return client.post("/api/v1/login/second-factor", json=body)


def guess_second_factor(app, person, totp, clock: FrozenClock) -> int:
    """Someone who has the password guesses TOTP codes from many networks, each
    back-off waited out, until the account takes no more guesses for the day.
    Returns the number of codes checked and refused."""
    wrong, i = 0, 0
    while i < 3000:
        if i % 10 == 0:
            with app.app_context():
                limiter.reset()
        attacker = https_client(app, f"203.0.{i % 40}.9")
        i += 1
        answer = second_factor(attacker, person, "000000" if totp.now() != "000000" else "111111")
        if answer.status_code == 401:
            wrong += 1
        elif answer.status_code == 429:
            wait = int(answer.headers["Retry-After"])
            if wait > 3600:
                break
            clock.advance(seconds=wait)
    with app.app_context():
        limiter.reset()
    clock.advance(seconds=30)  # the next TOTP step, so the owner's code is fresh
    return wrong


def test_second_factor_guesses_are_bounded_and_never_lock_the_owner(
    app, runtime, mailbox, sms, clock: FrozenClock
):
    clock.advance(seconds=10)  # TOTP_START: away from a step boundary
    browser = https_client(app, "192.0.2.70")
    person, session = register(browser, mailbox, sms, consent=baseline_consent(security="granted"))
    totp, _ = enable_totp(browser, session, at=clock.now())

    assert guess_second_factor(app, person, totp, clock) <= 100  # bounded, for 6 digits
    laptop = owner_on_a_new_machine(app)
    assert second_factor(laptop, person, totp.at(clock.now())).status_code == 429
    # The owner's recognised browser is not held up by the account-wide count.
    assert second_factor(browser, person, totp.at(clock.now())).status_code == 200

    # Spent again; elsewhere the owner resets the password, which ends it.
    guess_second_factor(app, person, totp, clock)
    assert second_factor(laptop, person, totp.at(clock.now())).status_code == 429
    deliver_all(app)
    mails = len(mailbox.to(person.email))
    started = start_reset(laptop, person.email)
    runtime.dispatcher.drain()
    code = mailbox.last_code(person.email, count=mails + 1)
    assert finish_reset(laptop, started, person.email, code, NEW_PASSWORD).status_code == 204
    first = login(laptop, person.email, NEW_PASSWORD)
    assert first.status_code == 202, first.json
    body = {"ticket": first.json["ticket"], "totp_code": totp.at(clock.now())}
    assert laptop.post("/api/v1/login/second-factor", json=body).status_code == 200


# -- a device cookie tells nothing about who is registered (enumeration by timing) --


@pytest.mark.parametrize(
    ("path", "field", "kind", "status"),
    [
        ("/api/v1/login/sms/code", "phone", "phone", 202),
        ("/api/v1/password-reset", "identifier", "phone", 202),
        ("/api/v1/password-reset", "identifier", "email", 202),
        ("/api/v1/login/password", "identifier", "email", 401),
    ],
)
def test_a_made_up_device_cookie_costs_the_same_work_registered_or_not(
    app, mailbox, sms, path, field, kind, status
):
    person, _ = register(https_client(app, "192.0.2.80"), mailbox, sms)
    stranger = new_person()

    def work(who) -> list[str]:
        # A fresh client each time, so no cookie the service set comes back.
        prober = https_client(app, "198.51.100.80")
        prober.set_cookie("__Host-privid_device", "made-up-by-the-prober", secure=True)
        body = {field: getattr(who, kind)}
        if path.endswith("/password"):
            body["password"] = "not-the-password-at-all"
        answers = []
        statements = statements_of(app, lambda: answers.append(prober.post(path, json=body)))
        assert answers[0].status_code == status, answers[0].json
        return statements

    work(new_person())  # warm: first-request work is not what we compare
    # The same statements run whether or not the address has an account,
    # the device lookups a cookie causes among them.
    registered, unregistered = work(person), work(stranger)
    assert device_lookups(registered) != []
    assert registered == unregistered


def device_lookups(statements: list[str]) -> list[str]:
    return [s for s in statements if "FROM devices" in s]
