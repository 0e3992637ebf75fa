"""Passkey sign-ins (options + verify) per second on one core, against the raw
ES256 signature verifications per second the same core does.

    .venv/bin/python -m bench.webauthn_throughput [--seconds 10]

In-process (Flask test client, SQLite file, in-memory limits), one thread:
the sign-in loop and the ceiling loop run on the same single core. The
authenticator's own signing (a client-side cost) is timed and subtracted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench.common import in_process_app
from tests.soft_authenticator import SoftAuthenticator

PASSWORD = "velvet-orbit-canyon-42"
RESULTS = Path(__file__).resolve().parent / "results"


def es256_ceiling(seconds: float) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 200  # authenticator data + client data hash, roughly
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        done += 1
    return done / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with in_process_app(PASSWORD, grant=("device_biometrics",)) as (email, client):
        token = client.post(
            "/api/v1/login/password",
            json={"identifier": email, "password": PASSWORD, "token_delivery": "bearer"},
        ).json["token"]
        auth = {"Authorization": f"Bearer {token}"}
        authenticator = SoftAuthenticator()
        options = client.post("/api/v1/webauthn/registration/options", headers=auth).json
        created = authenticator.create(options)
        enrolled = client.post(
            "/api/v1/webauthn/registration/verify",
            json={**created, "challenge_id": options["challenge_id"]},
            headers=auth,
        )
        assert enrolled.status_code == 201, enrolled.json

        signing = 0.0
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            request_options = client.post("/api/v1/webauthn/authentication/options").json
            t0 = time.perf_counter()
            answer = authenticator.get(request_options)
            signing += time.perf_counter() - t0
            verified = client.post(
                "/api/v1/webauthn/authentication/verify",
                json={
                    **answer,
                    "challenge_id": request_options["challenge_id"],
                    "token_delivery": "bearer",
                },
            )
            assert verified.status_code == 200, verified.json
            done += 1
        server_seconds = time.perf_counter() - started - signing
    ceiling = es256_ceiling(args.seconds / 2)

    rate = done / server_seconds
    result = {
        "benchmark": "passkey sign-in (options + verify), one core",
        "database": "sqlite",
        "sign_ins_per_second": round(rate, 1),
        "es256_verifications_per_second": round(ceiling, 1),
        "ratio": round(rate / ceiling, 4),
        "server_ms_per_sign_in": round(1000 / rate, 2),
        "es256_verify_ms": round(1000 / ceiling, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "webauthn_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
