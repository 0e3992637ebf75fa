"""Every benchmark scenario in one run, each against its ceiling measured in
the same run on the same cores (issue 13):

    python -m bench [--server gunicorn|granian] [--workers 2] [--duration 10]
        [--warm-up 1] [--connections 8] [--password-connections 32]
        [--accounts 64] [--clients 32] [--only SCENARIO ...] [--output DIR]

The service runs under the chosen server (gunicorn with config/gunicorn.conf.py,
or granian's WSGI interface, same worker count) on PostgreSQL + Redis when
PRIVID_BENCH_DATABASE_URL / PRIVID_BENCH_RATELIMIT_URI are set (else a SQLite
file and in-memory limits), with `privid worker` sending SMS codes to a gateway
on loopback (the suite's fake, tests/fakes.py). The bare endpoint (bench/bare_app.py) runs
under the same server command beside it. Load comes from other processes: wrk
with bench/load.lua, or bench/pyload.py for SMS and passkey sign-ins. Writes
DIR/results.json and DIR/RESULTS.md (DIR: bench/).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from statistics import mean
from typing import Any

from app.migrate import upgrade
from app.settings import Settings
from bench import ceilings, node_oidc, seed
from bench.common import (
    SERVERS,
    Served,
    bench_settings,
    privid_worker,
    register_people,
    served,
)
from bench.load import JSON, Load, Scenario, measure, python_load
from bench.oidc_seed import (
    client_credentials_lines,
    grants_revoked_as_reused,
    introspection_lines,
    refresh_lines,
    register_clients,
)
from bench.report import TARGETS, machine, mean_by_part, render, scenario_result
from tests.fakes import SmsGateway

BENCH = Path(__file__).resolve().parent
BARE_APP = "bench.bare_app:app"
FLOOR_APP = "bench.floor_app:app"
PASSWORD = "velvet-orbit-canyon-42"
# Access tokens per client for introspection.
PER_CLIENT = 8
SESSIONS_PER_ACCOUNT = 2
# A UserInfo call that returns claims the partner was granted, not just `sub`.
USERINFO_SCOPES = ("openid", "profile", "offline_access")

BARE = Scenario("bare", "GET", "/bare", '"ok"')
JWKS = Scenario("jwks", "GET", "/.well-known/jwks.json", '"keys"')
CLIENT_CREDENTIALS = Scenario("client_credentials", "POST", "/oauth/token", '"access_token"')
INTROSPECTION = Scenario("introspection", "POST", "/oauth/introspect", '"active": true')
REFRESH = Scenario("refresh_token", "POST", "/oauth/token", '"refresh_token"', mode="refresh")
USERINFO = Scenario("userinfo", "GET", "/oauth/userinfo", '"sub"')
SESSION_READ = Scenario("session_read", "GET", "/api/v1/me", '"user_id"')
PASSWORD_SIGN_IN = Scenario(
    "password_sign_in", "POST", "/api/v1/login/password", '"token"',
    content_type=JSON, ceiling="argon2",
)  # fmt: skip
SMS_SIGN_IN = Scenario("sms_sign_in", "POST", "/api/v1/login/sms", '"token"', mode="python")
PASSKEY_SIGN_IN = Scenario(
    "passkey_sign_in", "POST", "/api/v1/webauthn/authentication/verify", '"token"',
    mode="python", ceiling="es256",
)  # fmt: skip
# Measured in this order.
SCENARIOS = (
    JWKS, CLIENT_CREDENTIALS, INTROSPECTION, REFRESH, USERINFO,
    SESSION_READ, PASSWORD_SIGN_IN, SMS_SIGN_IN, PASSKEY_SIGN_IN,
)  # fmt: skip
OIDC = {CLIENT_CREDENTIALS, INTROSPECTION, REFRESH, USERINFO}
# `--floor`: the same load against bench/floor_app.py's bare-bones version.
FLOOR_PATHS = {
    CLIENT_CREDENTIALS: "/floor/token",
    REFRESH: "/floor/token",
    INTROSPECTION: "/floor/introspect",
    SESSION_READ: "/floor/me",
}
# Scenarios that spend registered accounts (registering one costs an argon2 hash).
PEOPLE = {REFRESH, USERINFO, SESSION_READ, PASSWORD_SIGN_IN, SMS_SIGN_IN, PASSKEY_SIGN_IN}


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=SERVERS, default="gunicorn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="granian only: blocking threads per worker (default: granian's own)",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per scenario")
    parser.add_argument("--warm-up", type=float, default=1, help="seconds before each")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--password-connections", type=int, default=32)
    parser.add_argument("--accounts", "--users", type=int, default=64, dest="accounts")
    parser.add_argument("--clients", type=int, default=32, help="OAuth partners")
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="measure this scenario only (repeatable); default: all",
    )
    parser.add_argument(
        "--node-oidc",
        action="store_true",
        help="also measure node-oidc-provider's client_credentials and introspection "
        "(npm install in bench/node-oidc first; needs Redis)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run client_credentials, refresh_token, introspection and session_read against "
        "bench/floor_app.py (the work alone, on Flask + psycopg; PostgreSQL only)",
    )
    parser.add_argument("--output", type=Path, default=BENCH, help="where results go")
    args = parser.parse_args(argv)
    if args.accounts < args.connections:
        # A phone or passkey used by two loader threads at once would fail for the loader's sake.
        parser.error("--accounts must be at least --connections")
    return args


def sms_settings(settings: Settings, gateway: SmsGateway, token: str) -> Settings:
    """Codes go over HTTP to the loopback gateway, sent by `privid worker`
    polling the outbox every 20 ms: the load's users wait for their code, and
    with the default 1 s poll the wait, not the service, would set the rate."""
    return settings.model_copy(
        update={
            "sms_backend": "http",
            "sms_http_url": f"{gateway.base}/messages",
            "sms_http_token": token,
            "outbox_poll_seconds": 0.02,
        }
    )


class Run:
    """One run's servers, seeds and ceilings; each scenario's list is made
    right before it runs (refresh tokens must not wait, sessions not idle)."""

    def __init__(self, args: argparse.Namespace, settings: Settings, gateway: SmsGateway) -> None:
        self.args, self.settings, self.gateway = args, settings, gateway
        self.bare_runs: list[Load] = []
        self.argon2_runs: list[float] = []
        self.es256_runs: list[float] = []
        self.people: list[tuple[str, str]] = []
        self.clients: list[Any] = []
        self.floor: Served | None = None
        # The lines the last wrk scenario was given, for the floor to get the same.
        self.last_lines: list[str] | None = None

    @property
    def tokens(self) -> int:
        """Refresh grants, and UserInfo access tokens: 32 per connection, so
        each wrk thread rotates over many (256 at 8 connections)."""
        return 32 * self.args.connections

    @property
    def emails(self) -> list[str]:
        return [email for email, _ in self.people]

    def lines(self, scenario: Scenario, server: Served) -> list[str] | None:
        base = server.base
        makers: dict[Scenario, Callable[[], list[str] | None]] = {
            JWKS: lambda: None,
            CLIENT_CREDENTIALS: lambda: client_credentials_lines(self.clients),
            INTROSPECTION: lambda: introspection_lines(base, self.clients, PER_CLIENT),
            # Enough grants that each wrk thread rotates over many; one more for the probe.
            REFRESH: lambda: refresh_lines(
                self.settings, self.clients, self.emails, self.tokens + 1
            ),
            USERINFO: lambda: seed.access_token_lines(
                base,
                refresh_lines(
                    self.settings, self.clients, self.emails, self.tokens, scopes=USERINFO_SCOPES
                ),
            ),
            SESSION_READ: lambda: seed.session_lines(
                base, self.emails, PASSWORD, SESSIONS_PER_ACCOUNT
            ),
            # Half by email, half by phone, as people type either.
            PASSWORD_SIGN_IN: lambda: [
                f"\t{seed.password_body(email if n % 2 else phone, PASSWORD)}"
                for n, (email, phone) in enumerate(self.people)
            ],
        }
        return makers[scenario]()

    def spec(self, scenario: Scenario, server: Served) -> dict[str, object]:
        if scenario is SMS_SIGN_IN:
            return {"phones": [phone for _, phone in self.people], "gateway": self.gateway.base}
        origin = self.settings.webauthn_origin_list[0]
        held = seed.enrol_passkeys(server.base, self.emails, PASSWORD, origin)
        return {"credentials": held, "origin": origin}

    def load(self, scenario: Scenario, server: Served) -> Load | str:
        args = self.args
        self.last_lines = None  # until this scenario's are made
        if scenario.loader == "python":
            return python_load(
                server, scenario, self.spec(scenario, server),
                connections=args.connections, seconds=args.duration, warm_up=args.warm_up,
            )  # fmt: skip
        connections = (
            args.password_connections if scenario is PASSWORD_SIGN_IN else args.connections
        )
        self.last_lines = self.lines(scenario, server)
        return measure(
            server, scenario, self.last_lines,
            connections=connections, seconds=args.duration, warm_up=args.warm_up,
        )  # fmt: skip

    def floor_figures(self, scenario: Scenario, load: Load, ceiling: float) -> dict[str, Any]:
        """The same load against the floor app: its rate, its share of the
        bare endpoint's, and the service's share of its rate."""
        assert self.floor is not None
        # Refresh tokens are spent once: the floor gets grants of its own.
        lines = self.lines(scenario, self.floor) if scenario.mode == "refresh" else self.last_lines
        floor = measure(
            self.floor, replace(scenario, path=FLOOR_PATHS[scenario]), lines,
            connections=self.args.connections, seconds=self.args.duration,
            warm_up=self.args.warm_up,
        )  # fmt: skip
        if isinstance(floor, str):
            return {"skipped": floor}
        figures: dict[str, Any] = {
            "rps": round(floor.rps, 1),
            "ratio": round(floor.rps / ceiling, 3) if ceiling else 0.0,
            "errors": floor.errors,
            "cpu_ms_per_request": floor.cpu_ms_per_answer_by_part(),
        }
        if floor.rps:
            figures["service_share"] = round(load.rps / floor.rps, 3)
        return figures

    def bare(self, bare: Served) -> None:
        measured = measure(
            bare, BARE, None,
            connections=self.args.connections, seconds=self.args.duration,
            warm_up=self.args.warm_up,
        )  # fmt: skip
        if isinstance(measured, str):
            raise RuntimeError(f"the bare app failed: {measured}")
        self.bare_runs.append(measured)

    def scenario(self, scenario: Scenario, server: Served, bare: Served) -> dict[str, Any]:
        """The scenario with its ceiling on either side of it (ES256: after)."""
        half = self.args.duration / 2
        if scenario.ceiling == "argon2":
            before = ceilings.argon2_per_second(self.settings, half)
        try:
            load = self.load(scenario, server)
        except Exception as failed:  # a scenario that breaks says why; the others still run
            load = f"{type(failed).__name__}: {failed}"
        extra: dict[str, Any] = {"loader": scenario.loader}
        if scenario.ceiling == "bare":
            self.bare(bare)
            ceiling = mean(run.rps for run in self.bare_runs[-2:])
        elif scenario.ceiling == "argon2":
            after = ceilings.argon2_per_second(self.settings, half)
            self.argon2_runs += [round(before, 1), round(after, 1)]
            ceiling = mean((before, after))
            extra["connections"] = self.args.password_connections
        else:
            ceiling = ceilings.es256_per_second(half)
            self.es256_runs.append(round(ceiling, 1))
        # The floor takes the scenario's own lines: none if the scenario broke.
        if self.floor is not None and scenario in FLOOR_PATHS and not isinstance(load, str):
            extra["floor"] = self.floor_figures(scenario, load, ceiling)
        return scenario_result(load, scenario.ceiling, ceiling, TARGETS[scenario.name], **extra)


@contextmanager
def database() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("PRIVID_BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
        yield url, os.environ.get("PRIVID_BENCH_RATELIMIT_URI", "memory://")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = arguments(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    about = machine()
    token = secrets.token_urlsafe(16)
    with database() as (database_url, ratelimit), SmsGateway(token) as gateway:
        if args.floor and not database_url.startswith("postgresql+psycopg"):
            raise SystemExit("--floor needs PostgreSQL (PRIVID_BENCH_DATABASE_URL)")
        settings = sms_settings(bench_settings(database_url, ratelimit), gateway, token)
        upgrade(database_url)
        run = Run(args, settings, gateway)
        if set(chosen) & PEOPLE:
            # Passkeys are for people who agreed to device biometrics.
            run.people = register_people(
                settings, args.accounts, PASSWORD, grant=("device_biometrics",)
            )
        if set(chosen) & OIDC:
            run.clients = register_clients(settings, args.clients)
        results: dict[str, Any] = {}
        with ExitStack() as stack:
            bare = stack.enter_context(
                served(settings, args.workers, BARE_APP, args.server, args.threads)
            )
            server = stack.enter_context(
                served(settings, args.workers, server=args.server, threads=args.threads)
            )
            if args.floor:
                run.floor = stack.enter_context(
                    served(settings, args.workers, FLOOR_APP, args.server, args.threads)
                )
            if SMS_SIGN_IN in chosen:
                stack.enter_context(privid_worker(settings))
            run.bare(bare)
            for scenario in chosen:
                results[scenario.name] = run.scenario(scenario, server, bare)
        reused = grants_revoked_as_reused(settings, run.clients) if run.clients else 0
        # The peer after the service's servers are down, on the same idle cores.
        peer = None
        if args.node_oidc:
            peer = node_oidc.compare(
                results, CLIENT_CREDENTIALS, INTROSPECTION,
                workers=args.workers, redis_url=ratelimit, clients=args.clients,
                connections=args.connections, seconds=args.duration, warm_up=args.warm_up,
            )  # fmt: skip

    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    set_vars = [
        v for v in ("PRIVID_BENCH_DATABASE_URL", "PRIVID_BENCH_RATELIMIT_URI") if os.environ.get(v)
    ]
    result = {
        "benchmark": "every scenario of issue 13 against its ceiling, one run",
        "command": " ".join([*(f"{v}=…" for v in set_vars), command]),
        "machine": {**about, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "server": args.server,
        "server_version": version(args.server),
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "database": database_url.split(":", 1)[0].split("+")[0],
        "ratelimit_storage": ratelimit.split(":", 1)[0],
        "duration_seconds": args.duration,
        "warm_up_seconds": args.warm_up,
        "connections": args.connections,
        "password_connections": args.password_connections,
        "accounts": args.accounts,
        "clients": args.clients,
        "ceilings": {
            "bare": [round(r.rps, 1) for r in run.bare_runs],
            "argon2": run.argon2_runs,
            "es256": run.es256_runs,
        },
        "argon2_parameters": dict(
            zip(
                ("memory_kib", "time_cost", "parallelism"),
                ceilings.argon2_params(settings),
                strict=True,
            )
        ),
        "bare_cpu_ms_per_request": mean_by_part(
            [r.cpu_ms_per_answer_by_part() for r in run.bare_runs]
        ),
        "scenarios": results,
        # Every refresh token is spent once: a reuse would revoke its grant.
        "grants_revoked_as_reused": reused,
    }
    if peer is not None:
        result["node_oidc_provider"] = peer
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output / "RESULTS.md").write_text(render(result))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
