"""The peer for the token endpoint and introspection: node-oidc-provider with
a Redis store (bench/node-oidc/server.js, Node's cluster with as many
processes as the service has workers), loaded by the same wrk script and
list shapes as the service. A benchmark aid, not a dependency: it runs only
with `python -m bench --node-oidc` after `npm install` in bench/node-oidc/."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from bench.common import Served, free_port
from bench.load import Load, Scenario, measure
from bench.oidc_seed import BenchClient, client_credentials_lines, introspection_lines

HERE = Path(__file__).resolve().parent / "node-oidc"
TOKEN_PATH = "/token"
# Issue 13: the service's client_credentials and introspection within 0.5 of the peer's.
PEER_SHARE = 0.5


def version() -> str | None:
    """The installed oidc-provider's version, or None before `npm install`."""
    installed = HERE / "node_modules" / "oidc-provider" / "package.json"
    if not installed.exists():
        return None
    return str(json.loads(installed.read_text())["version"])


def bench_clients(count: int) -> list[BenchClient]:
    return [BenchClient(f"bench-{n}", secrets.token_urlsafe(32)) for n in range(count)]


@contextmanager
def node_oidc(workers: int, redis_url: str, clients: list[BenchClient]) -> Iterator[Served]:
    """node-oidc-provider on loopback, ready when this yields."""
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        json.dump([{"client_id": c.client_id, "client_secret": c.secret} for c in clients], listing)
        listing.flush()
        env = {
            **os.environ, "PORT": str(port), "WORKERS": str(workers),
            "REDIS_URL": redis_url, "CLIENTS_FILE": listing.name,
        }  # fmt: skip
        process = subprocess.Popen(
            ["node", str(HERE / "server.js")], cwd=HERE, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{base}/.well-known/openid-configuration", timeout=1).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.1)
            else:
                raise RuntimeError("node-oidc-provider did not start")
            yield Served(base, process.pid)
        finally:
            process.terminate()
            process.wait(timeout=20)


def compare(
    privid: dict[str, Any],
    cc: Scenario,
    introspection: Scenario,
    *,
    workers: int,
    redis_url: str,
    clients: int,
    connections: int,
    seconds: float,
    warm_up: float,
) -> dict[str, Any]:
    """The peer's client_credentials and introspection figures, and the
    service's rate as a share of the peer's for each (issue 13: at least 0.5)."""
    peer_version = version()
    if peer_version is None:
        return {"skipped": "run `npm install` in bench/node-oidc first"}
    if not redis_url.startswith("redis://"):
        return {"skipped": "node-oidc-provider is measured with its Redis store only"}
    made = bench_clients(clients)
    # The peer's endpoints and its JSON, written without a space after the colon.
    peer_cc = replace(cc, path=TOKEN_PATH)
    peer_introspection = replace(introspection, path="/token/introspection", expect='"active":true')
    figures: dict[str, Any] = {"version": peer_version, "processes": workers}
    with node_oidc(workers, redis_url, made) as peer:
        runs = {
            cc.name: (peer_cc, client_credentials_lines(made)),
            introspection.name: (
                peer_introspection,
                introspection_lines(peer.base, made, 8, TOKEN_PATH),
            ),
        }
        for name, (scenario, lines) in runs.items():
            load = measure(
                peer, scenario, lines,
                connections=connections, seconds=seconds, warm_up=warm_up,
            )  # fmt: skip
            figures[name] = peer_figures(load, privid.get(name, {}))
    return figures


def peer_figures(load: Load | str, privid: dict[str, Any]) -> dict[str, Any]:
    if isinstance(load, str):
        return {"skipped": load}
    share = privid.get("rps", 0.0) / load.rps if load.rps else 0.0
    return {
        "rps": round(load.rps, 1),
        "p50_ms": round(load.p50_ms, 2),
        "p95_ms": round(load.p95_ms, 2),
        "p99_ms": round(load.p99_ms, 2),
        "errors": load.errors,
        "rss_mb": load.peak_rss_mib,
        "privid_share": round(share, 3),
        "met": share >= PEER_SHARE,
    }
