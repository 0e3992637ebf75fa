"""On PostgreSQL a unit of work's plain reads run outside a transaction; the
transaction opens at its first write or locking read (app/db.py). A request
that only reads pays for no BEGIN and no COMMIT; one that writes keeps every
write in one transaction, all or nothing, with its locks held to the end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.late_transactions import needs_transaction
from tests.conftest import PG_URL
from tests.helpers import Wire, bearer, login, register, wire_of
from tests.oidc_helpers import SERVICE, add_client, introspect

ME = "/api/v1/me"
TOKEN = "/oauth/token"

on_postgres = pytest.mark.skipif(
    not PG_URL, reason="SQLite has no lazy transactions: it opens each with BEGIN IMMEDIATE"
)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT users.id FROM users WHERE users.id = %(id)s",
        "\n  select 1",
        "SELECT sessions.id FROM sessions JOIN users ON users.id = sessions.user_id",
    ],
)
def test_a_plain_read_needs_no_transaction(statement: str) -> None:
    assert not needs_transaction(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO users (id) VALUES (%(id)s)",
        "UPDATE sessions SET last_seen_at=%(t)s",
        "DELETE FROM codes WHERE id = %(id)s",
        "WITH g AS (INSERT INTO oauth_grants DEFAULT VALUES) SELECT 1",
        "SAVEPOINT sa_savepoint_1",
        "SET LOCAL lock_timeout = '1s'",
        "SELECT users.id FROM users WHERE users.id = %(id)s FOR UPDATE",
        "SELECT t.id FROM t JOIN g ON g.id = t.g FOR KEY SHARE OF g",
        "select id from t for no key update",
        "SELECT id FROM t FOR SHARE",
        "SELECT id FROM outbox FOR UPDATE SKIP LOCKED",
        "SELECT pg_advisory_xact_lock(hashtext(%(k)s))",
        "SELECT pg_try_advisory_xact_lock(7)",
        "SELECT pg_advisory_xact_lock_shared(7)",
    ],
)
def test_a_write_or_a_locking_read_needs_a_transaction(statement: str) -> None:
    assert needs_transaction(statement)


def _transactions_wrap_every_write(wire: Wire) -> None:
    """Every statement that needs a transaction ran between a BEGIN and its COMMIT."""
    open_transaction = False
    for statement in wire.executed:
        if statement == "BEGIN":
            assert not open_transaction, wire.executed
            open_transaction = True
        elif statement in ("COMMIT", "ROLLBACK"):
            assert open_transaction, wire.executed
            open_transaction = False
        elif needs_transaction(statement):
            assert open_transaction, f"{statement!r} ran outside a transaction: {wire.executed}"
    assert not open_transaction, "a transaction was left open"


@on_postgres
def test_reading_ones_profile_costs_one_statement_and_no_transaction(
    app: Flask, client: Any, mailbox: Any, sms: Any
) -> None:
    person, session = register(client, mailbox, sms)
    answer, wire = wire_of(app, lambda: client.get(ME, headers=bearer(session["token"])))
    assert answer.status_code == 200
    assert answer.get_json()["email"] == person.email
    assert len(wire.executed) == 1, wire.executed
    assert wire.executed[0].startswith("SELECT")


@on_postgres
def test_a_sign_in_writes_everything_in_one_transaction(
    app: Flask, client: Any, mailbox: Any, sms: Any
) -> None:
    person, _ = register(client, mailbox, sms)
    answer, wire = wire_of(app, lambda: login(client, person.email, person.password))
    assert answer.status_code == 200, answer.json
    assert wire.executed.count("BEGIN") == 1, wire.executed
    assert wire.executed[-1] == "COMMIT"
    _transactions_wrap_every_write(wire)
    # The session the sign-in opened works: its writes were committed.
    assert client.get(ME, headers=bearer(answer.json["token"])).status_code == 200


@pytest.fixture
def probe(app: Flask) -> Iterator[Engine]:
    """A scratch table beside the schema, and the app's own engine."""
    engine: Engine = app.extensions["privid.engine"]
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE lazy_probe (n integer PRIMARY KEY)"))
        connection.execute(text("INSERT INTO lazy_probe VALUES (0)"))
    yield engine
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE lazy_probe"))


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM lazy_probe")).scalar_one())


@on_postgres
def test_a_unit_of_work_that_fails_after_two_writes_keeps_neither(probe: Engine) -> None:
    with Session(probe) as db:
        assert db.execute(text("SELECT count(*) FROM lazy_probe")).scalar_one() == 1
        db.execute(text("INSERT INTO lazy_probe VALUES (1)"))
        db.execute(text("INSERT INTO lazy_probe VALUES (2)"))
        # Another connection does not see them yet: they are in a transaction.
        assert _count(probe) == 1
        db.rollback()
    assert _count(probe) == 1


@on_postgres
def test_a_locking_read_holds_its_lock_until_the_unit_of_work_ends(probe: Engine) -> None:
    other = create_engine(PG_URL)
    try:
        with Session(probe) as db:
            db.execute(text("SELECT n FROM lazy_probe WHERE n = 0 FOR UPDATE")).all()
            with other.connect() as rival, pytest.raises(OperationalError):
                rival.execute(text("SELECT n FROM lazy_probe WHERE n = 0 FOR UPDATE NOWAIT"))
            db.commit()
        with other.connect() as rival:
            locked = rival.execute(text("SELECT n FROM lazy_probe WHERE n = 0 FOR UPDATE NOWAIT"))
            assert locked.scalar_one() == 0
    finally:
        other.dispose()


@on_postgres
def test_a_client_credentials_grant_records_grant_and_token_in_one_statement(
    app: Flask, client: Any
) -> None:
    """The client is read outside a transaction; the new grant and its access
    token go in one INSERT; introspecting the token opens no transaction."""
    rp = add_client(app, SERVICE, scopes=())
    # The first token ever issued also makes the signing keys.
    first = client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=rp.basic)
    assert first.status_code == 200, first.json
    granted, wire = wire_of(
        app, lambda: client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=rp.basic)
    )
    assert granted.status_code == 200, granted.json
    _transactions_wrap_every_write(wire)
    writes = [s for s in wire.executed if s.startswith(("INSERT", "WITH", "UPDATE"))]
    assert len(writes) == 1, wire.executed
    assert "oauth_grants" in writes[0] and "oauth_tokens" in writes[0]
    assert wire.executed.count("BEGIN") == 1
    found, looked_up = wire_of(app, lambda: introspect(client, rp, granted.json["access_token"]))
    assert found.json["active"] is True
    assert looked_up.executed, "the trace saw nothing"
    assert all(s.startswith("SELECT") for s in looked_up.executed), looked_up.executed
