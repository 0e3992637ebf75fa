"""One scenario's load and what it measured: wrk with bench/load.lua for
single requests, bench/pyload.py for sign-ins a script cannot do (an SMS code
read from the gateway, a passkey signature); both from a process of their own,
both ending with the same summary line."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.common import ROOT, Served, WorkerSampler

LUA = Path(__file__).resolve().parent / "load.lua"
SUMMARY = "WRK-JSON "
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
# Longest a single answer may take before it counts as a timeout.
TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Load:
    """What the load generator saw in one run; the largest worker's peak
    memory, the CPU time all workers spent during it, and where the machine's
    CPU went (bench.common.WorkerSampler.cpu_by_part)."""

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
    cpu_seconds_by_part: Mapping[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.refused + self.socket_errors

    @property
    def answered(self) -> int:
        """Every request that got an answer, refused ones too."""
        return self.ok + self.refused

    @property
    def cpu_ms_per_answer(self) -> float:
        """Worker CPU per answered request: what the service itself spends,
        apart from the database, Redis and the load generator."""
        answered = self.answered
        return 1000 * self.worker_cpu_seconds / answered if answered else 0.0

    def cpu_ms_per_answer_by_part(self) -> dict[str, float]:
        """Each part's CPU per answered request, and the whole machine's."""
        answered = self.answered
        if not answered:
            return {}
        return {k: round(1000 * v / answered, 3) for k, v in self.cpu_seconds_by_part.items()}


def parse_wrk(
    stdout: str,
    peak_rss_mib: float,
    worker_cpu_seconds: float = 0.0,
    cpu_seconds_by_part: Mapping[str, float] | None = None,
) -> Load:
    """The Load from the summary line bench/load.lua's done() (or
    bench/pyload.py) prints."""
    found = [x for x in stdout.splitlines() if x.startswith(SUMMARY)]
    if not found:
        raise RuntimeError(f"the load printed no summary; its output ends: {stdout[-300:]!r}")
    raw = json.loads(found[-1].removeprefix(SUMMARY))
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
        cpu_seconds_by_part=dict(cpu_seconds_by_part or {}),
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    # Text every good answer carries: a 200 without it counts as refused
    # (an introspection answering "active": false measured nothing).
    expect: str
    # "rotate": lines are sent in turn; "refresh": each line's token is spent
    # once (bench/load.lua); "python": bench/pyload.py drives a whole sign-in.
    mode: str = "rotate"
    content_type: str = FORM
    # What the rate is compared with: "bare" (bench/bare_app.py through the
    # same server), "argon2" or "es256" (verifications/s on the same cores).
    ceiling: str = "bare"

    @property
    def loader(self) -> str:
        return "python" if self.mode == "python" else "wrk"


def body_of(scenario: Scenario, value: str) -> str:
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
    and a value, tab-separated (bench/load.lua says how each mode spends
    them)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        if lines:
            listing.write("".join(f"{line}\n" for line in lines))
            listing.flush()
        command = [
            "wrk", "--threads", str(connections), "--connections", str(connections),
            "--duration", f"{seconds:g}s", "--timeout", f"{TIMEOUT_SECONDS}s",
            "--script", str(LUA), f"{server.base}{scenario.path}", "--",
            scenario.mode, scenario.method, scenario.path, listing.name if lines else "-",
            str(connections), scenario.expect, scenario.content_type,
        ]  # fmt: skip
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
            assert process.stdout is not None
            overdue = threading.Timer(seconds + 60, process.kill)
            overdue.start()
            try:
                # Sampled until wrk's output ends, before it is reaped: a
                # reaped process's CPU can no longer be read.
                with WorkerSampler(server.pid, loader=process.pid) as workers:
                    stdout = process.stdout.read()
            finally:
                overdue.cancel()
            if process.wait(timeout=60) != 0:
                raise subprocess.CalledProcessError(process.returncode, command, stdout)
    return parse_wrk(stdout, workers.peak_mib(), workers.cpu_used, workers.cpu_by_part)


def python_load(
    server: Served,
    scenario: Scenario,
    spec: dict[str, object],
    *,
    connections: int,
    seconds: float,
    warm_up: float,
) -> Load | str:
    """bench/pyload.py in a process of its own: one sign-in as a probe, then
    `warm_up` seconds, then `seconds` measured. The workers are sampled from
    the moment it says the measured part begins."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as listing:
        json.dump(spec, listing)
        listing.flush()
        command = [
            sys.executable, "-m", "bench.pyload", scenario.name, "--base", server.base,
            "--spec", listing.name, "--threads", str(connections),
            "--seconds", f"{seconds:g}", "--warm-up", f"{warm_up:g}",
        ]  # fmt: skip
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
            assert process.stdout is not None
            first = process.stdout.readline()
            if not first.startswith("MEASURING"):
                process.wait(timeout=30)
                return first.removeprefix("SKIPPED ").strip() or "the loader exited"
            # Sampled until its output ends, before it is reaped: a reaped
            # process's CPU can no longer be read.
            with WorkerSampler(server.pid, loader=process.pid) as workers:
                rest = process.stdout.read()
            process.wait(timeout=60)
    return parse_wrk(rest, workers.peak_mib(), workers.cpu_used, workers.cpu_by_part)


def probe(base: str, scenario: Scenario, line: str) -> str | None:
    """None if one request like the load's gets a good answer, else why not."""
    auth, _, value = line.partition("\t")
    body = body_of(scenario, value) if value else None
    headers = {"Content-Type": scenario.content_type} if body else {}
    if auth:
        headers["Authorization"] = auth
    answer = requests.request(
        scenario.method, f"{base}{scenario.path}", data=body, headers=headers, timeout=30
    )
    if answer.status_code == 200:
        good = scenario.expect in answer.text
        return None if good else f"a probe request was answered 200 without {scenario.expect}"
    return f"a probe request was answered {why_refused(answer)}"


def why_refused(answer: requests.Response) -> str:
    """The status and the error's name only: an answer may carry a token."""
    problem = "json" in answer.headers.get("Content-Type", "")
    reason = (answer.json().get("error") or answer.json().get("title")) if problem else None
    return f"{answer.status_code} {reason or ''}".strip()


def measure(
    server: Served,
    scenario: Scenario,
    lines: Sequence[str] | None,
    *,
    connections: int,
    seconds: float,
    warm_up: float,
) -> Load | str:
    """A probe request, `warm_up` seconds (not where tokens are spent once),
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
    if scenario.mode == "rotate" and warm_up > 0:
        wrk(server, scenario, lines, connections=connections, seconds=warm_up)
    return wrk(server, scenario, lines, connections=connections, seconds=seconds)
