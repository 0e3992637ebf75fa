"""Hot reads without the ORM: a SELECT compiled once per dialect and run
through the driver on the unit of work's own connection, its row handed back
as plain values converted by the columns' own types.

Why: reading the client on every grant and introspection, and the token on
every introspection, the ORM's execution and object loading cost the worker
more CPU than PostgreSQL's whole answer (measured in-process: a client read
through ``Session.get`` took about 250 µs of the worker, SQLAlchemy Core 150 µs,
the driver alone 90 µs). Such a row comes back as a frozen record, not a
mapped object: nothing tracks it, so only rows a request reads and never
changes may be read this way.

What SQLAlchemy would have done and this keeps: the session's pending
changes flushed first, the same connection and transaction as the rest of the
unit of work (on PostgreSQL a plain read opens
none, see ``app/late_transactions.py``), bind and result conversions of the
columns' types, driver errors wrapped as SQLAlchemy's (so an outage is still
a 503, ``app/http/outages.py``), a connection found dead invalidated with
every pooled one older than it, and the engine's ``before_cursor_execute``
listeners told.
Parameters never reach the error's text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # Parameter names in the order a positional paramstyle (SQLite's qmark)
    # wants them; None where the driver takes a mapping (psycopg's pyformat).
    order: tuple[str, ...] | None
    binds: dict[str, Convert]
    results: tuple[Convert | None, ...]


class PlainRead:
    """One SELECT, its parameters bound by name at each call."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self._statement = statement
        # Per dialect and driver: paramstyles differ between PostgreSQL drivers.
        self._compiled: dict[tuple[str, str, str], _Compiled] = {}

    def first(self, db: Session, **params: Any) -> tuple[Any, ...] | None:
        """The first row as a tuple of converted values, or None."""
        if db.autoflush:
            db.flush()  # as an ORM read would: pending changes are seen
        connection = db.connection()
        dialect = connection.dialect
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        compiled = self._compiled.get(key) or self._compile(dialect, key)
        for name, convert in compiled.binds.items():
            params[name] = convert(params[name])
        arguments: Any = (
            params if compiled.order is None else tuple(params[name] for name in compiled.order)
        )
        pooled = connection.connection
        cursor = pooled.cursor()
        try:
            if connection.dispatch.before_cursor_execute:
                # Whoever listens to the engine's statements (tracing, the
                # tests' statement counts) sees these too; without a listener
                # this is the only cost.
                connection.dispatch.before_cursor_execute(
                    connection, cursor, compiled.sql, arguments, None, False
                )
            cursor.execute(compiled.sql, arguments)
            row = cursor.fetchone()
        except dialect.loaded_dbapi.Error as error:
            gone = dialect.is_disconnect(error, pooled, cursor)
            if gone:
                # As SQLAlchemy does on a disconnect: every pooled connection
                # older than this one is suspect too (a restarted server
                # dropped them all), and is replaced at its next checkout.
                connection.engine.pool._invalidate(pooled, error, _checkin=False)
                connection.invalidate(error)
            raise DBAPIError.instance(
                compiled.sql,
                None,
                error,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,
                connection_invalidated=gone,
                dialect=dialect,
            ) from error
        finally:
            cursor.close()
        if row is None:
            return None
        return tuple(
            value if convert is None or value is None else convert(value)
            for convert, value in zip(compiled.results, row, strict=True)
        )

    def _compile(self, dialect: Dialect, key: tuple[str, str, str]) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect)
        binds: dict[str, Convert] = {}
        for name, parameter in compiled.binds.items():
            convert = parameter.type.dialect_impl(dialect).bind_processor(dialect)
            if convert is not None:
                binds[name] = convert
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self._statement.selected_columns
        )
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        prepared = _Compiled(compiled.string, order, binds, results)
        self._compiled[key] = prepared
        return prepared
