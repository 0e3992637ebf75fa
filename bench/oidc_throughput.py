"""The OAuth / OpenID endpoints only: `python -m bench` (bench/run_all.py)
limited to JWKS, client_credentials, introspection and refresh_token unless
--only says otherwise, writing to bench/results/oidc_throughput/ unless
--output says otherwise (bench/results.json is the whole run's); every other
option is the same.

    .venv/bin/python -m bench.oidc_throughput [--workers 2] [--duration 10] [--connections 8]
        [--clients 32] [--users 8] [--only jwks --only client_credentials ...]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.run_all import BENCH, CLIENT_CREDENTIALS, INTROSPECTION, JWKS, REFRESH, main

OIDC_SCENARIOS = (JWKS, CLIENT_CREDENTIALS, INTROSPECTION, REFRESH)
OUTPUT = BENCH / "results" / "oidc_throughput"


def oidc_arguments(argv: Sequence[str]) -> list[str]:
    """`argv`, with the OIDC scenarios chosen unless it chooses some, 8
    users for the refresh grants unless it says how many, and its own output
    directory unless it names one."""
    chosen = [] if "--only" in argv else [x for s in OIDC_SCENARIOS for x in ("--only", s.name)]
    users = [] if {"--users", "--accounts"} & set(argv) else ["--users", "8"]
    output = [] if "--output" in argv else ["--output", str(OUTPUT)]
    return [*argv, *chosen, *users, *output]


if __name__ == "__main__":
    main(oidc_arguments(sys.argv[1:]))
