"""The HTTPS adapter against a fake provider on 127.0.0.1: signed requests,
checked answers, retries only where they can help, one idempotency key per
attempt, and a circuit breaker that fails fast and recovers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest

from tests.verification_helpers import ANSWER_KEY, KEY_ID, LIVENESS_PASS, REQUEST_KEY, FakeProvider
from verification.documents import DocumentType, parse
from verification.http_provider import HttpProvider, HttpProviderConfig
from verification.provider import (
    Level,
    Person,
    ProviderAnswerRejected,
    ProviderError,
    ProviderUnavailable,
)

NUMBER = "11010519491231002X"
ZHANG = Person("张三", parse(DocumentType.RESIDENT_ID_CARD, NUMBER, date(2026, 11, 30)))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def provider_state(fake: FakeProvider):
    fake.reset()
    fake.state.identities.add(("张三", "cn_resident_id_card", NUMBER))
    return fake.state


def adapter(fake: FakeProvider, **overrides: object) -> HttpProvider:
    values: dict[str, object] = {
        "name": "fake",
        "base_url": fake.url,
        "key_id": KEY_ID,
        "request_key": REQUEST_KEY,
        "answer_key": ANSWER_KEY,
        "timeout_seconds": 0.5,
        "retries": 2,
        "backoff_seconds": 0.01,
        "breaker_fail_max": 3,
        "breaker_reset_seconds": 0.5,
    }
    values.update(overrides)
    return HttpProvider(HttpProviderConfig(**values))  # type: ignore[arg-type]


def test_a_match_reaches_l1_and_with_liveness_l2(fake, provider_state):
    plain = adapter(fake).verify(ZHANG, "attempt-1")
    assert plain.name_and_number_match and plain.level is Level.L1
    assert plain.liveness_passed is None
    live = Person(ZHANG.full_name, ZHANG.document, LIVENESS_PASS)
    assert adapter(fake).verify(live, "attempt-2").level is Level.L2
    failed = Person(ZHANG.full_name, ZHANG.document, "fake-liveness-no")
    outcome = adapter(fake).verify(failed, "attempt-3")
    assert outcome.level is Level.L1 and outcome.liveness_passed is False
    assert all(r["signed"] and r["key_id"] == KEY_ID for r in provider_state.requests)


def test_a_mismatch_reaches_no_level(fake, provider_state):
    other = Person("李四", ZHANG.document)
    outcome = adapter(fake).verify(other, "attempt-1")
    assert not outcome.name_and_number_match and outcome.level is None


def test_a_wrong_request_key_is_refused_by_the_provider_and_not_retried(fake, provider_state):
    with pytest.raises(ProviderError) as caught:
        adapter(fake, request_key=b"x" * 32).verify(ZHANG, "attempt-1")
    assert not isinstance(caught.value, ProviderUnavailable)
    assert len(provider_state.requests) == 1


def test_500s_are_retried_with_the_same_idempotency_key(fake, provider_state):
    provider_state.mode, provider_state.failures_left = "500", 2
    outcome = adapter(fake).verify(ZHANG, "attempt-42")
    assert outcome.level is Level.L1
    assert [r["idempotency_key"] for r in provider_state.requests] == ["attempt-42"] * 3


def test_retries_are_bounded(fake, provider_state):
    provider_state.mode, provider_state.failures_left = "500", 10
    with pytest.raises(ProviderUnavailable):
        adapter(fake, retries=1).verify(ZHANG, "attempt-1")
    assert len(provider_state.requests) == 2


def test_a_slow_answer_times_out_and_is_retried(fake, provider_state):
    provider_state.mode, provider_state.slow_seconds = "slow", 2.0
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        adapter(fake, timeout_seconds=0.2, retries=1).verify(ZHANG, "attempt-1")
    assert time.monotonic() - started < 1.8  # not the provider's 2 s even once
    assert len(provider_state.requests) == 2


def test_malformed_json_is_rejected_without_retry(fake, provider_state):
    provider_state.mode = "malformed"
    with pytest.raises(ProviderAnswerRejected):
        adapter(fake).verify(ZHANG, "attempt-1")
    assert len(provider_state.requests) == 1


def test_a_bad_answer_signature_is_rejected(fake, provider_state):
    provider_state.mode = "bad-signature"
    with pytest.raises(ProviderAnswerRejected, match="signature"):
        adapter(fake).verify(ZHANG, "attempt-1")
    # The answer was a match: an unsigned "yes" must not count.
    with pytest.raises(ProviderAnswerRejected):
        adapter(fake, answer_key=b"y" * 32).verify(ZHANG, "attempt-2")


def test_an_outage_trips_the_breaker_which_fails_fast_then_recovers(fake, provider_state):
    provider = adapter(fake, retries=0, breaker_fail_max=3, breaker_reset_seconds=0.5)
    provider_state.mode = "down"
    for attempt in range(3):
        with pytest.raises(ProviderUnavailable):
            provider.verify(ZHANG, f"down-{attempt}")
    reached = len(provider_state.requests)
    assert reached == 3
    # Open: the provider is not even asked.
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        provider.verify(ZHANG, "while-open")
    assert len(provider_state.requests) == reached
    # Back up; after the reset time one trial call goes through and closes it.
    provider_state.mode = "ok"
    time.sleep(0.6)
    assert provider.verify(ZHANG, "after").level is Level.L1
    assert provider.verify(ZHANG, "after-2").level is Level.L1
    assert provider.breaker.current_state == "closed"


def test_untrusted_answers_do_not_trip_the_breaker(fake, provider_state):
    provider = adapter(fake, breaker_fail_max=2)
    provider_state.mode = "bad-signature"
    for attempt in range(4):
        with pytest.raises(ProviderAnswerRejected):
            provider.verify(ZHANG, f"a-{attempt}")
    assert provider.breaker.current_state == "closed"


def test_plain_http_is_refused_off_loopback():
    with pytest.raises(ValueError, match="https"):
        HttpProvider(
            HttpProviderConfig("x", "http://provider.example", KEY_ID, REQUEST_KEY, ANSWER_KEY)
        )


def test_the_person_never_shows_in_a_repr():
    assert NUMBER not in repr(ZHANG) and "张三" not in repr(ZHANG)
