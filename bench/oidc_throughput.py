"""The OAuth / OpenID endpoints under load, against a bare Flask endpoint served
by the same gunicorn command (same config, worker count and environment),
measured in the same run: JWKS, the token endpoint (client_credentials and
refresh_token) and introspection.

    .venv/bin/python -m bench.oidc_throughput [--workers 2] [--duration 10] [--connections 8]

Runs on PostgreSQL + Redis when PRIVID_BENCH_DATABASE_URL / _RATELIMIT_URI are
set, else on a SQLite file with in-memory limits. The load comes from wrk (a
process of its own, one connection per wrk thread, bench/oidc_load.lua), spread
over --clients registered clients and their tokens. The bare endpoint is
measured first and last; its mean is the ceiling. Writes
bench/results/oidc_throughput.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean
from typing import Any
from urllib.parse import quote

import requests

from app import build_runtime, create_app
from app.cli import unit_of_work
from app.migrate import upgrade
from app.oidc.clients import NewClient, client_registry
from app.settings import Settings
from bench.common import ROOT, RssSampler, Served, bench_settings, served

RESULTS = Path(__file__).resolve().parent / "results"
LUA = Path(__file__).resolve().parent / "oidc_load.lua"
BARE_APP = "bench.bare_app:app"
# Issue 10: each endpoint must reach this share of the bare endpoint's rate.
TARGET_RATIO = 0.35
TOKENS_PER_CLIENT = 8
WARM_UP_SECONDS = 1.0


@dataclass(frozen=True)
class Load:
    """What wrk saw in one run, and the largest worker's peak memory during it."""

    seconds: float
    ok: int
    # Answers other than 200 (a refusal, a 404, a 500).
    refused: int
    # Connections refused or reset, requests timed out.
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    peak_rss_mib: float
    # refresh_token only: grants given up because an answer was lost or refused.
    dropped: int = 0

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.refused + self.socket_errors


def parse_wrk(stdout: str, peak_rss_mib: float) -> Load:
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
    )


def shape(
    ceiling_runs: Sequence[Load],
    scenarios: Mapping[str, Load | str],
    target: float = TARGET_RATIO,
) -> dict[str, Any]:
    """Per scenario: rate, latency, errors, memory and the ratio to the
    ceiling (the mean rate of the bare runs). A scenario given as a string was
    not measured; the string says why. A run with errors does not meet the
    target whatever its rate: its rate is of a service that failed."""
    ceiling = mean(run.rps for run in ceiling_runs) if ceiling_runs else 0.0
    shaped: dict[str, Any] = {}
    for name, load in scenarios.items():
        if isinstance(load, str):
            shaped[name] = {"skipped": load}
            continue
        ratio = load.rps / ceiling if ceiling else 0.0
        shaped[name] = {
            "rps": round(load.rps, 1),
            "requests_ok": load.ok,
            "p50_ms": round(load.p50_ms, 2),
            "p95_ms": round(load.p95_ms, 2),
            "p99_ms": round(load.p99_ms, 2),
            "errors": load.errors,
            "non_200": load.refused,
            "socket_errors": load.socket_errors,
            "peak_rss_mib_per_worker": load.peak_rss_mib,
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
            "rps_runs": [round(run.rps, 1) for run in ceiling_runs],
            "rps": round(ceiling, 1),
        },
        "scenarios": shaped,
    }


def wrk(
    server: Served,
    *,
    mode: str,
    method: str,
    path: str,
    lines: Sequence[str] | None,
    connections: int,
    seconds: float,
) -> Load:
    """One wrk run from its own process; `lines` are "<Authorization>\\t<body>"
    (bench/oidc_load.lua says how each mode spends them)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        if lines:
            listing.write("".join(f"{line}\n" for line in lines))
            listing.flush()
        command = [
            "wrk", "--threads", str(connections), "--connections", str(connections),
            "--duration", f"{seconds:g}s", "--timeout", "5s", "--script", str(LUA),
            f"{server.base}{path}", "--",
            mode, method, path, listing.name if lines else "-", str(connections),
        ]  # fmt: skip
        with RssSampler(server.pid) as rss:
            done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout, rss.peak_mib())


@dataclass(frozen=True)
class BenchClient:
    client_id: str
    secret: str

    @property
    def authorization(self) -> str:
        # RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        pair = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode()


@contextmanager
def in_process(settings: Settings) -> Iterator[Any]:
    """The service's app, for seeding through its services."""
    app = create_app(runtime=build_runtime(settings))
    try:
        yield app
    finally:
        app.extensions["privid.engine"].dispose()


def register_clients(settings: Settings, count: int, new: NewClient) -> list[BenchClient]:
    """`count` clients like `new`, registered as an operator would (CLI path)."""
    stamp = int(time.time())
    clients = []
    with in_process(settings) as app:
        for n in range(count):
            with app.app_context(), unit_of_work() as svc:
                made = client_registry(svc).register(replace(new, name=f"bench {stamp}-{n}"))
            assert made.secret is not None
            clients.append(BenchClient(made.client.client_id, made.secret))
    return clients


MACHINE_CLIENT = NewClient(
    name="bench",
    client_type="confidential",
    token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method's name
    grant_types=("client_credentials",),
    scopes=("identity",),
)
CLIENT_CREDENTIALS = "grant_type=client_credentials"


