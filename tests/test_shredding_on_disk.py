"""Cancellation crypto-shreds a user; on SQLite the shredded bytes must also be
gone from the database file and its write-ahead log, not just from query results.

PostgreSQL keeps dead tuples until VACUUM and copies in WAL archives and backups;
that is an operations matter (README, production section), not something a
request can guarantee, so the file check runs on SQLite only."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.helpers import bearer, register


def _sqlite_path(app) -> Path:
    url = make_url(str(app.extensions["privid.engine"].url))
    if url.get_backend_name() != "sqlite":
        pytest.skip("file-level check of SQLite's database and WAL; see README for PostgreSQL")
    return Path(str(url.database))


def _secrets_of(app, user_id: str) -> dict[str, bytes]:
    """The wrapped data key and every ciphertext sealed under it, as stored."""
    with app.extensions["privid.engine"].connect() as connection:
        wrapped = connection.execute(
            text("SELECT wrapped_key FROM user_data_keys WHERE user_id = :u"), {"u": user_id}
        ).scalar_one()
        user = connection.execute(
            text(
                "SELECT email_encrypted, phone_encrypted, full_name_encrypted "
                "FROM users WHERE id = :u"
            ),
            {"u": user_id},
        ).one()
        pending = connection.execute(
            text("SELECT pending_value_encrypted FROM one_time_codes WHERE subject = :u"),
            {"u": user_id},
        ).scalar_one()
    found = {
        "wrapped data key": wrapped,
        "email ciphertext": user[0],
        "phone ciphertext": user[1],
        "name ciphertext": user[2],
        "pending phone ciphertext": pending,
    }
    return {name: bytes(value) for name, value in found.items()}


def test_cancelled_ciphertexts_and_key_are_gone_from_the_sqlite_file_and_wal(
    app, client, mailbox, sms
):
    path = _sqlite_path(app)
    person, session = register(client, mailbox, sms)
    auth = bearer(session["token"])
    user_id = client.get("/api/v1/me", headers=auth).json["user_id"]
    # A phone change in progress leaves one more ciphertext under the user's key.
    started = client.post(
        "/api/v1/me/phone",
        json={"phone": "+8613700000777", "current_password": person.password},
        headers=auth,
    )
    assert started.status_code in (202, 204), started.json
    secrets = _secrets_of(app, user_id)
    on_disk = path.read_bytes() + _wal(path)
    # The search works: before cancellation every secret is in the files.
    assert all(value in on_disk for value in secrets.values())

    cancelled = client.post(
        "/api/v1/me/cancellation", json={"confirm": "cancel my account"}, headers=auth
    )
    assert cancelled.status_code == 200

    database, wal = path.read_bytes(), _wal(path)
    for name, value in secrets.items():
        assert value not in database, f"{name} survives in {path.name}"
        assert value not in wal, f"{name} survives in {path.name}-wal"


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""
