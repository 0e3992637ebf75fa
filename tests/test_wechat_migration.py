"""Migration 0018 on a database that already holds accounts: every account
keeps every field, email and password become optional, and the linked
identities table appears; and back while every account has both. Runs on
SQLite, and on PostgreSQL in a scratch schema when the suite uses it."""

from __future__ import annotations

from datetime import datetime

from alembic import command
from sqlalchemy import create_engine, inspect, text

from app.migrate import alembic_config, upgrade
from tests.helpers import scratch_url

__all__ = ["scratch_url"]  # fixture

COLUMNS = (
    "id, status, role, email_index, phone_index, email_encrypted, phone_encrypted, "
    "full_name_encrypted, password_hash, created_at, password_changed_at, email_verified_at, "
    "phone_verified_at"
)
PARAMS = ", ".join(f":{name.strip()}" for name in COLUMNS.split(","))


def _account(n: int) -> dict[str, object]:
    when = datetime(2026, 11, n, 12, 0)
    return {
        "id": f"00000000-0000-4000-8000-00000000000{n}",
        "status": "active",
        "role": "user",
        "email_index": f"{n:064x}",
        "phone_index": f"{n + 100:064x}",
        "email_encrypted": bytes([n]) * 40,
        "phone_encrypted": bytes([n + 1]) * 40,
        "full_name_encrypted": bytes([n + 2]) * 40,
        "password_hash": f"$argon2id$v=19$m=65536,t=3,p=4$salt{n}$hash{n}",
        "created_at": when,
        "password_changed_at": when,
        "email_verified_at": when,
        "phone_verified_at": when,
    }


def test_existing_accounts_keep_everything_and_email_and_password_become_optional(
    scratch_url: str,
):
    upgrade(scratch_url, "0017")
    engine = create_engine(scratch_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"INSERT INTO users ({COLUMNS}) VALUES ({PARAMS})"),
                [_account(1), _account(2)],
            )
            old = connection.execute(text(f"SELECT {COLUMNS} FROM users ORDER BY id")).all()
        upgrade(scratch_url, "0018")
        with engine.connect() as connection:
            kept = connection.execute(text(f"SELECT {COLUMNS} FROM users ORDER BY id")).all()
            columns = {c["name"]: c for c in inspect(connection).get_columns("users")}
            tables = set(inspect(connection).get_table_names())
        assert kept == old
        for name in ("email_index", "email_encrypted", "password_hash", "email_verified_at"):
            assert columns[name]["nullable"] is True
        assert columns["phone_index"]["nullable"] is False
        assert "linked_identities" in tables
        # An account with no email and no password can now exist.
        with engine.begin() as connection:
            bare = {**_account(3), "email_index": None, "email_encrypted": None}
            bare.update(password_hash=None, password_changed_at=None, email_verified_at=None)
            connection.execute(text(f"INSERT INTO users ({COLUMNS}) VALUES ({PARAMS})"), bare)
            connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": bare["id"]})
        # And back: the table goes, the accounts stay as they were.
        command.downgrade(alembic_config(scratch_url), "0017")
        with engine.connect() as connection:
            assert connection.execute(text(f"SELECT {COLUMNS} FROM users ORDER BY id")).all() == old
            assert "linked_identities" not in set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
