"""What sender-constraining costs: authenticated requests per second with a
DPoP-bound token against the same requests with a plain bearer token, and the
DPoP proof checks per second the same core does on their own (the ceiling).

    .venv/bin/python -m bench.dpop_overhead [--seconds 10]

In-process (Flask test client, SQLite file, in-memory replay cache), one
thread, one core. The client's own proof signing is timed and subtracted.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from flask.testing import FlaskClient

from app.security.dpop import DpopVerifier
from bench.common import in_process_app
from tests.dpop_client import DpopKey

PASSWORD = "velvet-orbit-canyon-42"
RESULTS = Path(__file__).resolve().parent / "results"
ORIGIN = "https://localhost"
PATH = "/api/v1/me"


def sign_in(client: FlaskClient, email: str, key: DpopKey | None) -> str:
    headers = {"DPoP": key.proof("POST", "/api/v1/login/password")} if key else {}
    response = client.post(
        "/api/v1/login/password",
        json={"identifier": email, "password": PASSWORD, "token_delivery": "bearer"},
        headers=headers,
    )
    assert response.status_code == 200, response.json
    return str(response.json["token"])


def requests_per_second(
    client: FlaskClient, token: str, key: DpopKey | None, seconds: float
) -> tuple[float, float]:
    """(server-side requests per second, client signing ms per request)."""
    signing, done, started = 0.0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if key is None:
            headers = {"Authorization": f"Bearer {token}"}
        else:
            t0 = time.perf_counter()
            headers = key.headers("GET", PATH, token)
            signing += time.perf_counter() - t0
        response = client.get(PATH, headers=headers)
        assert response.status_code == 200, response.json
        done += 1
    server = time.perf_counter() - started - signing
    return done / server, 1000 * signing / max(done, 1)


def verifier_ceiling(seconds: float) -> float:
    """Proof checks alone (parse, signature, claims), one proof over and over."""
    verifier = DpopVerifier(max_age_seconds=300, future_skew_seconds=30)
    key = DpopKey()
    proof = key.proof("GET", PATH, token="t" * 43)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        verifier.verify(
            proof, method="GET", url=ORIGIN + PATH, now=datetime.now(UTC), access_token="t" * 43
        )
        done += 1
    return done / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with in_process_app(PASSWORD, public_url=ORIGIN) as (email, client):
        key = DpopKey()
        bearer_rate, _ = requests_per_second(
            client, sign_in(client, email, None), None, args.seconds
        )
        dpop_rate, signing_ms = requests_per_second(
            client, sign_in(client, email, key), key, args.seconds
        )
    ceiling = verifier_ceiling(args.seconds / 2)

    result = {
        "benchmark": "authenticated GET /api/v1/me, bearer vs DPoP-bound, one core",
        "database": "sqlite",
        "bearer_requests_per_second": round(bearer_rate, 1),
        "dpop_requests_per_second": round(dpop_rate, 1),
        "dpop_proof_checks_per_second": round(ceiling, 1),
        "ratio_dpop_requests_to_proof_checks": round(dpop_rate / ceiling, 4),
        "ratio_dpop_to_bearer": round(dpop_rate / bearer_rate, 3),
        "added_server_ms_per_request": round(1000 / dpop_rate - 1000 / bearer_rate, 3),
        "proof_check_ms": round(1000 / ceiling, 3),
        "client_signing_ms_per_request": round(signing_ms, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dpop_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
