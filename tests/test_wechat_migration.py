"""Migration 0018 on a database that already holds accounts: every account
keeps every field, email and password become optional, and the linked
identities table appears; and back while every account has both. Runs on
SQLite, and on PostgreSQL in a scratch schema when the suite uses it."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text

from app.migrate import alembic_config, upgrade
from tests.helpers import scratch_url
from tests.wechat_helpers import COLUMNS, PARAMS, account_row

__all__ = ["scratch_url"]  # fixture


def test_existing_accounts_keep_everything_and_email_and_password_become_optional(
    scratch_url: str,
):
    upgrade(scratch_url, "0017")
    engine = create_engine(scratch_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"INSERT INTO users ({COLUMNS}) VALUES ({PARAMS})"),
                [account_row(1), account_row(2)],
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
            bare = {**account_row(3), "email_index": None, "email_encrypted": None}
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
