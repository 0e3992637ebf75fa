"""Password sign-ins per second under concurrent load, against the ceiling the
same cores set: argon2id verifications per second at the same parameters.

    .venv/bin/python -m bench.login_throughput [--seconds 15] [--clients 8]

Runs on PostgreSQL + Redis when PRIVID_BENCH_DATABASE_URL / _RATELIMIT_URI are
set, else on a SQLite file with in-memory limits. Writes bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import requests
from argon2 import PasswordHasher, Type

from app.migrate import upgrade
from bench.common import bench_settings, gunicorn, register_users

PASSWORD = "velvet-orbit-canyon-42"
RESULTS = Path(__file__).resolve().parent / "results"


def _verify_loop(params: tuple[int, int, int], seconds: float) -> int:
    memory, time_cost, parallelism = params
    hasher = PasswordHasher(
        memory_cost=memory, time_cost=time_cost, parallelism=parallelism, type=Type.ID
    )
    stored = hasher.hash(PASSWORD)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hasher.verify(stored, PASSWORD)
        done += 1
    return done


def argon2_ceiling(params: tuple[int, int, int], seconds: float) -> float:
    """Verifications per second with every core busy, nothing else running."""
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        counts = list(pool.map(_verify_loop, [params] * cores, [seconds] * cores))
    return sum(counts) / seconds


def sign_in_load(base: str, emails: list[str], clients: int, seconds: float) -> dict[str, float]:
    ok = failed = 0
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(n: int) -> None:
        nonlocal ok, failed
        session = requests.Session()
        email = emails[n % len(emails)]
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = session.post(
                f"{base}/api/v1/login/password",
                json={"identifier": email, "password": PASSWORD, "token_delivery": "bearer"},
                timeout=30,
            )
            elapsed = time.perf_counter() - started
            with lock:
                if response.status_code == 200:
                    ok += 1
                    latencies.append(elapsed)
                else:
                    failed += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "sign_ins_per_second": ok / wall,
        "failures": failed,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)] if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get("PRIVID_BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
        ratelimit = os.environ.get("PRIVID_BENCH_RATELIMIT_URI", "memory://")
        settings = bench_settings(database_url, ratelimit)
        upgrade(database_url)
        emails = register_users(settings, args.clients, PASSWORD)
        params = (
            settings.argon2_memory_kib,
            settings.argon2_time_cost,
            settings.argon2_parallelism,
        )
        ceiling = argon2_ceiling(params, args.seconds / 2)
        with gunicorn(settings, args.workers) as base:
            load = sign_in_load(base, emails, args.clients, args.seconds)

    result = {
        "benchmark": "password sign-in throughput",
        "database": database_url.split(":", 1)[0].split("+")[0],
        "ratelimit_storage": ratelimit.split(":", 1)[0],
        "cores": os.cpu_count(),
        "gunicorn_workers": args.workers,
        "clients": args.clients,
        "argon2": {"memory_kib": params[0], "time_cost": params[1], "parallelism": params[2]},
        "argon2_verifications_per_second_ceiling": round(ceiling, 1),
        **{k: round(v, 1) for k, v in load.items()},
        "ratio_to_ceiling": round(load["sign_ins_per_second"] / ceiling, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    name = f"login_throughput_{result['database']}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
