"""The OAuth / OpenID endpoints under load, against a bare Flask endpoint served
by the same gunicorn command (same config, worker count and environment),
measured in the same run: JWKS, the token endpoint (client_credentials and
refresh_token) and introspection.

    .venv/bin/python -m bench.oidc_throughput [--workers 2] [--duration 10] [--connections 8]
        [--clients 32] [--users 8] [--only jwks --only client_credentials ...]

Runs on PostgreSQL + Redis when PRIVID_BENCH_DATABASE_URL / _RATELIMIT_URI are
set, else on a SQLite file with in-memory limits. The load comes from wrk (a
process of its own, one connection per wrk thread, bench/oidc_load.lua), spread
over --clients registered clients and their tokens. The bare endpoint is
measured first and after each scenario: a scenario's ceiling is the mean of
the bare runs on either side. Writes bench/results/oidc_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import requests

from app.migrate import upgrade
from bench.common import ROOT, Served, WorkerSampler, bench_settings, register_users, served
from bench.oidc_seed import (
    client_credentials_lines,
    grants_revoked_as_reused,
    introspection_lines,
    refresh_lines,
    register_clients,
)

RESULTS = Path(__file__).resolve().parent / "results"
LUA = Path(__file__).resolve().parent / "oidc_load.lua"
BARE_APP = "bench.bare_app:app"
# Issue 10: each endpoint must reach this share of the bare endpoint's rate.
TARGET_RATIO = 0.35
# Access tokens per client for introspection.
PER_CLIENT = 8
WARM_UP_SECONDS = 1.0
PASSWORD = "velvet-orbit-canyon-42"


@dataclass(frozen=True)
class Load:
    """What wrk saw in one run; the largest worker's peak memory and the CPU
    time all workers spent during it."""

    seconds: float
    ok: int
    # Answers other than a 200 carrying what the scenario expects.
    refused: int
    # Connections refused or reset, requests timed out.
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    peak_rss_mib: float
    # refresh_token only: grants given up because an answer was lost or refused.
    dropped: int = 0
    worker_cpu_seconds: float = 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.refused + self.socket_errors

    @property
    def cpu_ms_per_answer(self) -> float:
        """Worker CPU per answered request: what the service itself spends,
        apart from the database, Redis and the load generator."""
        answered = self.ok + self.refused
        return 1000 * self.worker_cpu_seconds / answered if answered else 0.0


def parse_wrk(stdout: str, peak_rss_mib: float, worker_cpu_seconds: float = 0.0) -> Load:
    """The Load from the line bench/oidc_load.lua's done() prints."""
    found = [x for x in stdout.splitlines() if x.startswith("WRK-JSON ")]
    if not found:
        raise RuntimeError(f"wrk printed no summary; its output ends: {stdout[-300:]!r}")
    raw = json.loads(found[-1].removeprefix("WRK-JSON "))
    return Load(
        seconds=raw["duration_us"] / 1e6,
        ok=raw["ok"],
        refused=raw["refused"],
        socket_errors=sum(raw[k] for k in ("connect", "read", "write", "timeout")),
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        peak_rss_mib=peak_rss_mib,
        dropped=raw["dropped"],
        worker_cpu_seconds=worker_cpu_seconds,
    )


