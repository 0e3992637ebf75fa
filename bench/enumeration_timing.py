"""Does the response time tell whether an address has an account?

    .venv/bin/python -m bench.enumeration_timing [--rounds 40]

Interleaves requests for registered and unregistered addresses through the
app in-process (production argon2 parameters, SQLite) and compares medians for
registration start, password-reset start and a failed password sign-in.
Writes bench/results/enumeration_timing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from app import build_runtime, create_app
from app.migrate import upgrade
from bench.common import Capture, bench_settings, register_users

PASSWORD = "velvet-orbit-canyon-42"
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        # No back-off here: it would make the known account's failures 429s.
        settings = bench_settings(url, "memory://").model_copy(
            update={"login_free_attempts": 10**6}
        )
        # One account per round, so both sides start from a first request.
        accounts = register_users(settings, args.rounds, PASSWORD)
        capture = Capture()
        runtime = build_runtime(settings, email_sender=capture, sms_sender=capture)
        app = create_app(runtime=runtime)
        client = app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"

        def timed(path: str, body: dict[str, str]) -> float:
            started = time.perf_counter()
            response = client.post(path, json=body)
            elapsed = time.perf_counter() - started
            assert response.status_code in (202, 401), response.json
            return elapsed

        samples: dict[str, dict[str, list[float]]] = {}
        for n in range(args.rounds):
            known = accounts[n]
            pairs = {
                "registration_start": (
                    {"email": known, "phone": f"+8613600{n:06d}", "full_name": "X",
                     "password": PASSWORD},
                    {"email": f"fresh{n}@example.org", "phone": f"+8613500{n:06d}",
                     "full_name": "X", "password": PASSWORD},
                    "/api/v1/registration",
                ),
                "password_reset_start": (
                    {"identifier": known}, {"identifier": f"nobody{n}@example.org"},
                    "/api/v1/password-reset",
                ),
                "failed_sign_in": (
                    {"identifier": known, "password": f"wrong-{n}-password"},
                    {"identifier": f"nobody{n}@example.org", "password": f"wrong-{n}-password"},
                    "/api/v1/login/password",
                ),
            }  # fmt: skip
            for name, (registered, unregistered, path) in pairs.items():
                bucket = samples.setdefault(name, {"registered": [], "unregistered": []})
                # Alternate the order so drift does not favour one side.
                order = [("registered", registered), ("unregistered", unregistered)]
                for label, body in order if n % 2 else reversed(order):
                    bucket[label].append(timed(path, body))
        runtime.dispatcher.drain()

    result: dict[str, object] = {"benchmark": "enumeration timing", "rounds": args.rounds}
    for name, bucket in samples.items():
        reg = statistics.median(bucket["registered"]) * 1000
        unreg = statistics.median(bucket["unregistered"]) * 1000
        result[name] = {
            "registered_median_ms": round(reg, 2),
            "unregistered_median_ms": round(unreg, 2),
            "difference_ratio": round(abs(reg - unreg) / max(reg, unreg), 3),
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "enumeration_timing.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
