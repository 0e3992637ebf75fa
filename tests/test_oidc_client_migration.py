"""Migration 0016 on a database that already holds clients: every row keeps its
settings and becomes a partner with pairwise subjects for its redirect host.
Runs on SQLite, and on PostgreSQL in a scratch schema when the suite uses it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from alembic import command
from sqlalchemy import create_engine, text

from app.migrate import alembic_config, upgrade
from tests.helpers import scratch_url

COLUMNS = (
    "client_id, name, client_type, secret_hash, token_endpoint_auth_method, jwks, "
    "redirect_uris, post_logout_redirect_uris, backchannel_logout_uri, grant_types, scopes, "
    "require_pkce, id_token_signed_response_alg, access_token_format, dpop_bound, created_at, "
    "disabled_at"
)
__all__ = ["scratch_url"]  # fixture
PARAMS = ", ".join(f":{name.strip()}" for name in COLUMNS.split(","))


def _row(client_id: str, redirect_uris: list[str], **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "client_id": client_id,
        "name": f"Client {client_id}",
        "client_type": "confidential",
        "secret_hash": "ab" * 32,
        "token_endpoint_auth_method": "client_secret_basic",
        "jwks": None,
        "redirect_uris": json.dumps(redirect_uris),
        "post_logout_redirect_uris": json.dumps([]),
        "backchannel_logout_uri": None,
        "grant_types": json.dumps(
            ["authorization_code"] if redirect_uris else ["client_credentials"]
        ),
        "scopes": json.dumps(["openid"]),
        "require_pkce": True,
        "id_token_signed_response_alg": "RS256",
        "access_token_format": "jwt",
        "dpop_bound": False,
        "created_at": datetime(2026, 11, 1, 12, 0),
        "disabled_at": None,
    }
    row.update(changes)
    return row


ROWS = [
    _row("a" * 32, ["https://Shop.example/cb", "https://shop.example/other"]),
    _row("b" * 32, ["https://one.example/cb", "https://two.example/cb"]),
    _row("c" * 32, [], disabled_at=datetime(2026, 11, 2, 8, 0)),
]


def test_existing_clients_keep_everything_and_become_pairwise_partners(scratch_url: str):
    upgrade(scratch_url, "0015")
    engine = create_engine(scratch_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"INSERT INTO oauth_clients ({COLUMNS}) VALUES ({PARAMS})"), ROWS
            )
            old = connection.execute(
                text(f"SELECT {COLUMNS} FROM oauth_clients ORDER BY client_id")
            ).all()
        upgrade(scratch_url, "0016")
        with engine.connect() as connection:
            kept = connection.execute(
                text(f"SELECT {COLUMNS} FROM oauth_clients ORDER BY client_id")
            ).all()
            added = connection.execute(
                text(
                    "SELECT client_id, first_party, subject_type, sector_identifier "
                    "FROM oauth_clients ORDER BY client_id"
                )
            ).all()
        assert kept == old
        assert [tuple(r) for r in added] == [
            ("a" * 32, False, "pairwise", "shop.example"),
            ("b" * 32, False, "pairwise", "one.example"),
            ("c" * 32, False, "pairwise", None),
        ]
        # And back: the added columns go, the rest stays.
        command.downgrade(alembic_config(scratch_url), "0015")
        with engine.connect() as connection:
            assert (
                connection.execute(
                    text(f"SELECT {COLUMNS} FROM oauth_clients ORDER BY client_id")
                ).all()
                == old
            )
    finally:
        engine.dispose()
