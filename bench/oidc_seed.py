"""What the OIDC scenarios of bench/run_all.py spend: registered clients, access tokens to
introspect and refresh tokens of real grants, each as wrk list lines
"<Authorization header>\\t<value>" (bench/load.lua)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from urllib.parse import quote

import requests
from flask import Flask
from sqlalchemy import func, select

from app import build_runtime, create_app
from app.cli import unit_of_work
from app.models import User
from app.oidc.clients import NewClient, client_registry
from app.oidc.grant_models import TokenGrant
from app.oidc.token_store import TokenKind, token_store
from app.security.tokens import new_token
from app.settings import Settings

# A partner that signs users in (code flow, refresh) and also calls APIs as
# itself (client_credentials, no scope: user scopes are not for a client alone).
PARTNER = NewClient(
    name="bench",
    client_type="confidential",
    token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method's name
    redirect_uris=("https://rp.example/callback",),
    grant_types=("authorization_code", "refresh_token", "client_credentials"),
    scopes=("openid", "profile", "offline_access"),
)
# A sign-in that lasts: each refresh answers with a new ID token as well.
REFRESH_SCOPES = ("openid", "offline_access")
CLIENT_CREDENTIALS_BODY = "grant_type=client_credentials"


@dataclass(frozen=True)
class BenchClient:
    client_id: str
    secret: str

    @property
    def authorization(self) -> str:
        # RFC 6749 section 2.3.1: id and secret are form-encoded before base64.
        pair = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode()


@contextmanager
def in_process(settings: Settings) -> Iterator[Flask]:
    """The service's app, for seeding through its own services."""
    app = create_app(runtime=build_runtime(settings))
    try:
        yield app
    finally:
        app.extensions["privid.engine"].dispose()


def register_clients(settings: Settings, count: int) -> list[BenchClient]:
    """`count` partners, registered as `flask oidc-clients add` does."""
    stamp = int(time.time())
    clients = []
    with in_process(settings) as app, app.app_context(), unit_of_work() as svc:
        registry = client_registry(svc)
        for n in range(count):
            made = registry.register(replace(PARTNER, name=f"bench {stamp}-{n}"))
            assert made.secret is not None
            clients.append(BenchClient(made.client.client_id, made.secret))
    return clients


def client_credentials_lines(clients: Sequence[BenchClient]) -> list[str]:
    return [f"{client.authorization}\t{CLIENT_CREDENTIALS_BODY}" for client in clients]


def introspection_lines(
    base: str, clients: Sequence[BenchClient], per_client: int, endpoint: str = "/oauth/token"
) -> list[str]:
    """Access tokens from the token endpoint at `endpoint`; each client
    asks about its own (a client learns nothing about another's tokens)."""
    lines = []
    for client in clients:
        for _ in range(per_client):
            answer = requests.post(
                f"{base}{endpoint}",
                data=CLIENT_CREDENTIALS_BODY,
                headers={
                    "Authorization": client.authorization,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                timeout=30,
            )
            answer.raise_for_status()
            lines.append(f"{client.authorization}\ttoken={answer.json()['access_token']}")
    return lines


def refresh_lines(
    settings: Settings,
    clients: Sequence[BenchClient],
    emails: Sequence[str],
    count: int,
    scopes: tuple[str, ...] = REFRESH_SCOPES,
) -> list[str]:
    """`count` refresh tokens, each of a grant of its own: users (`emails`,
    registered) spread over the clients, as if each had signed in to one and
    approved it. The grant and its first refresh token come from the token
    store the code flow uses; no browser session stands behind them, so the
    ID tokens a refresh brings carry no sid (an HMAC less per refresh)."""
    lines = []
    with in_process(settings) as app, app.app_context(), unit_of_work() as svc:
        store, registry, directory = token_store(svc), client_registry(svc), svc.directory
        users: list[User] = []
        for email in emails:
            user = directory.find(directory.email(email))
            assert user is not None, "the bench users are registered"
            users.append(user)
        for n in range(count):
            client = clients[n % len(clients)]
            grant = store.new_grant(
                registry.get(client.client_id), scopes, user=users[n % len(users)]
            )
            token = new_token()
            store.save(grant, store.token_row(grant, TokenKind.REFRESH, token, scopes))
            lines.append(f"{client.authorization}\t{token}")
    return lines


def grants_revoked_as_reused(settings: Settings, clients: Sequence[BenchClient]) -> int:
    """How many of these clients' grants the provider revoked because a
    refresh token came back a second time: the load must never cause one."""
    ids = [client.client_id for client in clients]
    with in_process(settings) as app, app.app_context(), unit_of_work() as svc:
        query = select(func.count()).where(
            TokenGrant.client_id.in_(ids), TokenGrant.revoke_reason == "refresh_reused"
        )
        return int(svc.db.execute(query).scalar_one())
