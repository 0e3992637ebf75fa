"""The connection pool on PostgreSQL: a connection used within the last second
goes out without a ping (one round trip less per request under load); one idle
longer is pinged, and a dead one is replaced before a request sees it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from app import db as db_module
from app.db import make_engine
from tests.conftest import PG_URL

pytestmark = pytest.mark.skipif(not PG_URL, reason="the ping rule is for PostgreSQL's pool")


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_idle_longer_than_the_window_is_pinged_and_replaced_if_dead(monkeypatch):
    monkeypatch.setattr(db_module, "TRUSTED_IF_USED_WITHIN_SECONDS", 0.2)
    engine = make_engine(PG_URL)
    try:
        first = backend_pid(engine)  # now idle in the pool
        admin = make_engine(PG_URL)
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        admin.dispose()
        time.sleep(0.3)
        pids = {backend_pid(engine), backend_pid(engine)}
        assert first not in pids  # the dead one was found by the ping and replaced
    finally:
        engine.dispose()


def test_a_connection_used_within_the_window_goes_out_without_a_ping(monkeypatch):
    pings: list[int] = []
    engine = make_engine(PG_URL)
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection) -> bool:
        pings.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    try:
        for _ in range(20):
            backend_pid(engine)
        assert pings == []  # each checkout follows the last use by far less than a second
        monkeypatch.setattr(db_module, "TRUSTED_IF_USED_WITHIN_SECONDS", 0.05)
        time.sleep(0.1)
        backend_pid(engine)
        assert pings == [1]
    finally:
        engine.dispose()