def token_request(base: str, client: BenchClient, body: str) -> requests.Response:
    return requests.post(
        f"{base}/oauth/token",
        data=body,
        headers={
            "Authorization": client.authorization,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=30,
    )


def access_tokens(base: str, clients: Sequence[BenchClient], per_client: int) -> list[str]:
    """Lines for introspection: each client asks about its own tokens."""
    lines = []
    for client in clients:
        for _ in range(per_client):
            answer = token_request(base, client, CLIENT_CREDENTIALS)
            answer.raise_for_status()
            lines.append(f"{client.authorization}\ttoken={answer.json()['access_token']}")
    return lines


class NotAvailable(Exception):
    """This build cannot serve a scenario yet; the message says why."""


def seed_refresh_tokens(settings: Settings, base: str, count: int) -> list[str]:
    """Lines for the refresh scenario: `count` refresh tokens, each of a grant
    of its own (a user who consented to one of several code-flow clients), as
    "<client's Authorization>\\t<refresh token>". Every token is spent once."""
    raise NotAvailable(
        "the authorization code flow that issues refresh tokens is not on this build"
    )


def endpoint_missing(base: str, method: str, path: str) -> bool:
    return requests.request(method, f"{base}{path}", timeout=30).status_code == 404


def probe(base: str, method: str, path: str, line: str) -> str | None:
    """None if one request like the load's is answered 200, else why not."""
    auth, _, body = line.partition("\t")
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if auth:
        headers["Authorization"] = auth
    answer = requests.request(
        method, f"{base}{path}", data=body or None, headers=headers, timeout=30
    )
    if answer.status_code == 200:
        return None
    # The status and the problem's title only: a body may echo a token.
    problem = "json" in answer.headers.get("Content-Type", "")
    title = answer.json().get("title") if problem else None
    return f"a probe request was answered {answer.status_code} {title or ''}".strip()


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    # The list wrk spends, made once the service is up; raises NotAvailable.
    lines: Callable[[], list[str] | None]
    mode: str = "rotate"


def run_scenario(
    server: Served, scenario: Scenario, connections: int, seconds: float
) -> Load | str:
    if endpoint_missing(server.base, scenario.method, scenario.path):
        return f"{scenario.method} {scenario.path} is not on this build"
    try:
        lines = scenario.lines()
    except NotAvailable as missing:
        return str(missing)
    if scenario.mode == "rotate":
        refused = probe(server.base, scenario.method, scenario.path, (lines or ["\t"])[0])
        if refused:
            return refused
        wrk(
            server,
            mode="rotate",
            method=scenario.method,
            path=scenario.path,
            lines=lines,
            connections=connections,
            seconds=WARM_UP_SECONDS,
        )
    return wrk(
        server,
        mode=scenario.mode,
        method=scenario.method,
        path=scenario.path,
        lines=lines,
        connections=connections,
        seconds=seconds,
    )


def bare(settings: Settings, workers: int, connections: int, seconds: float) -> Load:
    with served(settings, workers, BARE_APP) as server:
        # A second of warm-up, then the measured run.
        for spell in (WARM_UP_SECONDS, seconds):
            run = wrk(
                server,
                mode="rotate",
                method="GET",
                path="/bare",
                lines=None,
                connections=connections,
                seconds=spell,
            )
        return run


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
    args = parser.parse_args()
    about = machine()

    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get("PRIVID_BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
        ratelimit = os.environ.get("PRIVID_BENCH_RATELIMIT_URI", "memory://")
        settings = bench_settings(database_url, ratelimit)
        upgrade(database_url)
        clients = register_clients(settings, args.clients, MACHINE_CLIENT)
        cc_lines = [f"{c.authorization}\t{CLIENT_CREDENTIALS}" for c in clients]
        load = {"connections": args.connections, "seconds": args.duration}

        ceiling = [bare(settings, args.workers, **load)]
        with served(settings, args.workers) as server:
            scenarios = [
                Scenario("jwks", "GET", "/.well-known/jwks.json", lambda: None),
                Scenario("client_credentials", "POST", "/oauth/token", lambda: cc_lines),
                Scenario(
                    "introspection",
                    "POST",
                    "/oauth/introspect",
                    lambda: access_tokens(server.base, clients, TOKENS_PER_CLIENT),
                ),
                Scenario(
                    "refresh_token",
                    "POST",
                    "/oauth/token",
                    # Enough grants that each wrk thread rotates over many.
                    lambda: seed_refresh_tokens(settings, server.base, 32 * args.connections),
                    mode="refresh",
                ),
            ]
            measured = {s.name: run_scenario(server, s, **load) for s in scenarios}
        ceiling.append(bare(settings, args.workers, **load))

    result = {
        "benchmark": "OIDC endpoints through gunicorn against a bare Flask endpoint",
        "database": database_url.split(":", 1)[0].split("+")[0],
        "ratelimit_storage": ratelimit.split(":", 1)[0],
        "machine": about,
        "gunicorn_workers": args.workers,
        "connections": args.connections,
        "duration_seconds": args.duration,
        "clients": args.clients,
        **shape(ceiling, measured),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "oidc_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
