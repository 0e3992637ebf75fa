"""Engine and session factory for the configured database."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CursorResult,
    Engine,
    Result,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    inspect,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from app.late_transactions import open_transactions_late

_log = logging.getLogger(__name__)


def make_engine(url: str, pgbouncer: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        lazy_transactions = parsed.get_driver_name() == "psycopg"
        server = create_engine(
            url,
            pool_size=10,
            max_overflow=10,
            hide_parameters=True,
            connect_args=_server_connect_args(parsed.get_driver_name(), pgbouncer=pgbouncer),
            # The driver commits each statement on its own until
            # ``open_transactions_late`` opens a transaction.
            **({"isolation_level": "AUTOCOMMIT"} if lazy_transactions else {}),
        )
        _ping_when_idle(server)
        if lazy_transactions:
            open_transactions_late(server)
        return server
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


# A server that does not answer a connection attempt (down host, lost route)
# costs a request this long before it becomes a 503, instead of the kernel's
# minutes of SYN retries holding a sync worker until gunicorn kills it.
CONNECT_TIMEOUT_SECONDS = 5


def _server_connect_args(driver: str, *, pgbouncer: bool) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if driver.startswith("psycopg"):
        arguments["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if pgbouncer:
        arguments.update(_pooler_arguments(driver))
    return arguments


def _pooler_arguments(driver: str) -> dict[str, Any]:
    """Connection arguments for PostgreSQL behind PgBouncer in transaction mode.

    psycopg 3 prepares a statement on the server once it has run five times on
    a connection (``prepare_threshold``); behind a transaction pooler the next
    transaction may run on another server connection, which has no such
    statement ("prepared statement _pg3_0 does not exist") or already has one
    of that name from another client. PgBouncer 1.21+ can track protocol-level
    prepared statements (``max_prepared_statements``), but Debian 12 ships
    1.18, and without it nothing may be prepared: None turns preparing off."""
    if driver != "psycopg":
        raise ValueError("PRIVID_DATABASE_PGBOUNCER needs the psycopg (3) driver")
    return {"prepare_threshold": None}


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


# A pooled connection used this recently is trusted without a ping: under load
# a ping on every checkout is one more round trip per request (HikariCP skips
# its check within 500 ms the same way). One idle longer is pinged first, and
# a dead one is replaced before the request sees it.
TRUSTED_IF_USED_WITHIN_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _note_use(_dbapi_connection: Any, record: Any) -> None:
        record.info["last_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get("last_used")
        idle = time.monotonic() - last_used if last_used is not None else None
        if idle is not None and idle < TRUSTED_IF_USED_WITHIN_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the pooled connection is gone") from exc
        if not alive:
            raise DisconnectionError("the pooled connection is gone")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched. Session.execute is typed as
    returning Result; for a DML statement it is a CursorResult, which counts."""
    if not isinstance(result, CursorResult):
        raise TypeError("affected_rows needs the result of an UPDATE or DELETE")
    return int(result.rowcount or 0)


def insert_rows(db: Session, rows: Sequence[Any]) -> None:
    """INSERT new mapped objects of one table with a single Core statement (one
    round trip) and keep each in the session as the persistent row it now is.
    A unit-of-work flush costs several times more; hot paths that only add
    rows use this. Attributes left None are left to the column's defaults (and
    expired, so reading one loads what the database chose); every row must
    leave the same ones None."""
    if not rows:
        return
    table, batch, defaulted = _insert_values(rows)
    db.flush()  # rows these may refer to go first
    # On the session's connection, the statement apart from its values: one
    # compiled form for every call, none of the ORM's execution machinery.
    # Several rows are the driver's executemany (PostgreSQL goes through
    # insert_together instead).
    db.connection().execute(insert(table), batch if len(batch) > 1 else batch[0])
    _adopt(db, rows, defaulted)


def insert_together(db: Session, *groups: Sequence[Any]) -> None:
    """INSERT rows of one or several tables (a group per table, parents first)
    like ``insert_rows``, in one statement on PostgreSQL: every row but the
    last is a single-row INSERT in a data-modifying WITH clause of the last
    one's. Foreign keys are checked at the end of that statement, when every
    row is in. Elsewhere, one statement per group."""
    groups = tuple(group for group in groups if group)
    if db.get_bind().dialect.name != "postgresql":
        for group in groups:
            insert_rows(db, group)
        return
    # Row by row: a single-row VALUES is the form SQLAlchemy caches compiled
    # (a multi-row one is compiled anew each time), and several rows of one
    # table would otherwise be psycopg's executemany, which runs in pipeline
    # mode and cost a refresh a fifth of its worker's CPU (py-spy, 2 rows).
    singles = tuple([row] for group in groups for row in group)
    if len(singles) < 2:
        for single in singles:
            insert_rows(db, single)
        return
    shape: list[tuple[Table, tuple[str, ...]]] = []
    parameters: dict[str, Any] = {}
    adopted: list[list[str]] = []
    for number, single in enumerate(singles):
        table, (values,), defaulted = _insert_values(single)
        shape.append((table, tuple(values)))
        for column, value in values.items():
            parameters[_together_name(number, column)] = value
        adopted.append(defaulted)
    db.flush()
    db.connection().execute(_together_statement(tuple(shape)), parameters)
    for single, defaulted in zip(singles, adopted, strict=True):
        _adopt(db, single, defaulted)


def _together_name(row: int, column: str) -> str:
    return f"r{row}_{column}"


@lru_cache(maxsize=64)
def _together_statement(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Any:
    """One single-row INSERT per row, the earlier ones as WITH clauses of the
    last, for rows of this shape (each row's table and the columns it gives).
    Built once per shape with its values as named parameters, so SQLAlchemy
    compiles it once."""
    statements = []
    for number, (table, columns) in enumerate(shape):
        values = {
            column: bindparam(_together_name(number, column), type_=table.c[column].type)
            for column in columns
        }
        statements.append(insert(table).values(values))
    *earlier, last = statements
    for number, statement in enumerate(earlier):
        last = last.add_cte(statement.cte(f"earlier_{number}"))
    return last


def _insert_values(rows: Sequence[Any]) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """The table of ``rows``, each row's column values, and the attributes
    every row leaves to the column defaults."""
    mapper = inspect(rows[0]).mapper
    table = mapper.local_table
    batch: list[dict[str, Any]] = []
    defaulted: list[str] = []
    for row in rows:
        if inspect(row).mapper is not mapper:
            raise ValueError("insert_rows takes rows of one mapped class")
        values: dict[str, Any] = {}
        left: list[str] = []
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if column.table is not table:
                continue
            value = getattr(row, prop.key)
            if value is None and (column.default is not None or column.server_default is not None):
                left.append(prop.key)
                continue
            values[column.key] = value
        if None in [values.get(column.key) for column in table.primary_key.columns]:
            raise ValueError("insert_rows needs each primary key set before the insert")
        if batch and left != defaulted:
            raise ValueError("insert_rows needs the same columns left to defaults in every row")
        batch.append(values)
        defaulted = left
    return table, batch, defaulted


def _adopt(db: Session, rows: Sequence[Any], defaulted: list[str]) -> None:
    """Keep inserted rows in the session as the persistent rows they now are."""
    for row in rows:
        make_transient_to_detached(row)
        db.add(row)
        if defaulted:
            db.expire(row, defaulted)
