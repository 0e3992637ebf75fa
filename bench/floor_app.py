"""How far this stack goes when nothing but the work is done: the hot
endpoints written straight on Flask and psycopg, against the service's own
tables, served by the same gunicorn command (``python -m bench --floor``).

It is a measuring aid, not a second implementation: no ORM, no authlib, no
middleware, no logs or metrics, no consent or policy checks, no profile
decryption. What it keeps is what a grant, an introspection or a session read
cannot do without on this stack: parse the request, read the client or the
session by a hashed secret, compare the secret's hash, sign an RS256 access
token (the bench partners' format), record grant and token in one INSERT and
commit, answer JSON. Its rate over the bare endpoint's is the most any code on
Flask + psycopg + PostgreSQL could reach here; the service's rate over its
rate is what the service's own layers cost.

PRIVID_DATABASE_URL must name PostgreSQL (psycopg)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import psycopg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask, Response, request

app = Flask(__name__)

_CLIENT = "SELECT secret_hash, disabled_at FROM oauth_clients WHERE client_id = %s"
_GRANT_AND_TOKEN = (
    "WITH grant_row AS (INSERT INTO oauth_grants (id, client_id, scopes, created_at, expires_at)"
    " VALUES (%(grant)s, %(client)s, '[]', %(now)s, %(expires)s))"
    " INSERT INTO oauth_tokens (id, grant_id, kind, token_hash, scopes, issued_at, expires_at)"
    " VALUES (%(token)s, %(grant)s, 'access', %(hash)s, '[]', %(now)s, %(expires)s)"
)
_TOKEN = (
    "SELECT t.expires_at, t.revoked_at, g.client_id, g.revoked_at FROM oauth_tokens t"
    " JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = %s AND t.kind = 'access'"
)
_REFRESH = (
    "SELECT t.grant_id, t.expires_at, t.used_at, t.revoked_at, t.scopes, g.client_id,"
    " g.revoked_at, g.user_id FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id"
    " WHERE t.token_hash = %s AND t.kind = 'refresh' FOR UPDATE OF t"
)
_SPEND = "UPDATE oauth_tokens SET used_at = %s WHERE token_hash = %s"
_ROTATE = (
    "INSERT INTO oauth_tokens (id, grant_id, kind, token_hash, scopes, issued_at, expires_at)"
    " VALUES (%(access_id)s, %(grant)s, 'access', %(access_hash)s, %(scopes)s, %(now)s,"
    " %(access_expires)s), (%(refresh_id)s, %(grant)s, 'refresh', %(refresh_hash)s, %(scopes)s,"
    " %(now)s, %(refresh_expires)s)"
)
_SESSION = (
    "SELECT s.user_id, s.expires_at, s.revoked_at, u.status FROM sessions s"
    " JOIN users u ON u.id = s.user_id WHERE s.token_hash = %s"
)
_ISSUER = "https://floor.invalid"
_LIFETIME = timedelta(hours=1)
# One key per worker, made at start: signing costs the same with any key.
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_connection: psycopg.Connection[Any] | None = None


def _db() -> psycopg.Connection[Any]:
    """This worker's connection, opened after the fork."""
    global _connection
    if _connection is None or _connection.closed:
        url = os.environ["PRIVID_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        _connection = psycopg.connect(url, autocommit=True)
    return _connection


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def _client_id() -> str | None:
    """The client a Basic header names, if its secret is right and it is enabled."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    client_id, secret = unquote(client_id), unquote(secret)
    row = _db().execute(_CLIENT, (client_id,)).fetchone()
    if row is None or row[1] is not None or row[0] is None:
        return None
    return client_id if hmac.compare_digest(_sha256(secret), row[0]) else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(claims: dict[str, Any]) -> str:
    head = _b64(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "floor"}).encode())
    signing_input = f"{head}.{_b64(json.dumps(claims).encode())}"
    signature = _KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@app.get("/readyz")
def readyz() -> Response:
    return _json({"status": "ready"})


@app.post("/floor/token")
def token() -> Response:
    client_id = _client_id()
    if client_id is None:
        return _json({"error": "invalid_client"}, 401)
    if request.form.get("grant_type") == "refresh_token":
        return _refresh(client_id)
    if request.form.get("grant_type") != "client_credentials":
        return _json({"error": "unsupported_grant_type"}, 400)
    now = datetime.now(UTC).replace(tzinfo=None)
    issued = int(time.time())
    grant_id, token_id = str(uuid.uuid4()), str(uuid.uuid4())
    access = _jwt(
        {
            "iss": _ISSUER, "sub": client_id, "aud": _ISSUER, "client_id": client_id,
            "iat": issued, "exp": issued + int(_LIFETIME.total_seconds()), "jti": token_id,
        }
    )  # fmt: skip
    db = _db()
    with db.transaction():
        db.execute(
            _GRANT_AND_TOKEN,
            {
                "grant": grant_id, "client": client_id, "token": token_id,
                "hash": _sha256(access), "now": now, "expires": now + _LIFETIME,
            },
        )  # fmt: skip
    body = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
    return _json(body)


def _refresh(client_id: str) -> Response:
    """Rotation as the service does it: the presented refresh token locked,
    checked and spent, a new access and refresh token in one INSERT, and an
    access token and an ID token signed (RS256)."""
    presented_hash = _sha256(request.form.get("refresh_token", ""))
    now = datetime.now(UTC).replace(tzinfo=None)
    issued = int(time.time())
    db = _db()
    with db.transaction():
        row = db.execute(_REFRESH, (presented_hash,)).fetchone()
        if row is None or row[1] <= now or row[2] or row[3] or row[6] or row[5] != client_id:
            return _json({"error": "invalid_grant"}, 400)
        grant_id, refresh_expires, scopes, user_id = row[0], row[1], row[4], row[7]
        access_id = str(uuid.uuid4())
        common = {"iss": _ISSUER, "sub": user_id, "iat": issued, "exp": issued + 3600}
        access = _jwt({**common, "aud": _ISSUER, "client_id": client_id, "jti": access_id})
        id_token = _jwt({**common, "aud": client_id, "auth_time": issued})
        refresh = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        db.execute(_SPEND, (now, presented_hash))
        db.execute(
            _ROTATE,
            {
                "grant": grant_id, "scopes": json.dumps(scopes), "now": now,
                "access_id": access_id, "access_hash": _sha256(access),
                "access_expires": now + _LIFETIME, "refresh_id": str(uuid.uuid4()),
                "refresh_hash": _sha256(refresh), "refresh_expires": refresh_expires,
            },
        )  # fmt: skip
    body = {
        "access_token": access, "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": refresh, "id_token": id_token,
    }  # fmt: skip
    return _json(body)


@app.post("/floor/introspect")
def introspect() -> Response:
    client_id = _client_id()
    if client_id is None:
        return _json({"error": "invalid_client"}, 401)
    row = _db().execute(_TOKEN, (_sha256(request.form.get("token", "")),)).fetchone()
    now = datetime.now(UTC).replace(tzinfo=None)
    if row is None or row[0] <= now or row[1] or row[3] or row[2] != client_id:
        return _json({"active": False})
    return _json({"active": True, "client_id": client_id, "exp": int(row[0].timestamp())})


@app.get("/floor/me")
def me() -> Response:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    row = _db().execute(_SESSION, (_sha256(presented),)).fetchone()
    now = datetime.now(UTC).replace(tzinfo=None)
    if scheme.lower() != "bearer" or row is None or row[1] <= now or row[2] or row[3] != "active":
        return _json({"error": "unauthorized"}, 401)
    return _json({"user_id": row[0]})
