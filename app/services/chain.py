"""Keyed chains for the append-only ledgers (consent records, audit trail).

Every row carries an HMAC-SHA256 under the chain key, which lives in settings,
never in the database: without it a row can be neither rewritten nor forged.
Writers take no shared lock. A sealer (`privid worker` every few seconds,
`flask chain-seal`, the verify commands) takes the rows not yet sealed into the
ledger's chain in batches, after checking them as verify does (it never seals
over a gap): a seal lists their ids and carries an HMAC over their hashes and
the seal before it. After each seal a signed checkpoint (chain, seal, its MAC, the
number of rows sealed so far, time) is appended to a file outside the database,
so cutting the chain back, emptying it or rebuilding it shows against that file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Protocol

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session as DbSession

from app.clock import Clock
from app.models import ChainSeal
from app.services.checkpoints import Checkpoint, CheckpointStore, CheckpointUnreadable

GENESIS_HASH = "0" * 64
# At most this many rows go into one seal (the seal lists their ids).
SEAL_BATCH = 5000
# The problems a report lists before it stops counting.
MAX_PROBLEMS = 20


def keyed_hash(key: bytes, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Ledger:
    """What a chained table is: its rows have ``id``, ``hash`` and ``seal``."""

    name: str  # "consent", "audit"
    model: Any
    noun: str  # how a report names one row: "record", "event"
    plural: str
    fields: Callable[[Any], dict[str, Any]]  # what a row's hash covers

    def row_hash(self, key: bytes, row: Any) -> str:
        return keyed_hash(key, {"chain": self.name, **self.fields(row)})

    def rows_named(self, ids: Sequence[int]) -> str:
        """ "record 7", "records 7–9", "records 3, 7–9": what a report names."""
        spans: list[str] = []
        ordered = sorted(ids)
        for _, run in groupby(enumerate(ordered), key=lambda pair: pair[1] - pair[0]):
            block = [value for _, value in run]
            spans.append(str(block[0]) if len(block) == 1 else f"{block[0]}–{block[-1]}")
        noun = self.noun if len(ordered) == 1 else self.plural
        return f"{noun} {', '.join(spans)}"


@dataclass
class Verdict:
    """The result of checking a ledger: problems first found first."""

    ledger: Ledger
    rows: int = 0
    seals: int = 0
    pending: int = 0
    checkpoint: Checkpoint | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


@dataclass(frozen=True)
class Sealed:
    """A seal just written; its checkpoint is appended once it is committed."""

    chain: str
    seq: int
    mac: str
    rows: int  # rows in this seal
    records: int  # rows sealed in the chain so far
    last_id: int


class ChainTampered(Exception):
    """The sealer will not extend a chain that no longer matches its checkpoint."""


@dataclass(frozen=True)
class Problem:
    """Something that does not fit, and the group of rows (one account's) that
    the sealer holds back because of it."""

    text: str
    group: str


class LedgerRules(Protocol):
    """What a ledger checks beyond each row's own MAC (the consent ledger: the
    links between an account's records, and its keyed chain heads)."""

    def group_of(self, row: Any) -> str:
        """The group (chain) a row belongs to: the unit the sealer holds back."""
        ...

    def row_problems(self, rows: Sequence[Any]) -> Iterable[Problem]:
        """Problems among ``rows`` (in id order): every row the check needs."""
        ...

    def rows_behind(self, db: DbSession, pending: Sequence[Any]) -> Sequence[Any]:
        """The rows (in id order) that ``row_problems`` needs to check ``pending``."""
        ...

    def state_problems(
        self, db: DbSession, pending: Sequence[Any] | None = None
    ) -> Iterable[Problem]:
        """Problems in the ledger's state outside its rows (e.g. its heads): all
        of it, or what sealing ``pending`` would vouch for."""
        ...


class ChainKeeper:
    """Seals and verifies one ledger, within one unit of work."""

    def __init__(
        self,
        db: DbSession,
        ledger: Ledger,
        key: bytes,
        checkpoints: CheckpointStore,
        clock: Clock,
        rules: LedgerRules | None = None,
    ) -> None:
        self._db, self._ledger, self._key = db, ledger, key
        self._checkpoints, self._clock, self._rules = checkpoints, clock, rules
        # Why seal() left rows unsealed, since this keeper was made.
        self.held_back: list[str] = []

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def _seal_mac(self, seq: int, prev_mac: str, hashes: list[list[Any]]) -> str:
        """``hashes``: [row id, row hash] for each row the seal lists."""
        return keyed_hash(
            self._key,
            {"chain": self._ledger.name, "seal": seq, "prev": prev_mac, "rows": hashes},
        )

    def _seals(self) -> list[ChainSeal]:
        query = select(ChainSeal).where(ChainSeal.chain == self._ledger.name)
        return list(self._db.execute(query.order_by(ChainSeal.seq)).scalars())

    # -- sealing ---------------------------------------------------------------

    def seal(self) -> Sealed | None:
        """Take the rows not yet sealed into the chain (one batch); None when
        there are none. Refuses when the chain no longer matches its checkpoint;
        leaves out (``held_back``) the rows of a group that shows a gap."""
        if self._db.get_bind().dialect.name == "postgresql":
            # Sealers of one chain take turns; writers never take this lock.
            # (SQLite's BEGIN IMMEDIATE already serialises every writer.)
            self._db.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"seal:{self._ledger.name}"},
            )
        last = self._db.execute(
            select(ChainSeal)
            .where(ChainSeal.chain == self._ledger.name)
            .order_by(ChainSeal.seq.desc())
            .limit(1)
        ).scalar_one_or_none()
        self._check_base(last)
        model = self._ledger.model
        pending = list(
            self._db.execute(
                select(model).where(model.seal.is_(None)).order_by(model.id).limit(SEAL_BATCH)
            ).scalars()
        )
        pending = self._sealable(pending)
        if not pending:
            return None
        seq = (last.seq if last else 0) + 1
        prev = last.mac if last else GENESIS_HASH
        hashes: list[list[Any]] = [[row.id, row.hash] for row in pending]
        seal = ChainSeal(
            chain=self._ledger.name,
            seq=seq,
            sealed_at=self._clock.now(),
            row_ids=[row_id for row_id, _ in hashes],
            prev_mac=prev,
            mac=self._seal_mac(seq, prev, hashes),
        )
        self._db.add(seal)
        self._db.flush()
        ids = seal.row_ids
        for start in range(0, len(ids), 1000):
            self._db.execute(
                update(model).where(model.id.in_(ids[start : start + 1000])).values(seal=seq)
            )
        records = self._db.execute(
            select(func.count()).select_from(model).where(model.seal.is_not(None))
        ).scalar_one()
        return Sealed(self._ledger.name, seq, seal.mac, len(ids), int(records), max(ids))

    def _sealable(self, pending: Sequence[Any]) -> list[Any]:
        """A seal vouches for its rows: never seal over a gap that the keyed
        checks can see (verify's checks, on the rows to be sealed and what they
        depend on). The group that shows one (an account's chain) stays out,
        and only it: one broken account must not stop sealing everyone's."""
        ledger, bad_ids, held = self._ledger, set(), set()
        for row in pending:
            if ledger.row_hash(self._key, row) != row.hash:
                bad_ids.add(row.id)
                self._hold(f"{ledger.noun} {row.id}: its content does not match its keyed hash")
        if self._rules is not None:
            behind = self._rules.rows_behind(self._db, pending)
            for problem in [
                *self._rules.row_problems(behind),
                *self._rules.state_problems(self._db, pending),
            ]:
                held.add(problem.group)
                self._hold(problem.text)
            held.update(self._rules.group_of(row) for row in pending if row.id in bad_ids)
        return [
            row
            for row in pending
            if row.id not in bad_ids
            and (self._rules is None or self._rules.group_of(row) not in held)
        ]

    def _hold(self, why: str) -> None:
        if why not in self.held_back:
            self.held_back.append(why)

    def _check_base(self, last: ChainSeal | None) -> None:
        try:
            checkpoint = self._checkpoints.latest(self._ledger.name)
        except CheckpointUnreadable as unreadable:
            raise ChainTampered(str(unreadable)) from None
        if checkpoint is None:
            return
        at = self._db.execute(
            select(ChainSeal).where(
                ChainSeal.chain == self._ledger.name, ChainSeal.seq == checkpoint.seal
            )
        ).scalar_one_or_none()
        if at is None or at.mac != checkpoint.mac or last is None:
            raise ChainTampered(
                f"the {self._ledger.name} chain no longer matches its checkpoint of "
                f"{checkpoint.at}; run the verify command"
            )

    def write_checkpoint(self, sealed: Sealed) -> Checkpoint:
        """Call after the seal is committed: a checkpoint must never name a seal
        that a rollback took away."""
        return self._checkpoints.append(
            Checkpoint(
                chain=sealed.chain,
                seal=sealed.seq,
                mac=sealed.mac,
                records=sealed.records,
                last_id=sealed.last_id,
                at=self._clock.now().replace(microsecond=0).isoformat(),
            )
        )

    # -- verifying -------------------------------------------------------------

    def verify(self) -> Verdict:
        ledger, model = self._ledger, self._ledger.model
        verdict = Verdict(ledger)
        rows = list(self._db.execute(select(model).order_by(model.id)).scalars())
        verdict.rows = len(rows)
        for row in rows:
            if ledger.row_hash(self._key, row) != row.hash:
                verdict.add(
                    f"{ledger.noun} {row.id}: its content does not match its keyed hash "
                    "(rewritten, or written without the key)"
                )
        if self._rules is not None:
            for problem in [*self._rules.row_problems(rows), *self._rules.state_problems(self._db)]:
                verdict.add(problem.text)
        seals = self._seals()
        verdict.seals = len(seals)
        covered = self._check_seals(seals, {row.id: row for row in rows}, verdict)
        for row in rows:
            if row.seal is not None and covered.get(row.id) != row.seal:
                verdict.add(
                    f"{ledger.noun} {row.id}: claims seal {row.seal}, which does not list it"
                )
        verdict.pending = sum(1 for row in rows if row.id not in covered)
        self._check_checkpoint(seals, verdict)
        return verdict

    def _check_seals(
        self, seals: list[ChainSeal], by_id: dict[int, Any], verdict: Verdict
    ) -> dict[int, int]:
        ledger = self._ledger
        covered: dict[int, int] = {}
        prev, expected = GENESIS_HASH, 1
        for seal in seals:
            if seal.seq != expected:
                verdict.add(f"seals {expected}–{seal.seq - 1} are missing before seal {seal.seq}")
            elif seal.prev_mac != prev:
                verdict.add(f"seal {seal.seq}: does not follow seal {seal.seq - 1}")
            missing = [i for i in seal.row_ids if i not in by_id]
            twice = [i for i in seal.row_ids if i in covered]
            if missing:
                verdict.add(
                    f"{ledger.rows_named(missing)}, sealed in seal {seal.seq}, "
                    f"{'is' if len(missing) == 1 else 'are'} missing"
                )
            if twice:
                verdict.add(f"{ledger.rows_named(twice)}: sealed twice (again in seal {seal.seq})")
            hashes: list[list[Any]] = [
                [i, by_id[i].hash if i in by_id else ""] for i in seal.row_ids
            ]
            if not missing and self._seal_mac(seal.seq, seal.prev_mac, hashes) != seal.mac:
                verdict.add(
                    f"seal {seal.seq}: the {ledger.plural} it lists "
                    f"({ledger.rows_named(seal.row_ids)}) no longer match it"
                )
            covered.update(dict.fromkeys(seal.row_ids, seal.seq))
            prev, expected = seal.mac, seal.seq + 1
        return covered

    def _check_checkpoint(self, seals: list[ChainSeal], verdict: Verdict) -> None:
        ledger = self._ledger
        try:
            checkpoint = self._checkpoints.latest(ledger.name)
        except CheckpointUnreadable as unreadable:
            verdict.add(str(unreadable))
            return
        verdict.checkpoint = checkpoint
        if checkpoint is None:
            if seals:
                verdict.add(
                    f"no signed checkpoint in {self._checkpoints.folder} for "
                    f"{len(seals)} seals: whether the chain was cut back cannot be told"
                )
            return
        vouched = (
            f"the checkpoint of {checkpoint.at} vouches for {checkpoint.records} "
            f"{ledger.plural} up to {ledger.noun} {checkpoint.last_id} in seal {checkpoint.seal}"
        )
        by_seq = {seal.seq: seal for seal in seals}
        seal = by_seq.get(checkpoint.seal)
        if seal is None:
            held = f"seals up to {seals[-1].seq}" if seals else "no seals"
            verdict.add(
                f"{vouched}, but the database holds {held} and {verdict.rows} "
                f"{ledger.plural}: the chain was cut back or emptied"
            )
        elif seal.mac != checkpoint.mac:
            verdict.add(f"{vouched}, but seal {seal.seq} no longer matches it: rewritten")
        else:
            sealed = sum(len(s.row_ids) for s in seals if s.seq <= checkpoint.seal)
            if sealed != checkpoint.records:
                verdict.add(f"{vouched}, but seals 1–{seal.seq} list {sealed}")
