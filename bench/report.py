"""What bench/run_all.py reports: each scenario's figures against its ceiling
and issue 13's targets (declared here, once), the machine it ran on, and
bench/RESULTS.md rendered from bench/results.json."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.load import Load

# p99 and memory bounds every scenario shares (issue 13).
P99_MS = 250.0
RSS_MB = 150.0


@dataclass(frozen=True)
class Target:
    """What a scenario must reach: `ratio` of its ceiling (None: no ratio
    target, the ceiling is for reference), a p99 under `p99_ms` (None: no
    bound), under `rss_mb` per worker, and no errors."""

    ratio: float | None
    p99_ms: float | None = P99_MS
    rss_mb: float = RSS_MB
    errors: int = 0


# Issue 13's targets on 2 cores.
TARGETS: dict[str, Target] = {
    "jwks": Target(None),
    "client_credentials": Target(0.35),
    "introspection": Target(0.35),
    "refresh_token": Target(0.35),
    "userinfo": Target(0.35),
    "session_read": Target(0.5),
    # argon2 is the point of a password: its latency under 32 connections is not bounded.
    "password_sign_in": Target(0.85, p99_ms=None),
    "sms_sign_in": Target(None),
    "passkey_sign_in": Target(None),
}

CPU_PARTS = ("workers", "postgres", "redis", "loader", "other", "machine")

CEILING_NAMES = {
    "bare": "bare Flask endpoint, same server (requests/s)",
    "argon2": "argon2id verifications/s, every core",
    "es256": "ES256 verifications/s, every core (reference)",
}


def met(figures: dict[str, Any], target: Target) -> bool:
    """A run with errors does not meet its target whatever its rate."""
    return bool(
        figures["errors"] <= target.errors
        and (target.ratio is None or figures["ratio"] >= target.ratio)
        and (target.p99_ms is None or figures["p99_ms"] < target.p99_ms)
        and figures["rss_mb"] < target.rss_mb
    )


def scenario_result(
    load: Load | str, ceiling: str, ceiling_rps: float, target: Target, **extra: Any
) -> dict[str, Any]:
    """One scenario's entry in results.json. A load given as a string was
    not measured; the string says why."""
    wanted = {k: v for k, v in asdict(target).items() if v is not None}
    if isinstance(load, str):
        return {"skipped": load, "ceiling": ceiling, "target": wanted, "met": False, **extra}
    ratio = load.rps / ceiling_rps if ceiling_rps else 0.0
    figures: dict[str, Any] = {
        "rps": round(load.rps, 1),
        "p50_ms": round(load.p50_ms, 2),
        "p95_ms": round(load.p95_ms, 2),
        "p99_ms": round(load.p99_ms, 2),
        "errors": load.errors,
        "rss_mb": load.peak_rss_mib,
        "ceiling": ceiling,
        "ceiling_rps": round(ceiling_rps, 1),
        "ratio": round(ratio, 3),
        "target": wanted,
        "requests_ok": load.ok,
        "bad_answers": load.refused,
        "socket_errors": load.socket_errors,
        "worker_cpu_ms_per_request": round(load.cpu_ms_per_answer, 3),
        "cpu_ms_per_request": load.cpu_ms_per_answer_by_part(),
        **extra,
    }
    if target.ratio is not None and ceiling_rps:
        figures["machine_cpu_ms_budget"] = machine_cpu_budget_ms(target.ratio, ceiling_rps)
    if load.dropped:
        figures["grants_dropped"] = load.dropped
    figures["met"] = met(figures, target)
    return figures


def mean_by_part(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each part's mean over `runs` (the parts every run has)."""
    parts = set.intersection(*(set(run) for run in runs)) if runs else set()
    return {k: round(sum(run[k] for run in runs) / len(runs), 3) for k in sorted(parts)}


def machine_cpu_budget_ms(ratio: float, ceiling_rps: float) -> float:
    """The most CPU (every process on the machine, in ms) one request may cost
    for `ratio` of `ceiling_rps` to fit on this machine's cores at all."""
    return round((os.cpu_count() or 1) * 1000 / (ratio * ceiling_rps), 3)


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
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "wrk": (version.stdout or version.stderr).split(" [")[0].strip(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
    }


def _threads(result: dict[str, Any]) -> str:
    if result["server"] != "granian":
        return " (sync)"
    threads = result.get("threads_per_worker")
    return f", {threads} threads each" if threads else ", granian's default threads"


def _ms(figures: dict[str, Any]) -> str:
    return f"{figures['p50_ms']:g} / {figures['p95_ms']:g} / {figures['p99_ms']:g}"


def _target(target: dict[str, Any]) -> str:
    parts = [f"≥ {target['ratio']:g}"] if "ratio" in target else []
    if "p99_ms" in target:
        parts.append(f"p99 < {target['p99_ms']:g} ms")
    return ", ".join(parts) or "—"


