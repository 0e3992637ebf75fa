"""Reads through the driver (app/plain_reads.py): the same values the ORM
reads, in the unit of work's own transaction, and a failing read fails the
way an ORM read does (an outage is still an outage, no parameter in the
error, a dead connection replaced)."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import DateTime, bindparam, column, create_engine, event, select, table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.cli import unit_of_work
from app.http.outages import unavailable_part
from app.oidc.client_models import ClientRecord, OAuthClient, read_client
from app.oidc.clients import NewClient, client_registry
from app.oidc.grant_models import IssuedToken, TokenGrant
from app.plain_reads import PlainRead
from tests.conftest import PG_URL
from tests.helpers import statements_of
from tests.oidc_helpers import PARTNER, SERVICE, add_client, introspect

TOKEN = "/oauth/token"

PUBLIC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
KEYED = replace(
    PARTNER,
    name="Keyed partner",
    token_endpoint_auth_method="private_key_jwt",
    jwks={"keys": [PUBLIC_KEY]},
    post_logout_redirect_uris=("https://rp.example/bye",),
    backchannel_logout_uri="https://rp.example/backchannel",
)


def _registered(app: Flask, new: NewClient) -> str:
    with app.app_context(), unit_of_work() as svc:
        return client_registry(svc).register(new).client.client_id


@pytest.mark.parametrize("new", [PARTNER, KEYED], ids=["secret", "keys"])
def test_a_client_read_plainly_is_the_client_the_orm_reads(app: Flask, new: NewClient) -> None:
    client_id = _registered(app, new)
    with app.app_context(), unit_of_work() as svc:
        plain = read_client(svc.db, client_id)
        mapped = ClientRecord.of(svc.db.get(OAuthClient, client_id))  # type: ignore[arg-type]
    assert plain == mapped
    assert plain is not None and plain.redirect_uris == list(new.redirect_uris)
    assert plain.created_at.tzinfo is not None or mapped.created_at.tzinfo is None
    if new is KEYED:
        assert plain.jwks == new.jwks and plain.secret_hash is None


def test_the_record_has_every_column_of_the_table() -> None:
    # A column added to oauth_clients must be added to the record, or a
    # request would read a client without it.
    assert [f.name for f in fields(ClientRecord)] == [c.key for c in OAuthClient.__table__.c]


def test_an_unknown_client_reads_as_none(app: Flask) -> None:
    with app.app_context(), unit_of_work() as svc:
        assert read_client(svc.db, "no-such-client") is None


def test_a_plain_read_sees_the_unit_of_works_own_uncommitted_change(app: Flask) -> None:
    """Flushed or still pending in the session, as an ORM read would."""
    client_id = _registered(app, PARTNER)
    with app.app_context(), unit_of_work() as svc:
        client_registry(svc).disable(client_id)
        seen = read_client(svc.db, client_id)
        assert seen is not None and seen.disabled
        svc.db.rollback()
        again = read_client(svc.db, client_id)
        assert again is not None and not again.disabled
        mapped = svc.db.get(OAuthClient, client_id)
        assert mapped is not None
        mapped.name = "Renamed, not flushed"
        assert read_client(svc.db, client_id).name == "Renamed, not flushed"  # type: ignore[union-attr]
        svc.db.rollback()


def test_parameters_are_converted_by_their_types(app: Flask) -> None:
    """A datetime parameter goes through its type's bind conversion (SQLite
    stores datetimes as text), and comparisons work on both databases."""
    client_id = _registered(app, PARTNER)
    created = table("oauth_clients", column("client_id"), column("created_at", DateTime()))
    since = PlainRead(
        select(created.c.client_id).where(
            created.c.created_at >= bindparam("since", type_=DateTime())
        )
    )
    with app.app_context(), unit_of_work() as svc:
        registered_at = read_client(svc.db, client_id).created_at  # type: ignore[union-attr]
        assert since.first(svc.db, since=registered_at - timedelta(seconds=1)) == (client_id,)
        assert since.first(svc.db, since=registered_at + timedelta(days=1)) is None


def test_a_failing_read_raises_what_sqlalchemy_would_without_its_parameters(app: Flask) -> None:
    statement = select(column("x")).select_from(table("no_such_table"))
    statement = statement.where(column("secret") == bindparam("secret"))
    with app.app_context(), unit_of_work() as svc:
        with pytest.raises(DBAPIError) as failed:
            PlainRead(statement).first(svc.db, secret="s3cr3t-value-never-shown")
        svc.db.rollback()
        with pytest.raises(DBAPIError) as through_core:
            svc.db.execute(statement, {"secret": "s3cr3t-value-never-shown"})
        svc.db.rollback()
    assert type(failed.value) is type(through_core.value)
    assert "s3cr3t-value-never-shown" not in str(failed.value)
    assert "no_such_table" in str(failed.value)
    assert not failed.value.connection_invalidated


@pytest.mark.skipif(not PG_URL, reason="a server connection to cut needs PostgreSQL")
def test_a_read_on_a_dead_connection_is_an_outage_and_the_pool_replaces_them_all(
    app: Flask,
) -> None:
    """A restarted server drops every connection: the first read to find its
    connection dead is a 503, and the pool replaces the others before they
    are used, as SQLAlchemy does, instead of failing once per connection."""
    client_id = _registered(app, PARTNER)
    with app.app_context():
        with unit_of_work() as first, unit_of_work() as second:
            pooled = [
                svc.db.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
                for svc in (first, second)
            ]
        outside = create_engine(PG_URL, poolclass=NullPool)  # not one of the pool's
        with outside.connect() as other:
            for pid in pooled:
                cut = other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
                assert cut.scalar() is True
        outside.dispose()
        outcomes = []
        for _ in range(3):
            try:
                with unit_of_work() as svc:
                    found = read_client(svc.db, client_id)
                    pid = svc.db.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
                outcomes.append("read" if found is not None and pid not in pooled else found)
            except DBAPIError as failed:
                assert failed.connection_invalidated
                assert unavailable_part(failed) == "database"
                outcomes.append("outage")
    assert outcomes == ["outage", "read", "read"]


def test_the_engines_statement_listeners_see_a_plain_read(app: Flask) -> None:
    client_id = _registered(app, PARTNER)
    with app.app_context(), unit_of_work() as svc:
        seen = statements_of(app, lambda: read_client(svc.db, client_id))
    seen = [statement for statement in seen if not statement.startswith("BEGIN")]
    assert len(seen) == 1 and "FROM oauth_clients" in seen[0], seen


def test_introspection_and_a_grant_load_nothing_into_the_orm(app: Flask, client: Any) -> None:
    """The two hottest OAuth requests read the client and the token as plain
    records: no mapped client, grant or token is loaded (a regression here
    costs a quarter of an introspection's CPU, bench/README.md)."""
    rp = add_client(app, SERVICE, scopes=())
    first = client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=rp.basic)
    assert first.status_code == 200, first.json  # the first grant also makes the keys
    loaded: list[str] = []
    listeners = [
        (model, "load", lambda row, _context: loaded.append(type(row).__name__))
        for model in (OAuthClient, TokenGrant, IssuedToken)
    ]
    for listener in listeners:
        event.listen(*listener)
    try:
        granted = client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=rp.basic)
        found = introspect(client, rp, granted.json["access_token"])
    finally:
        for listener in listeners:
            event.remove(*listener)
    assert granted.status_code == 200 and found.json["active"] is True, found.json
    assert found.json["client_id"] == rp.client_id
    assert loaded == []
