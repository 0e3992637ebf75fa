"""Do sign-ins and consent changes on *distinct* accounts queue on one lock?

Each client thread owns one account and, in a loop, signs in with its password
(an audited write), grants ``analytics`` and withdraws it again (two consent
ledger writes), all through the HTTP API of one in-process app on PostgreSQL,
each request on its own pooled connection. A sampler polls
``pg_stat_activity`` every 5 ms and counts backends waiting for a lock. The
same load runs with 1 client and with ``--clients``. Lock wait per round follows
from Little's law (backends waiting / rounds per second). On a loaded two-core
machine the in-process load is CPU-bound, so throughput hides the queue; the
lock waits show it.

    PRIVID_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test_c \
        .venv/bin/python -m bench.chain_contention --label after [--reset]

``--reset`` drops and recreates the database's public schema first (never point
it at a database you care about). Writes bench/results/chain_contention_<label>.json.
Cheap argon2 parameters: the benchmark measures what happens around the password.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from app import build_runtime, create_app
from app.migrate import upgrade
from bench.common import bench_settings, register_users

PASSWORD = "velvet-orbit-canyon-42"
RESULTS = Path(__file__).resolve().parent / "results"
WAITING = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def reset_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


class LockSampler(threading.Thread):
    """Counts, every 5 ms, the backends of this database waiting for a lock."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self._engine = create_engine(url)
        self._stop_event = threading.Event()
        self.samples: list[int] = []

    def run(self) -> None:
        with self._engine.connect() as connection:
            while not self._stop_event.is_set():
                self.samples.append(int(connection.execute(WAITING).scalar_one()))
                connection.rollback()  # a fresh snapshot of pg_stat_activity each time
                time.sleep(0.005)

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        self._engine.dispose()
        count = len(self.samples) or 1
        return {
            "mean_backends_waiting_for_a_lock": round(sum(self.samples) / count, 3),
            "share_of_samples_with_a_lock_wait": round(sum(map(bool, self.samples)) / count, 3),
        }


def run_load(app: Any, emails: list[str], policy: str, seconds: float) -> dict[str, float]:
    done = failed = 0
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(emails))
    deadline = 0.0

    def client(email: str) -> None:
        nonlocal done, failed, deadline
        http = app.test_client()
        http.environ_base["wsgi.url_scheme"] = "https"
        barrier.wait()
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            signed_in = http.post(
                "/api/v1/login/password",
                json={"identifier": email, "password": PASSWORD, "token_delivery": "bearer"},
            )
            ok = signed_in.status_code == 200
            if ok:
                auth = {"Authorization": f"Bearer {signed_in.json['token']}"}
                granted = http.post(
                    "/api/v1/me/consent/analytics/grant",
                    json={"policy_version": policy},
                    headers=auth,
                )
                withdrawn = http.post("/api/v1/me/consent/analytics/withdraw", headers=auth)
                ok = granted.status_code == 200 and withdrawn.status_code == 200
            elapsed = time.perf_counter() - began
            with lock:
                if ok:
                    done += 1
                    latencies.append(elapsed)
                else:
                    failed += 1

    threads = [threading.Thread(target=client, args=(email,)) for email in emails]
    deadline = time.perf_counter() + seconds + 0.5
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "rounds_per_second": round(done / wall, 1),
        "writes_per_second": round(3 * done / wall, 1),
        "failed_rounds": failed,
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else 0.0,
        "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1) if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--label", default="run")
    parser.add_argument("--reset", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("PRIVID_BENCH_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        sys.exit("set PRIVID_BENCH_DATABASE_URL to a PostgreSQL database (row locks are the point)")
    if args.reset:
        reset_schema(url)
    upgrade(url)
    settings = bench_settings(url, "memory://").model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1}
    )
    emails = register_users(settings, args.clients, PASSWORD)
    app = create_app(runtime=build_runtime(settings))
    policy = "dev-1"
    runs = []
    try:
        for clients in (1, args.clients):
            sampler = LockSampler(url)
            sampler.start()
            load = run_load(app, emails[:clients], policy, args.seconds)
            waits = sampler.stop()
            # Little's law: backends waiting = rounds per second x wait per round.
            per_round = waits["mean_backends_waiting_for_a_lock"] / max(
                load["rounds_per_second"], 0.1
            )
            runs.append(
                {
                    "clients": clients,
                    **load,
                    **waits,
                    "lock_wait_ms_per_round": round(1000 * per_round, 1),
                }
            )
    finally:
        app.extensions["privid.engine"].dispose()
    result = {
        "benchmark": "sign-in + consent grant + withdraw on distinct accounts",
        "label": args.label,
        "database": "postgresql",
        "cores": os.cpu_count(),
        "seconds_per_run": args.seconds,
        "runs": runs,
        "speed_up": round(runs[1]["rounds_per_second"] / max(runs[0]["rounds_per_second"], 0.1), 2),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"chain_contention_{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
