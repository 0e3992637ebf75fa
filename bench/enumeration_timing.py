"""Does the response time tell whether an address has an account?

    .venv/bin/python -m bench.enumeration_timing [--rounds 300]

Runs the service as in production: gunicorn (one sync worker, so every sample
meets the same process) with the production argon2 parameters, and a separate
`privid worker` sending the outbox to a real SMTP server and SMS gateway on
loopback (the test suite's, tests/fakes.py). SQLite by default; PostgreSQL with
PRIVID_BENCH_DATABASE_URL. For each endpoint it interleaves requests about a
registered and an unregistered address (the order alternates each round, and
each round uses fresh addresses on both sides, so neither side is a repeat),
and reports the AUC: the chance that a registered sample is slower than an
unregistered one (0.5: the time says nothing). `separation` is max(AUC,
1 - AUC); it must stay under 0.6. Every endpoint is measured twice, interleaved:
as a browser without a device cookie, and with a made-up one (a cookie makes
the service look for a recognised device; it must look the same way whether
or not the address has an account). Writes bench/results/enumeration_timing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import requests

from app.migrate import upgrade
from bench.common import bench_settings, gunicorn, privid_worker, register_people
from tests.fakes import SmsGateway, SmtpServer

PASSWORD = "velvet-orbit-canyon-42"
RESULTS = Path(__file__).resolve().parent / "results"
LIMIT = 0.6

Body = dict[str, str]
# name -> (path, body for the registered address, body for an unregistered one)
Pair = tuple[str, Body, Body]


def auc(registered: list[float], unregistered: list[float]) -> float:
    """Mann-Whitney U / (n1 * n2): P(registered > unregistered), ties counted half."""
    wins = 0.0
    for r in registered:
        for u in unregistered:
            wins += 1.0 if r > u else 0.5 if r == u else 0.0
    return wins / (len(registered) * len(unregistered))


def pairs_for(n: int, run: int, email: str, phone: str) -> dict[str, Pair]:
    """Round ``n``'s requests; ``run`` keeps this run's unregistered addresses new."""
    tag = f"{run:04d}{n:04d}"
    fresh_email = f"nobody{tag}@example.org"
    return {
        "sms_code_by_phone": (
            "/api/v1/login/sms/code", {"phone": phone}, {"phone": f"+86135{tag}"}
        ),
        "password_reset_by_phone": (
            "/api/v1/password-reset", {"identifier": phone}, {"identifier": f"+86137{tag}"}
        ),
        "password_reset_by_email": (
            "/api/v1/password-reset", {"identifier": email}, {"identifier": fresh_email}
        ),
        "registration_start": (
            "/api/v1/registration",
            {"email": email, "phone": f"+86136{tag}", "full_name": "X", "password": PASSWORD},
            {"email": f"fresh{tag}@example.org", "phone": f"+86138{tag}", "full_name": "X",
             "password": PASSWORD},
        ),
        "failed_sign_in": (
            "/api/v1/login/password",
            {"identifier": email, "password": f"wrong-{n}-password"},
            {"identifier": fresh_email, "password": f"wrong-{n}-password"},
        ),
    }  # fmt: skip


# variant -> the Cookie header sent (none, or a device cookie nobody was given)
VARIANTS = {"no_cookie": None, "device_cookie": "__Host-privid_device=made-up-by-the-bench"}


def measure(
    base: str, people: list[tuple[str, str]], first: int
) -> dict[str, dict[str, dict[str, list[float]]]]:
    http = requests.Session()  # keep-alive: time the service, not TCP set-up

    def timed(path: str, body: Body, cookie: str | None) -> float:
        headers = {"Cookie": cookie} if cookie else {}
        started = time.perf_counter()
        response = http.post(base + path, json=body, headers=headers, timeout=30)
        elapsed = time.perf_counter() - started
        assert response.status_code in (202, 401), (path, response.status_code, response.text)
        return elapsed

    run = random.randrange(10**4)
    samples: dict[str, dict[str, dict[str, list[float]]]] = {v: {} for v in VARIANTS}
    for n, (email, phone) in enumerate(people, start=first):
        # Each variant has unregistered addresses of its own; which variant
        # goes first alternates, as the order within a pair does.
        variants = list(VARIANTS.items())
        for k, (variant, cookie) in enumerate(variants if n % 2 else reversed(variants)):
            pairs = pairs_for(n, (run + k) % 10**4, email, phone)
            for name, (path, registered, unregistered) in pairs.items():
                bucket = samples[variant].setdefault(name, {"registered": [], "unregistered": []})
                order: list[tuple[str, Body]] = [
                    ("registered", registered), ("unregistered", unregistered)
                ]  # fmt: skip
                for label, body in order if n % 2 else reversed(order):
                    bucket[label].append(timed(path, body, cookie))
    return samples


def summarise(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, bucket in samples.items():
        a = auc(bucket["registered"], bucket["unregistered"])
        out[name] = {
            "auc": round(a, 3),
            "separation": round(max(a, 1 - a), 3),
            "registered_median_ms": round(statistics.median(bucket["registered"]) * 1000, 2),
            "unregistered_median_ms": round(statistics.median(bucket["unregistered"]) * 1000, 2),
        }
    return out


def peers(smtp: SmtpServer, gateway: SmsGateway) -> dict[str, object]:
    """Settings that send to the loopback SMTP server and SMS gateway."""
    return {
        "email_backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
        "sms_backend": "http", "sms_http_url": gateway.url,
        "sms_http_token": gateway.outbox.token,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warm-up", type=int, default=10)
    args = parser.parse_args()
    database = os.environ.get("PRIVID_BENCH_DATABASE_URL", "")
    ratelimit = os.environ.get("PRIVID_BENCH_RATELIMIT_URI", "memory://")
    with tempfile.TemporaryDirectory() as tmp:
        url = database or f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        smtp, gateway = SmtpServer().start(), SmsGateway().start()
        # No back-off here: it would make the known account's failures 429s.
        settings = bench_settings(url, ratelimit).model_copy(
            update={
                "login_free_attempts": 10**6,
                **peers(smtp, gateway),
                "outbox_poll_seconds": 0.2,
            }
        )
        total = args.rounds + args.warm_up
        people = register_people(settings, total, PASSWORD)
        with gunicorn(settings, workers=1) as base, privid_worker(settings):
            measure(base, people[: args.warm_up], 0)  # warm-up, not counted
            samples = measure(base, people[args.warm_up :], args.warm_up)
        smtp.stop()
        gateway.stop()

    figures = {variant: summarise(found) for variant, found in samples.items()}
    result: dict[str, object] = {
        "benchmark": "enumeration timing",
        "database": "postgresql" if database else "sqlite",
        "rounds": args.rounds,
        "limit": LIMIT,
        "endpoints": figures,
        "all_under_limit": all(
            f["separation"] < LIMIT for found in figures.values() for f in found.values()
        ),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "enumeration_timing.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
