"""What the request telemetry costs: CPU per request of GET /healthz with the
request-id and metrics middleware (app/telemetry/middleware.py) against the
same app with it unwrapped, in-process (Flask test client), one thread.

    .venv/bin/python -m bench.telemetry_overhead [--requests 2000] [--blocks 8]

Runs twice, each in a process of its own: prometheus-client's in-memory
values (`privid serve`, tests) and its multiprocess files (gunicorn, with
PROMETHEUS_MULTIPROC_DIR set before the import). Blocks with and without
alternate, so drift on a shared machine hits both; the result is the median
of the blocks' per-request CPU time (time.process_time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(requests: int, blocks: int) -> dict[str, float]:
    from app import create_app
    from bench.common import bench_settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(bench_settings(f"sqlite:///{tmp}/bench.db", "memory://"))
        wrapped = app.wsgi_app
        bare = wrapped._app  # type: ignore[attr-defined]
        client = app.test_client()
        per_block = requests // blocks

        def block(wsgi: object) -> float:
            app.wsgi_app = wsgi  # type: ignore[method-assign]
            started = time.process_time()
            for _ in range(per_block):
                assert client.get("/healthz").status_code == 200
            return (time.process_time() - started) / per_block * 1e6

        block(wrapped), block(bare)  # warm-up
        alone = middleware_alone(wrapped.__class__)
        with_us, without_us = [], []
        for _ in range(blocks):
            with_us.append(block(wrapped))
            without_us.append(block(bare))
        app.extensions["privid.engine"].dispose()
    return {
        "requests_each": per_block * blocks,
        "cpu_us_per_request_with": round(statistics.median(with_us), 1),
        "cpu_us_per_request_without": round(statistics.median(without_us), 1),
        "added_cpu_us_per_request": round(
            statistics.median(w - b for w, b in zip(with_us, without_us, strict=True)), 1
        ),
        # The same layer around a WSGI app that does nothing, called directly:
        # what the server spends, without the test client reading one more header.
        "middleware_alone_cpu_us_per_request": round(alone, 1),
        "middleware_alone_with_caller_id_cpu_us_per_request": round(
            middleware_alone(wrapped.__class__, "rp-trace-0001"), 1
        ),
    }


def middleware_alone(layer: type, caller_id: str | None = None, calls: int = 20000) -> float:
    def nothing(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [])  # type: ignore[operator]
        return []

    def start_response(status: str, headers: list[object], exc_info: object = None) -> None:
        return None

    environ = {"REQUEST_METHOD": "GET", "privid.route": "/healthz"}
    if caller_id:
        environ["HTTP_X_REQUEST_ID"] = caller_id
    wrapped = layer(nothing)
    times = []
    for app in (nothing, wrapped, nothing, wrapped):
        started = time.process_time()
        for _ in range(calls):
            app(dict(environ), start_response)
        times.append((time.process_time() - started) / calls * 1e6)
    return (times[1] + times[3] - times[0] - times[2]) / 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--inner", choices=["memory", "multiprocess"])
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(measure(args.requests, args.blocks)))
        return
    result: dict[str, object] = {
        "benchmark": "GET /healthz in-process, request telemetry on vs unwrapped, one thread"
    }
    for mode in ("memory", "multiprocess"):
        env = dict(os.environ)
        with tempfile.TemporaryDirectory() as metrics_dir:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            out = subprocess.run(
                [sys.executable, "-m", "bench.telemetry_overhead", "--inner", mode,
                 "--requests", str(args.requests), "--blocks", str(args.blocks)],
                env=env, check=True, capture_output=True, text=True, timeout=600,
            ).stdout  # fmt: skip
        result[mode] = json.loads(out.strip().splitlines()[-1])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "telemetry_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
