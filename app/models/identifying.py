"""Which columns can identify a user, so that every table holding one is either
in the user's export or declared left out with a reason (app/services/export.py).

A column identifies a user when it
- has a foreign key to ``users``;
- is named like one: ``user_id``, ``actor_id``, ``*_user_id``, ``*_by`` (who
  did something), ``*_index`` (blind index of an email or phone),
  ``*pseudonym*``; or
- says so itself: ``mapped_column(..., info=identifies_user("why"))``, for
  columns whose name gives no hint (a throttle key made of a blind index, a
  code's subject). ``info=identifies_user(None)`` says a conventionally named
  column does not.
"""

from __future__ import annotations

from sqlalchemy import Column, MetaData, Table

INFO_KEY = "identifies_user"
_EXACT = frozenset({"user_id", "actor_id"})
_SUFFIXES = ("_user_id", "_by", "_index", "_pseudonym")


def identifies_user(why: str | None) -> dict[str, str | None]:
    """``info`` for a column: what identifies the user in it (None: nothing)."""
    return {INFO_KEY: why}


def why_identifying(column: Column[object]) -> str | None:
    """Why ``column`` can identify a user, or None when it cannot."""
    if INFO_KEY in column.info:
        declared = column.info[INFO_KEY]
        return str(declared) if declared else None
    if any(fk.column.table.name == "users" for fk in column.foreign_keys):
        return "foreign key to users"
    name = column.name
    if name in _EXACT or name.endswith(_SUFFIXES) or "pseudonym" in name:
        return f"named {name}"
    return None


def identifying_columns(metadata: MetaData) -> dict[str, dict[str, str]]:
    """{table: {column: why}} for every table with at least one such column."""
    found: dict[str, dict[str, str]] = {}
    for table in metadata.sorted_tables:
        columns = _identifying_in(table)
        if columns:
            found[table.name] = columns
    return found


def _identifying_in(table: Table) -> dict[str, str]:
    out: dict[str, str] = {}
    for column in table.columns:
        why = why_identifying(column)
        if why:
            out[column.name] = why
    return out
