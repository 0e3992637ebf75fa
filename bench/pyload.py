"""The load generator for sign-ins wrk's Lua cannot do, run by bench/load.py
in a process of its own:

    python -m bench.pyload passkey_sign_in|sms_sign_in --base URL --spec FILE
        --threads N --seconds S --warm-up W

- passkey_sign_in: each thread holds its own passkeys (ES256 keys enrolled
  beforehand, bench/seed.py) in a software authenticator
  (tests/soft_authenticator.py) and signs in username-less: options, a real
  signature over the challenge, verify. A passkey is used by one thread only,
  so its signature counter only goes up.
- sms_sign_in: each thread owns its own phones: it asks for a code, reads it
  from the SMS gateway the `privid worker` delivered it to
  (tests/fakes.py, `SmsGateway`), and signs in with it.

One sign-in is probed first (else "SKIPPED <why>" and exit); then warm-up;
then "MEASURING"; then S seconds whose sign-ins count (started and finished
inside them); then the summary line wrk's script prints (bench/load.lua), a
sign-in counted as one answer and its latency that of the whole sign-in.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.soft_authenticator import KeyPair, SoftAuthenticator, StoredCredential, from_b64url

TIMEOUT = 5.0
API = "/api/v1"


class Refused(Exception):
    """An answer other than the one a good sign-in gets."""


def expect(answer: requests.Response, status: int, text: str) -> dict[str, Any]:
    if answer.status_code != status or text not in answer.text:
        try:
            reason = answer.json().get("title") or answer.json().get("error")
        except ValueError:
            reason = None
        raise Refused(f"{answer.request.path_url} answered {answer.status_code} {reason or ''}")
    body: dict[str, Any] = answer.json()
    return body


@dataclass
class PasskeyUser:
    """Signs in with the passkeys it holds, in turn."""

    base: str
    authenticators: list[SoftAuthenticator]
    turn: int = 0

    def sign_in(self, http: requests.Session) -> None:
        authenticator = self.authenticators[self.turn % len(self.authenticators)]
        self.turn += 1
        options = expect(
            http.post(f"{self.base}{API}/webauthn/authentication/options", timeout=TIMEOUT),
            200,
            "challenge",
        )
        answer = authenticator.get(options)
        expect(
            http.post(
                f"{self.base}{API}/webauthn/authentication/verify",
                json={
                    **answer,
                    "challenge_id": options["challenge_id"],
                    "token_delivery": "bearer",
                },
                timeout=TIMEOUT,
            ),
            200,
            '"token"',
        )


@dataclass
class SmsUser:
    """Signs in with codes sent to its phones, in turn."""

    base: str
    gateway: str
    phones: list[str]
    turn: int = 0

    def sign_in(self, http: requests.Session) -> None:
        phone = self.phones[self.turn % len(self.phones)]
        self.turn += 1
        flow = expect(
            http.post(f"{self.base}{API}/login/sms/code", json={"phone": phone}, timeout=TIMEOUT),
            202,
            "flow",
        )["flow"]
        code = expect(
            http.get(f"{self.gateway}/codes", params={"to": phone}, timeout=TIMEOUT + 10),
            200,
            "code",
        )["code"]
        expect(
            http.post(
                f"{self.base}{API}/login/sms",
                json={"phone": phone, "flow": flow, "code": code, "token_delivery": "bearer"},
                timeout=TIMEOUT,
            ),
            200,
            '"token"',
        )


def authenticator(held: dict[str, Any], origin: str) -> SoftAuthenticator:
    """A software authenticator holding one passkey enrolled by bench/seed.py."""
    key = load_pem_private_key(held["key"].encode(), password=None)
    stored = StoredCredential(
        from_b64url(held["id"]), KeyPair("ES256", key), from_b64url(held["user"]), held["rp_id"]
    )
    stored.sign_count = held["sign_count"]
    return SoftAuthenticator(origin=origin, credentials=[stored])


def users(scenario: str, base: str, spec: dict[str, Any], threads: int) -> list[Any]:
    """One user per thread, each with its own share of the spec."""
    if scenario == "passkey_sign_in":
        held = [authenticator(c, spec["origin"]) for c in spec["credentials"]]
        if len(held) < threads:
            raise SystemExit("fewer passkeys than threads: one would be used by two")
        return [PasskeyUser(base, held[n::threads]) for n in range(threads)]
    if scenario == "sms_sign_in":
        phones = spec["phones"]
        if len(phones) < threads:
            raise SystemExit("fewer phones than threads: one would get two codes at once")
        return [SmsUser(base, spec["gateway"], phones[n::threads]) for n in range(threads)]
    raise SystemExit(f"unknown scenario {scenario}")


@dataclass
class Tally:
    # (started, finished, outcome): outcome "ok", "refused", "connect" or "timeout".
    done: list[tuple[float, float, str]]
    lock: threading.Lock


def run(user: Any, stop: threading.Event, tally: Tally) -> None:
    http = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            user.sign_in(http)
            outcome = "ok"
        except Refused:
            outcome = "refused"
        except requests.Timeout:
            outcome = "timeout"
        except requests.RequestException:
            outcome = "connect"
        with tally.lock:
            tally.done.append((started, time.perf_counter(), outcome))


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


def summary(done: list[tuple[float, float, str]], began: float, ended: float) -> dict[str, Any]:
    """What bench/load.lua's done() prints, for the sign-ins inside [began, ended]."""
    inside = [(s, f, o) for s, f, o in done if s >= began and f <= ended]
    latencies = sorted(1e6 * (f - s) for s, f, o in inside if o == "ok")
    count: Callable[[str], int] = lambda outcome: sum(1 for *_, o in inside if o == outcome)  # noqa: E731
    return {
        "duration_us": int(1e6 * (ended - began)),
        "requests": len(inside),
        "ok": count("ok"),
        "refused": count("refused"),
        "dropped": 0,
        "connect": count("connect"),
        "read": 0,
        "write": 0,
        "status": count("refused"),
        "timeout": count("timeout"),
        **{f"p{p}_us": int(percentile(latencies, p / 100)) for p in (50, 95, 99)},
        "max_us": int(latencies[-1]) if latencies else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--base", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warm-up", type=float, default=1)
    args = parser.parse_args()
    with open(args.spec) as spec_file:
        spec = json.load(spec_file)
    people = users(args.scenario, args.base, spec, args.threads)
    try:
        people[0].sign_in(requests.Session())
    except (Refused, requests.RequestException) as refused:
        print(f"SKIPPED a probe sign-in failed: {refused}", flush=True)
        return
    tally = Tally([], threading.Lock())
    stop = threading.Event()
    workers = [threading.Thread(target=run, args=(p, stop, tally)) for p in people]
    for worker in workers:
        worker.start()
    time.sleep(args.warm_up)
    print("MEASURING", flush=True)
    began = time.perf_counter()
    time.sleep(args.seconds)
    ended = time.perf_counter()
    stop.set()
    for worker in workers:
        worker.join(timeout=3 * TIMEOUT + 10)
    with tally.lock:
        line = summary(list(tally.done), began, ended)
    sys.stdout.write(f"WRK-JSON {json.dumps(line)}\n")


if __name__ == "__main__":
    main()
