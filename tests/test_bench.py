"""The benchmark command (`python -m bench`, bench/run_all.py): what it reports
per scenario is computed from what the load generator saw, against its
ceiling and issue 13's targets; and the command itself runs every scenario end
to end, briefly, with good answers only. (No timing is asserted: figures on a
shared machine mean nothing.)"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.common import WorkerSampler, cpu_spent
from bench.load import Load, parse_wrk
from bench.node_oidc import peer_figures
from bench.oidc_seed import BenchClient
from bench.oidc_throughput import oidc_arguments
from bench.pyload import summary
from bench.report import TARGETS, Target, render, scenario_result
from bench.run_all import SCENARIOS
from tests.fakes import SmsGateway

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"rps", "p50_ms", "p95_ms", "p99_ms", "errors", "rss_mb", "ceiling_rps", "ratio"}
# The whole command, every scenario, must finish well within this.
RUN_SECONDS = 90


def load(ok: int, seconds: float = 10.0, **changes: object) -> Load:
    fields: dict[str, object] = {
        "seconds": seconds,
        "ok": ok,
        "refused": 0,
        "socket_errors": 0,
        "p50_ms": 2.0,
        "p95_ms": 5.0,
        "p99_ms": 9.0,
        "peak_rss_mib": 100.0,
    }
    return Load(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_ratio_is_good_answers_per_second_over_the_ceiling():
    result = scenario_result(load(6_400), "bare", 2_000.0, Target(0.35))
    assert (result["rps"], result["ceiling_rps"], result["ratio"]) == (640.0, 2000.0, 0.32)
    assert result["met"] is False  # 0.32 is under 0.35
    assert scenario_result(load(8_000), "bare", 2_000.0, Target(0.35))["met"] is True


def test_errors_a_slow_p99_or_a_large_worker_each_miss_the_target():
    target = Target(0.35)
    failing = scenario_result(load(9_000, refused=40, socket_errors=2), "bare", 2_000.0, target)
    assert failing["rps"] == 900.0  # the 42 failures do not count
    assert (failing["errors"], failing["bad_answers"], failing["socket_errors"]) == (42, 40, 2)
    assert failing["met"] is False
    assert scenario_result(load(9_000, p99_ms=250.0), "bare", 2_000.0, target)["met"] is False
    big = scenario_result(load(9_000, peak_rss_mib=150.0), "bare", 2_000.0, target)
    assert (big["rss_mb"], big["met"]) == (150.0, False)


def test_password_sign_in_has_no_latency_bound_and_reference_ceilings_no_ratio():
    slow = load(900, p99_ms=900.0)
    assert scenario_result(slow, "argon2", 100.0, TARGETS["password_sign_in"])["met"] is True
    passkeys = scenario_result(load(500), "es256", 10_000.0, TARGETS["passkey_sign_in"])
    assert passkeys["ratio"] == 0.005 and passkeys["met"] is True
    assert passkeys["target"] == {"p99_ms": 250.0, "rss_mb": 150.0, "errors": 0}
    assert TARGETS["session_read"].ratio == 0.5
    assert {s.name for s in SCENARIOS} == set(TARGETS)


def test_an_unmeasured_scenario_says_why_and_misses_its_target():
    why = "a probe request was answered 401 invalid_client"
    result = scenario_result(why, "bare", 2_000.0, Target(0.35))
    assert result["skipped"] == why and result["met"] is False and "rps" not in result


def test_the_summary_line_is_read_in_seconds_and_milliseconds():
    stdout = (
        "Running 10s test @ http://127.0.0.1:1/bare\n"
        'WRK-JSON {"duration_us": 2500000, "requests": 1010, "ok": 1000, "refused": 10, '
        '"dropped": 0, "connect": 1, "read": 2, "write": 3, "status": 10, "timeout": 4, '
        '"p50_us": 1500, "p95_us": 4000, "p99_us": 12250, "max_us": 20000}\n'
    )
    parsed = parse_wrk(stdout, peak_rss_mib=88.5, worker_cpu_seconds=2.02)
    assert parsed.rps == 400.0
    # CPU per answer: 2.02 s over the 1,010 answered requests, refused ones too.
    assert parsed.cpu_ms_per_answer == pytest.approx(2.0)
    # wrk's "status" errors are the refused answers again, not counted twice.
    assert (parsed.refused, parsed.socket_errors, parsed.errors) == (10, 10, 20)
    assert (parsed.p50_ms, parsed.p95_ms, parsed.p99_ms) == (1.5, 4.0, 12.25)
    with pytest.raises(RuntimeError, match="no summary"):
        parse_wrk("wrk: unable to connect\n", peak_rss_mib=0.0)


def test_where_the_cores_went_is_per_answer_beside_the_targets_budget():
    used = {"workers": 3.0, "postgres": 1.0, "machine": 5.0}
    figures = scenario_result(
        load(1_900, refused=100, cpu_seconds_by_part=used), "bare", 4_000.0, Target(0.5)
    )
    # Per answered request (refused ones too): 2,000 answers.
    assert figures["cpu_ms_per_request"] == {"workers": 1.5, "postgres": 0.5, "machine": 2.5}
    # 0.5 of 4,000/s on this machine's cores leaves cores × 1000 / 2,000 ms each.
    assert figures["machine_cpu_ms_budget"] == pytest.approx((os.cpu_count() or 1) / 2, abs=1e-3)
    assert "machine_cpu_ms_budget" not in scenario_result(
        load(10), "es256", 9.0, TARGETS["passkey_sign_in"]
    )


def test_each_part_counts_what_its_processes_spent_during_the_run_only():
    before = {10: ("postgres", 50.0), 11: ("postgres", 7.0), 12: ("loader", 1.0)}
    # 10 spent 2 s; 11 ended (its lifetime is not taken off); 13 began and spent 0.5 s.
    after = {10: ("postgres", 52.0), 12: ("loader", 1.25), 13: ("postgres", 0.5)}
    spent = cpu_spent(before, after)
    assert spent["postgres"] == pytest.approx(2.5) and spent["loader"] == pytest.approx(0.25)
    assert spent["workers"] == spent["redis"] == 0.0


def test_a_busy_loader_process_is_counted_as_the_loader_and_in_the_machine():
    burn = (
        "import time\nend = time.process_time() + 0.5\n"
        "while time.process_time() < end: pass\nprint('burnt', flush=True)\ntime.sleep(10)"
    )
    burner = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE, text=True)
    try:
        # No gunicorn master here (-1): no workers; the burner is the loader.
        with WorkerSampler(master=-1, loader=burner.pid) as sampler:
            assert burner.stdout is not None and burner.stdout.readline() == "burnt\n"
    finally:
        burner.kill()
        burner.wait(timeout=10)
    spent = sampler.cpu_by_part
    assert set(spent) == {"workers", "postgres", "redis", "loader", "other", "machine"}
    assert spent["workers"] == 0.0
    assert spent["loader"] >= 0.45  # the half second it burnt (clock ticks of 10 ms)
    assert spent["machine"] >= spent["loader"]


def test_the_python_loader_counts_only_sign_ins_inside_the_measured_seconds():
    done = [
        (0.5, 1.2, "ok"),  # began during warm-up
        (1.0, 1.1, "ok"),
        (1.2, 1.4, "refused"),
        (1.5, 1.9, "timeout"),
        (1.9, 2.3, "ok"),  # still running at the end
    ]
    line = summary(done, began=1.0, ended=2.0)
    assert (line["ok"], line["refused"], line["timeout"], line["requests"]) == (1, 1, 1, 3)
    assert (line["duration_us"], line["p50_us"]) == (1_000_000, 100_000)
    assert parse_wrk(f"WRK-JSON {json.dumps(line)}", 0.0).errors == 2


def test_the_gateway_hands_the_newest_code_to_whoever_reads_the_phone():
    with SmsGateway("t0ken") as gateway:
        for text in ("Your code is 111111", "Your code is 222222"):
            sent = requests.post(
                f"{gateway.base}/messages",
                json={"to": "+8613900000000", "text": text},
                headers={"Authorization": "Bearer t0ken"},
                timeout=5,
            )
            assert sent.status_code == 200
        stranger = requests.post(
            f"{gateway.base}/messages",
            json={"to": "+8613900000000", "text": "333333"},
            headers={"Authorization": "Bearer wrong"},
            timeout=5,
        )
        assert stranger.status_code == 401
        read = requests.get(f"{gateway.base}/codes", params={"to": "+8613900000000"}, timeout=5)
        assert read.json() == {"code": "222222"}
        assert (
            gateway.outbox.take_code("+8613900000000", wait=0.1) is None
        )  # the older one went too


def test_the_peer_comparison_is_the_services_rate_over_node_oidc_providers():
    figures = peer_figures(load(50_000), {"rps": 2_600.0})
    assert (figures["rps"], figures["privid_share"], figures["met"]) == (5000.0, 0.52, True)
    assert peer_figures(load(50_000), {"rps": 2_400.0})["met"] is False
    assert peer_figures("a probe request was answered 401", {}) == {
        "skipped": "a probe request was answered 401"
    }


def test_client_authentication_form_encodes_id_and_secret_before_base64():
    header = BenchClient("ab12", "s3cr+t/=").authorization
    assert header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")) == b"ab12:s3cr%2Bt%2F%3D"


def test_the_oidc_command_is_the_same_run_limited_to_the_oidc_endpoints():
    assert oidc_arguments(["--workers", "3"]) == [
        "--workers", "3", "--only", "jwks", "--only", "client_credentials",
        "--only", "introspection", "--only", "refresh_token", "--users", "8",
        "--output", str(ROOT / "bench" / "results" / "oidc_throughput"),
    ]  # fmt: skip
    mine = ["--only", "jwks", "--users", "2", "--output", "elsewhere"]
    assert oidc_arguments(mine) == mine


def run_bench(tmp_path: Path, database_url: str, *options: str) -> dict[str, Any]:
    """`python -m bench` for about a second per scenario, on the suite's
    PostgreSQL + Redis when it runs on them. ``database_url`` is the suite's
    fixture, so what the run leaves in PostgreSQL is emptied after the test
    like any other test's rows."""
    env = {**os.environ}
    if os.environ.get("PRIVID_TEST_DATABASE_URL"):
        env["PRIVID_BENCH_DATABASE_URL"] = database_url
        env["PRIVID_BENCH_RATELIMIT_URI"] = os.environ.get(
            "PRIVID_TEST_RATELIMIT_STORAGE_URI", "memory://"
        )
    else:
        env.pop("PRIVID_BENCH_DATABASE_URL", None)
        env.pop("PRIVID_BENCH_RATELIMIT_URI", None)
    command = [
        sys.executable, "-m", "bench", "--duration", "1", "--warm-up", "0",
        "--connections", "2", "--password-connections", "4", "--accounts", "4",
        "--clients", "2", "--output", str(tmp_path), *options,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_SECONDS
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "RESULTS.md").read_text() == render(result)
    return result