def shape(
    bare_runs: Sequence[Load],
    scenarios: Mapping[str, Load | str],
    target: float = TARGET_RATIO,
) -> dict[str, Any]:
    """Per scenario: rate, latency, errors, memory and the ratio to its
    ceiling. The bare endpoint runs before the first scenario and after each
    one; a scenario's ceiling is the mean of the bare runs on either side of it,
    so a machine that gets busier or quieter during the run moves both alike.
    A scenario given as a string was not measured; the string says why. A run
    with errors does not meet the target whatever its rate."""
    if len(bare_runs) != len(scenarios) + 1:
        raise ValueError("one bare run before the scenarios and one after each")
    shaped: dict[str, Any] = {}
    for n, (name, load) in enumerate(scenarios.items()):
        if isinstance(load, str):
            shaped[name] = {"skipped": load}
            continue
        ceiling = mean((bare_runs[n].rps, bare_runs[n + 1].rps))
        ratio = load.rps / ceiling if ceiling else 0.0
        shaped[name] = {
            "rps": round(load.rps, 1),
            "requests_ok": load.ok,
            "p50_ms": round(load.p50_ms, 2),
            "p95_ms": round(load.p95_ms, 2),
            "p99_ms": round(load.p99_ms, 2),
            "errors": load.errors,
            "bad_answers": load.refused,
            "socket_errors": load.socket_errors,
            "peak_rss_mib_per_worker": load.peak_rss_mib,
            "worker_cpu_ms_per_request": round(load.cpu_ms_per_answer, 3),
            "ceiling_rps": round(ceiling, 1),
            "ratio": round(ratio, 3),
            "meets_target": ratio >= target and load.errors == 0,
        }
        if load.dropped:
            shaped[name]["grants_dropped"] = load.dropped
    return {
        "target_ratio": target,
        "ceiling": {
            "endpoint": "GET /bare (bench/bare_app.py)",
            "rps_runs": [round(run.rps, 1) for run in bare_runs],
            "p50_ms_runs": [round(run.p50_ms, 2) for run in bare_runs],
            "peak_rss_mib_per_worker": max(run.peak_rss_mib for run in bare_runs),
            "worker_cpu_ms_per_request_runs": [
                round(run.cpu_ms_per_answer, 3) for run in bare_runs
            ],
            "errors": sum(run.errors for run in bare_runs),
        },
        "scenarios": shaped,
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    # Text every good answer carries: a 200 without it counts as refused
    # (an introspection answering "active": false measured nothing).
    expect: str
    # "refresh": each line's token is spent once (bench/oidc_load.lua).
    mode: str = "rotate"


BARE = Scenario("bare", "GET", "/bare", '"ok"')
JWKS = Scenario("jwks", "GET", "/.well-known/jwks.json", '"keys"')
CLIENT_CREDENTIALS = Scenario("client_credentials", "POST", "/oauth/token", '"access_token"')
INTROSPECTION = Scenario("introspection", "POST", "/oauth/introspect", '"active": true')
REFRESH = Scenario("refresh_token", "POST", "/oauth/token", '"refresh_token"', mode="refresh")
# Measured in this order.
SCENARIOS = (JWKS, CLIENT_CREDENTIALS, INTROSPECTION, REFRESH)


def form_body(scenario: Scenario, value: str) -> str:
    """What a line's second field sends (the Lua script builds the same)."""
    return (
        f"grant_type=refresh_token&refresh_token={value}" if scenario.mode == "refresh" else value
    )


def wrk(
    server: Served,
    scenario: Scenario,
    lines: Sequence[str] | None,
    *,
    connections: int,
    seconds: float,
) -> Load:
    """One wrk run from its own process; `lines` are an Authorization header
    and a value, tab-separated (bench/oidc_load.lua says how each mode spends
    them)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        if lines:
            listing.write("".join(f"{line}\n" for line in lines))
            listing.flush()
        command = [
            "wrk", "--threads", str(connections), "--connections", str(connections),
            "--duration", f"{seconds:g}s", "--timeout", "5s", "--script", str(LUA),
            f"{server.base}{scenario.path}", "--",
            scenario.mode, scenario.method, scenario.path, listing.name if lines else "-",
            str(connections), scenario.expect,
        ]  # fmt: skip
        with WorkerSampler(server.pid) as workers:
            done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout, workers.peak_mib(), workers.cpu_used)


def probe(base: str, scenario: Scenario, line: str) -> str | None:
    """None if one request like the load's gets a good answer, else why not."""
    auth, _, value = line.partition("\t")
    body = form_body(scenario, value) if value else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if auth:
        headers["Authorization"] = auth
    answer = requests.request(
        scenario.method, f"{base}{scenario.path}", data=body, headers=headers, timeout=30
    )
    if answer.status_code == 200:
        good = scenario.expect in answer.text
        return None if good else f"a probe request was answered 200 without {scenario.expect}"
    # The status and the error's name only: an answer may carry a token.
    problem = "json" in answer.headers.get("Content-Type", "")
    reason = answer.json().get("error") or answer.json().get("title") if problem else None
    return f"a probe request was answered {answer.status_code} {reason or ''}".strip()


def measure(
    server: Served,
    scenario: Scenario,
    lines: Sequence[str] | None,
    *,
    connections: int,
    seconds: float,
) -> Load | str:
    """A probe request, a second of warm-up (not where tokens are spent once),
    then the measured run; or why the scenario could not run."""
    if scenario.mode == "refresh":
        # The probe spends the last token; the load gets the others.
        assert lines, "refresh tokens to spend"
        probe_line, lines = lines[-1], lines[:-1]
    else:
        probe_line = lines[0] if lines else "\t"
    refused = probe(server.base, scenario, probe_line)
    if refused:
        return refused
    if scenario.mode == "rotate":
        wrk(server, scenario, lines, connections=connections, seconds=WARM_UP_SECONDS)
    return wrk(server, scenario, lines, connections=connections, seconds=seconds)


def ceiling(server: Served, *, connections: int, seconds: float) -> Load:
    measured = measure(server, BARE, None, connections=connections, seconds=seconds)
    if isinstance(measured, str):
        raise RuntimeError(f"the bare app failed: {measured}")
    return measured


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "wrk": (version.stdout or version.stderr).split(" [")[0].strip(),
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="measure this scenario only (repeatable); default: all",
    )
    args = parser.parse_args()
    about = machine()
    load = {"connections": args.connections, "seconds": args.duration}

    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get("PRIVID_BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
        ratelimit = os.environ.get("PRIVID_BENCH_RATELIMIT_URI", "memory://")
        settings = bench_settings(database_url, ratelimit)
        upgrade(database_url)
        clients = register_clients(settings, args.clients)
        chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
        # Only refresh tokens need users (and registering one costs an argon2 hash).
        emails = register_users(settings, args.users, PASSWORD) if REFRESH in chosen else []
        refresh_grants = 32 * args.connections + 1  # one more for the probe

        measured: dict[str, Load | str] = {}
        bare_runs: list[Load] = []
        # Both servers stay up; the idle one costs nothing. The bare endpoint
        # runs first and after each scenario, so each has a ceiling measured
        # on either side of it.
        with (
            served(settings, args.workers, BARE_APP) as bare,
            served(settings, args.workers) as server,
        ):
            # Each scenario's list is made right before it runs, on this server.
            lists: dict[Scenario, Callable[[], list[str] | None]] = {
                JWKS: lambda: None,
                CLIENT_CREDENTIALS: lambda: client_credentials_lines(clients),
                INTROSPECTION: lambda: introspection_lines(server.base, clients, PER_CLIENT),
                # Enough grants that each wrk thread rotates over many.
                REFRESH: lambda: refresh_lines(settings, clients, emails, refresh_grants),
            }
            bare_runs.append(ceiling(bare, **load))
            for scenario in chosen:
                measured[scenario.name] = measure(server, scenario, lists[scenario](), **load)
                bare_runs.append(ceiling(bare, **load))

        reused = grants_revoked_as_reused(settings, clients)

    result = {
        "benchmark": "OIDC endpoints through gunicorn against a bare Flask endpoint",
        "database": database_url.split(":", 1)[0].split("+")[0],
        "ratelimit_storage": ratelimit.split(":", 1)[0],
        "machine": {**about, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "gunicorn_workers": args.workers,
        "connections": args.connections,
        "duration_seconds": args.duration,
        "clients": args.clients,
        "users": args.users,
        **shape(bare_runs, measured),
        # Every refresh token is spent once: a reuse would revoke its grant.
        "grants_revoked_as_reused": reused,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "oidc_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