def _peer(peer: dict[str, Any] | None) -> list[str]:
    """The node-oidc-provider comparison (`--node-oidc`), when it ran."""
    if peer is None:
        return []
    if "skipped" in peer:
        return ["", f"node-oidc-provider: not measured ({peer['skipped']})."]
    lines = [
        "",
        f"node-oidc-provider {peer['version']} with a Redis store, {peer['processes']} "
        "processes, same wrk load after the service's servers stopped "
        "(issue 13: the service at least 0.5 of it):",
        "",
        "| scenario | peer rps | p50 / p95 / p99 ms | errors | peak RSS per process (MB) "
        "| privid's share | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in peer.items():
        if not isinstance(figures, dict):
            continue
        if "skipped" in figures:
            lines.append(f"| {name} | skipped: {figures['skipped']} | | | | | no |")
            continue
        lines.append(
            f"| {name} | {figures['rps']:,} | {_ms(figures)} | {figures['errors']} "
            f"| {figures['rss_mb']} | {figures['privid_share']:.3f} "
            f"| {'yes' if figures['met'] else '**no**'} |"
        )
    return lines


def _cpu_row(name: str, used: dict[str, float], budget: float | None) -> str:
    cells = " | ".join(f"{used[part]:g}" if part in used else "" for part in CPU_PARTS)
    over = f"{used['machine'] / budget:.1f}×" if budget and used.get("machine") else ""
    return f"| {name} | {cells} | {budget if budget else '—'} | {over} |"


def _cpu_table(result: dict[str, Any]) -> list[str]:
    """Where the cores went per answered request, beside what the target
    leaves (a run older than this table has no figures for it)."""
    bare = result.get("bare_cpu_ms_per_request")
    if not bare:
        return []
    lines = [
        "",
        "Where the cores went, CPU ms per answered request (`machine` is every process, "
        "`other` what is not named; the budget is the most machine CPU a request may cost "
        "for the target's rate to fit on these cores):",
        "",
        "| scenario | " + " | ".join(CPU_PARTS) + " | budget at target | over budget |",
        "| --- | " + " | ".join("---" for _ in CPU_PARTS) + " | --- | --- |",
        _cpu_row("bare endpoint (mean)", bare, None),
    ]
    for name, figures in result["scenarios"].items():
        if figures.get("cpu_ms_per_request"):
            used = figures["cpu_ms_per_request"]
            lines.append(_cpu_row(name, used, figures.get("machine_cpu_ms_budget")))
    return lines


def _floor_table(result: dict[str, Any]) -> list[str]:
    """`--floor`: the same load against bench/floor_app.py, when it ran."""
    floors = {k: v["floor"] for k, v in result["scenarios"].items() if "floor" in v}
    if not floors:
        return []
    lines = [
        "",
        "The same load against bench/floor_app.py (`--floor`: the work alone on Flask + "
        "psycopg, same server and tables; the most this stack allows):",
        "",
        "| scenario | floor rps | floor's ratio of bare | machine CPU ms per request "
        "| service's share of the floor |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, floor in floors.items():
        if "skipped" in floor:
            lines.append(f"| {name} | skipped: {floor['skipped']} | | | |")
            continue
        machine_ms = floor["cpu_ms_per_request"].get("machine", "")
        lines.append(
            f"| {name} | {floor['rps']:,} | {floor['ratio']:.3f} | {machine_ms} "
            f"| {floor.get('service_share', 0):.3f} |"
        )
    return lines


def render(result: dict[str, Any]) -> str:
    """bench/RESULTS.md from results.json."""
    about = result["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench` from `bench/results.json`; do not edit by hand.",
        "",
        f"- Command: `{result['command']}`",
        f"- Commit: {about['commit']}, {about['date']}",
        f"- Machine: {about['nproc']} cores ({about['cpu']}), load average at the start "
        f"{' / '.join(str(x) for x in about['load_average_at_start'])}, at the end "
        f"{' / '.join(str(x) for x in about['load_average_at_end'])}",
        f"- Server: {result['server']} ({result['server_version']}), {result['workers']} "
        f"workers{_threads(result)}; database {result['database']}, "
        f"limits and caches {result['ratelimit_storage']}",
        f"- Load: {result['duration_seconds']:g} s per scenario after "
        f"{result['warm_up_seconds']:g} s of warm-up; {about['wrk']} with bench/load.lua, or "
        "bench/pyload.py (threads) for SMS and passkey sign-ins; "
        f"{result['connections']} connections, password sign-in "
        f"{result['password_connections']}; {result['accounts']} accounts",
        "",
        "| scenario | rps | ceiling | ceiling rps | ratio | target | p50 / p95 / p99 ms "
        "| errors | peak RSS per worker (MB) | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in result["scenarios"].items():
        target = _target(figures["target"])
        if "skipped" in figures:
            lines.append(
                f"| {name} | skipped: {figures['skipped']} | {figures['ceiling']} "
                f"| | | {target} | | | | no |"
            )
            continue
        lines.append(
            f"| {name} | {figures['rps']:,} | {figures['ceiling']} | {figures['ceiling_rps']:,} "
            f"| {figures['ratio']:.3f} | {target} | {_ms(figures)} | {figures['errors']} "
            f"| {figures['rss_mb']} | {'yes' if figures['met'] else '**no**'} |"
        )
    ceilings = result["ceilings"]
    lines += ["", "Ceilings measured in the same run:", ""]
    for kind, runs in ceilings.items():
        if runs:
            shown = ", ".join(f"{x:,}" for x in runs)
            lines.append(f"- {CEILING_NAMES[kind]}: {shown}")
    lines += _cpu_table(result)
    lines += _floor_table(result)
    lines += _peer(result.get("node_oidc_provider"))
    lines += [
        "",
        "A sign-in scenario's rate counts whole sign-ins (SMS: code request, the code "
        "read from the gateway, sign-in; passkey: options, signature, verify). A "
        "scenario's bare ceiling is the mean of the bare runs right before and after it. "
        f"Every scenario must also stay under {RSS_MB:g} MB per worker with no errors.",
        "",
    ]
    return "\n".join(lines)
