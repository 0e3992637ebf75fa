"""Hash chains: each row carries the hash of the row before it, so editing or
removing a row in the middle shows. Used by the audit trail and the consent ledger."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from app.models import ChainHead

GENESIS_HASH = "0" * 64


class Chained(Protocol):
    id: int
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainBreak:
    row_id: int  # -1 when rows are missing at the end
    reason: str


def digest(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class HashChain:
    """``fields`` says what of a row is sealed; the chain's head row is locked
    while a row is appended, so concurrent workers cannot fork the chain."""

    def __init__(self, db: DbSession, name: str, fields: Callable[[Any], dict[str, Any]]):
        self._db, self._name, self._fields = db, name, fields

    def row_hash(self, row: Chained) -> str:
        return digest({**self._fields(row), "prev_hash": row.prev_hash})

    def lock(self) -> ChainHead:
        """Take the chain's lock now, before reading what a decision depends on."""
        return self._db.execute(
            select(ChainHead).where(ChainHead.name == self._name).with_for_update()
        ).scalar_one()

    def seal(self, row: Chained) -> None:
        head = self.lock()
        row.prev_hash = head.last_hash
        row.hash = self.row_hash(row)
        head.last_hash = row.hash
        self._db.add(row)
        self._db.flush()

    def verify(self, rows_in_order: Iterable[Chained]) -> ChainBreak | None:
        """The first row that does not fit the chain, or None when it is whole."""
        expected_prev = GENESIS_HASH
        for row in rows_in_order:
            if row.prev_hash != expected_prev:
                return ChainBreak(row.id, "does not follow the row before it")
            if self.row_hash(row) != row.hash:
                return ChainBreak(row.id, "its content does not match its hash")
            expected_prev = row.hash
        head = self._db.get(ChainHead, self._name)
        if head is not None and head.last_hash != expected_prev:
            return ChainBreak(-1, "rows are missing at the end of the chain")
        return None
