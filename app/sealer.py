"""The ledger sealer: takes new consent records and audit events into their
chains and appends signed checkpoints. `privid worker` runs it every
PRIVID_CHAIN_SEAL_INTERVAL_SECONDS; `flask chain-seal` and the verify commands
run it once. Sealers take turns (an advisory lock on PostgreSQL, the write
lock on SQLite), so any number of workers may run one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from app.services.chain import ChainKeeper, ChainTampered, Sealed
from app.services.container import Runtime, Services

log = logging.getLogger(__name__)


@dataclass
class SealReport:
    sealed: dict[str, list[Sealed]] = field(default_factory=dict)
    # chain -> what it would not seal over: the whole chain (its checkpoint no
    # longer fits) or the accounts named (the rest was sealed)
    refused: dict[str, str] = field(default_factory=dict)


def seal_committed(db: DbSession, keeper: ChainKeeper) -> list[Sealed]:
    """Seal batch after batch, committing each, then appending its checkpoint:
    a checkpoint never names a seal that a rollback could take away. Raises
    ChainTampered (nothing sealed) when the chain shows a gap."""
    done: list[Sealed] = []
    while sealed := keeper.seal():
        db.commit()
        keeper.write_checkpoint(sealed)
        done.append(sealed)
    db.commit()
    return done


class LedgerSealer:
    def __init__(self, session_factory: sessionmaker[DbSession], runtime: Runtime) -> None:
        self._session_factory, self._runtime = session_factory, runtime
        self._last_refusal: dict[str, str] = {}

    @classmethod
    def for_app(cls, app: Flask) -> LedgerSealer:
        return cls(app.extensions["privid.session_factory"], app.extensions["privid.runtime"])

    def run_once(self) -> SealReport:
        """Seal each ledger in a unit of work of its own: a chain that shows a
        gap is left unsealed (and logged) while the other one goes on."""
        report = SealReport()
        for chain in ("consent", "audit"):
            svc = Services(self._session_factory(), self._runtime)
            try:
                keeper = svc.consent.chain() if chain == "consent" else svc.audit.chain()
                report.sealed[chain] = seal_committed(svc.db, keeper)
                refusal = "; ".join(keeper.held_back)
            except ChainTampered as refused:
                svc.db.rollback()
                refusal = str(refused)
            finally:
                svc.db.rollback()
                svc.db.close()
            if not refusal:
                self._last_refusal.pop(chain, None)
            else:
                report.refused[chain] = refusal
                if self._last_refusal.get(chain) != refusal:  # once, not every pass
                    # What does not fit names accounts: the verify command says it.
                    log.error(
                        "%s chain not sealed: it shows a gap or a rewrite; run flask %s-verify",
                        chain, chain,
                    )  # fmt: skip
                    self._last_refusal[chain] = refusal
        return report
