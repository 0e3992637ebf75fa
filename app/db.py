"""Engine and session factory for the configured database."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: SQL errors must not carry personal data into logs.
    engine = create_engine(
        url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # Deleted rows are overwritten with zeros, not just unlinked: a shredded
        # key must not be recoverable from free pages of the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # SQLite has no row locks; taking the write lock up front stands in for
        # PostgreSQL's SELECT ... FOR UPDATE, so counters and chains never fork.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def insert_if_absent(
    db: Session, model: type, values: dict[str, Any], index_elements: list[str]
) -> None:
    """INSERT … ON CONFLICT DO NOTHING: makes sure a row exists so it can be
    locked with SELECT … FOR UPDATE, even when two workers get there at once."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=index_elements))


def scrub_after_commit(db: Session) -> None:
    """Once ``db`` commits, make deleted data unrecoverable from the files too.

    SQLite: secure_delete zeroes the pages, but the write-ahead log still holds
    earlier versions of them until a checkpoint copies them back and the log is
    truncated. PostgreSQL keeps dead tuples until VACUUM and old versions in WAL
    archives and backups; that is operations' job (README, production)."""
    engine = db.get_bind().engine
    if engine.dialect.name != "sqlite":
        return

    def _checkpoint(_session: Session) -> None:
        # The change is committed whatever happens here: a failed checkpoint is
        # reported, never turned into a failed request.
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            row = cursor.fetchone()
            busy = row[0] if row else 0
            cursor.close()
        except sqlite3.Error as error:
            busy = type(error).__name__
        finally:
            raw.close()
        if busy:
            _log.warning("WAL checkpoint after deletion did not complete (%s)", busy)

    event.listen(db, "after_commit", _checkpoint, once=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched. Session.execute is typed as
    returning Result; for a DML statement it is a CursorResult, which counts."""
    if not isinstance(result, CursorResult):
        raise TypeError("affected_rows needs the result of an UPDATE or DELETE")
    return int(result.rowcount or 0)