def assert_good_answers_only(scenario: str, figures: dict[str, Any]) -> None:
    assert "skipped" not in figures, f"{scenario}: {figures.get('skipped')}"
    assert figures.keys() >= FIELDS | {"target", "met"}, scenario
    assert figures["requests_ok"] > 0, scenario
    assert figures["errors"] == 0, f"{scenario}: {figures}"
    assert figures["ceiling_rps"] > 0 and figures["rss_mb"] > 0, scenario
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"], scenario


def test_one_command_measures_every_scenario_against_its_ceiling(tmp_path, database_url):
    result = run_bench(tmp_path, database_url)
    assert list(result["scenarios"]) == [s.name for s in SCENARIOS]
    for name, figures in result["scenarios"].items():
        assert_good_answers_only(name, figures)
    scenarios = result["scenarios"]
    assert scenarios["password_sign_in"]["ceiling"] == "argon2"
    assert scenarios["passkey_sign_in"]["ceiling"] == "es256"
    assert scenarios["session_read"]["ceiling"] == "bare"
    # The bare endpoint before the first scenario and after each measured against it.
    assert len(result["ceilings"]["bare"]) == 1 + sum(
        1 for figures in scenarios.values() if figures["ceiling"] == "bare"
    )
    assert len(result["ceilings"]["argon2"]) == 2 and len(result["ceilings"]["es256"]) == 1
    # Where the cores went, for the bare endpoint and each scenario.
    assert result["bare_cpu_ms_per_request"]["workers"] > 0
    for name, figures in scenarios.items():
        used = figures["cpu_ms_per_request"]
        assert used["workers"] > 0 and used["machine"] >= used["workers"], name
    # (A second of a slow scenario may cost its loader less than a clock tick.)
    assert scenarios["jwks"]["cpu_ms_per_request"]["loader"] > 0
    assert "| bare endpoint (mean) |" in (tmp_path / "RESULTS.md").read_text()
    # Each refresh token was spent once.
    assert result["grants_revoked_as_reused"] == 0
    assert result["machine"]["nproc"] == os.cpu_count() and result["server"] == "gunicorn"


