"""PostgreSQL transactions that open at a unit of work's first write or
locking read, not at its first statement.

A transaction costs two round trips (BEGIN and COMMIT), and a request that
only reads (a session check, introspection, UserInfo, JWKS) needs neither.
The driver runs in autocommit; the cursor sends BEGIN just before the first
statement that is not a plain read. Under READ COMMITTED, which the service
uses, every statement takes its own snapshot inside a transaction or out, so
plain reads before the first write see what they would have seen inside one;
locks are the difference, and a locking read opens the transaction itself.
psycopg sends COMMIT or ROLLBACK only when the server is in a transaction, so
a unit of work that never wrote ends without a round trip.

The check sits in the driver's cursor rather than in a SQLAlchemy event: any
statement listener puts every execution on SQLAlchemy's slower path, which
costs more than the round trips saved.

What this asks of code that uses the engine:
- A statement that starts with SELECT is taken for a plain read. One that
  writes through a function (``set_config(…, true)``, ``pg_notify``,
  ``setval``, a function of our own) would run in autocommit, outside the unit
  of work: write it so it needs a transaction, or do not write that way. The
  only such call today is ``nextval``, which no transaction undoes anyway.
- No statement but a plain read runs outside a transaction on this engine:
  a statement PostgreSQL refuses inside one (``CREATE INDEX CONCURRENTLY``,
  ``VACUUM``) needs a connection of its own without this cursor class.
- Server-side (named) cursors fail when they are a unit of work's first
  statement (PostgreSQL refuses one outside a transaction) and work after a
  write. The service uses none.
- SQLAlchemy must go on calling the driver's rollback in autocommit
  (``skip_autocommit_rollback`` left off): that is what ends a transaction
  opened here when a request fails, and what resets a pooled connection."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Engine, event

# Statements that may run outside a transaction: plain reads. Anything else (a
# write, DDL, SAVEPOINT, SET LOCAL, WITH …) or a read that takes row or advisory
# locks, which are only held until the transaction ends, must run inside one.
_PLAIN_READ = re.compile(r"\s*SELECT\b", re.IGNORECASE)
_TAKES_LOCKS = re.compile(
    r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b|\bpg_(?:try_)?advisory_xact_lock",
    re.IGNORECASE,
)
_IDLE = pq.TransactionStatus.IDLE


@lru_cache(maxsize=4096)
def needs_transaction(statement: str) -> bool:
    return _PLAIN_READ.match(statement) is None or _TAKES_LOCKS.search(statement) is not None


class LateTransactionCursor(psycopg.Cursor[Any]):
    """A cursor that opens the transaction when a statement needs one."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> LateTransactionCursor:
        self._begin_if_needed(query)
        super().execute(query, params, **kwargs)
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self._begin_if_needed(query)
        super().executemany(query, params_seq, **kwargs)

    def _begin_if_needed(self, query: Any) -> None:
        if self.connection.pgconn.transaction_status != _IDLE:
            return
        # Composed or bytes queries are not inspected: they get a transaction.
        if not isinstance(query, str) or needs_transaction(query):
            super().execute("BEGIN")


def open_transactions_late(engine: Engine) -> None:
    """Make ``engine`` (psycopg 3, created with isolation_level AUTOCOMMIT) open
    its transactions late."""

    @event.listens_for(engine, "connect")
    def _late_cursors(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.cursor_factory = LateTransactionCursor
