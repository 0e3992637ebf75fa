"""What the sign-in and session scenarios of bench/run_all.py spend, made
through the running service as a user would make it: bearer sessions
(password sign-ins), passkeys (enrolled with a software authenticator whose
keys the load generator then holds) and access tokens for UserInfo (from
refresh grants, bench/oidc_seed.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from tests.soft_authenticator import SoftAuthenticator, b64url

API = "/api/v1"
TIMEOUT = 30
# Seeding requests in flight at once: each sign-in is an argon2 verification,
# so a few keep every worker busy without queueing behind each other.
SEEDING_CLIENTS = 4


T = TypeVar("T")


def in_parallel(make: Callable[[str], T], emails: Sequence[str]) -> list[T]:
    with ThreadPoolExecutor(SEEDING_CLIENTS) as pool:
        return list(pool.map(make, emails))


def password_body(identifier: str, password: str) -> str:
    """The password sign-in a bearer client sends (JSON)."""
    return json.dumps({"identifier": identifier, "password": password, "token_delivery": "bearer"})


def sign_in(base: str, email: str, password: str) -> str:
    """A bearer session token."""
    answer = requests.post(
        f"{base}{API}/login/password",
        data=password_body(email, password),
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def session_lines(base: str, emails: Sequence[str], password: str, per_account: int) -> list[str]:
    """`per_account` bearer sessions of each account, as wrk list lines."""
    return in_parallel(
        lambda email: f"Bearer {sign_in(base, email, password)}\t", list(emails) * per_account
    )


def enrol_passkeys(
    base: str, emails: Sequence[str], password: str, origin: str
) -> list[dict[str, Any]]:
    """One discoverable ES256 passkey per account, enrolled through the API;
    returns what the load generator needs to sign with them."""

    def enrol(email: str) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {sign_in(base, email, password)}"}
        authenticator = SoftAuthenticator(origin=origin)
        options = requests.post(
            f"{base}{API}/webauthn/registration/options", headers=auth, timeout=TIMEOUT
        )
        options.raise_for_status()
        created = authenticator.create(options.json())
        enrolled = requests.post(
            f"{base}{API}/webauthn/registration/verify",
            json={**created, "challenge_id": options.json()["challenge_id"]},
            headers=auth,
            timeout=TIMEOUT,
        )
        enrolled.raise_for_status()
        stored = authenticator.credentials[0]
        key = stored.key.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        return {
            "id": b64url(stored.credential_id),
            "key": key.decode(),
            "user": b64url(stored.user_handle),
            "rp_id": stored.rp_id,
            "sign_count": stored.sign_count,
        }

    return in_parallel(enrol, emails)


def access_token_lines(base: str, refresh: Sequence[str]) -> list[str]:
    """Access tokens of users' grants (one refresh each), as wrk list lines
    for UserInfo."""
    lines = []
    for line in refresh:
        auth, _, token = line.partition("\t")
        answer = requests.post(
            f"{base}/oauth/token",
            data=f"grant_type=refresh_token&refresh_token={token}",
            headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"},
            timeout=TIMEOUT,
        )
        answer.raise_for_status()
        lines.append(f"Bearer {answer.json()['access_token']}\t")
    return lines