def test_granian_serves_the_service_and_the_bare_endpoint_alike(tmp_path, database_url):
    result = run_bench(tmp_path, database_url, "--server", "granian", "--only", "session_read")
    assert result["server"] == "granian" and result["workers"] == 2
    for name, figures in result["scenarios"].items():
        assert_good_answers_only(name, figures)


def test_the_floor_app_takes_the_same_load_on_postgresql_only(tmp_path, database_url):
    only = [f"--only={name}" for name in ("client_credentials", "refresh_token")]
    only += ["--only=introspection", "--only=session_read"]
    if not os.environ.get("PRIVID_TEST_DATABASE_URL"):
        refused = subprocess.run(
            [sys.executable, "-m", "bench", "--floor", *only, "--output", str(tmp_path)],
            cwd=ROOT, env={k: v for k, v in os.environ.items() if "PRIVID_BENCH" not in k},
            capture_output=True, text=True, timeout=RUN_SECONDS,
        )  # fmt: skip
        assert refused.returncode != 0 and "--floor needs PostgreSQL" in refused.stderr
        assert not (tmp_path / "results.json").exists()
        return
    result = run_bench(tmp_path, database_url, "--floor", *only)
    for name, figures in result["scenarios"].items():
        assert_good_answers_only(name, figures)
        floor = figures["floor"]
        # Every floor answer carried what the service's answer must carry.
        assert floor["errors"] == 0 and floor["rps"] > 0, name
        assert floor["service_share"] == pytest.approx(figures["rps"] / floor["rps"], rel=0.01)
    assert "| session_read |" in (tmp_path / "RESULTS.md").read_text().split("floor_app.py")[1]
