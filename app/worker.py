"""The outbox worker: sends every queued message and, every
PRIVID_CHAIN_SEAL_INTERVAL_SECONDS, seals the ledgers' new rows
(app/sealer.py). `privid worker` runs it as a process of its own (as many as
wanted: they never send a message twice, and sealers take turns);
`privid serve` runs one on a thread for development; `flask outbox-deliver`
runs one delivery pass."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from app.sealer import LedgerSealer
from app.services.container import Runtime, Services
from app.services.outbox import DeliveryReport
from app.telemetry import request_id

log = logging.getLogger(__name__)

BATCH = 100


class OutboxWorker:
    def __init__(self, session_factory: sessionmaker[DbSession], runtime: Runtime) -> None:
        self._session_factory, self._runtime = session_factory, runtime
        self._sealer = LedgerSealer(session_factory, runtime)

    @classmethod
    def for_app(cls, app: Flask) -> OutboxWorker:
        return cls(app.extensions["privid.session_factory"], app.extensions["privid.runtime"])

    def run_once(self, limit: int = BATCH, stop: threading.Event | None = None) -> DeliveryReport:
        """One pass over the messages that are due, up to ``limit`` of them; a
        set ``stop`` ends it after the message in hand."""
        svc = Services(self._session_factory(), self._runtime)
        try:
            with request_id.bound(request_id.current() or request_id.new_id()):
                return svc.outbox.deliver_due(limit, stop.is_set if stop else None)
        finally:
            svc.db.rollback()
            svc.db.close()

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set; rests between passes that
        sent nothing, so an idle outbox costs one query per poll interval.
        Seals the ledgers whenever the seal interval has passed."""
        poll = self._runtime.settings.outbox_poll_seconds
        seal_every = self._runtime.settings.chain_seal_interval_seconds
        next_seal = time.monotonic()
        while not stop.is_set():
            # Each pass is a job with an id of its own, like a request.
            with request_id.bound(request_id.new_id()):
                if seal_every and time.monotonic() >= next_seal:
                    self._seal()
                    next_seal = time.monotonic() + seal_every
                try:
                    report = self.run_once(stop=stop)
                except Exception as exc:  # the database may be away for a while
                    log.error("outbox pass failed: %s", type(exc).__name__)
                    stop.wait(poll)
                    continue
                if report.total:
                    log.info(
                        "outbox: sent %d, retrying %d, abandoned %d, skipped %d",
                        report.sent, report.retrying, report.abandoned, report.skipped,
                    )  # fmt: skip
            if not report.sent:
                until_seal = next_seal - time.monotonic() if seal_every else poll
                stop.wait(max(0.0, min(poll, until_seal)))

    def _seal(self) -> None:
        try:
            report = self._sealer.run_once()
        except Exception as exc:  # the database may be away for a while
            log.error("sealing failed: %s", type(exc).__name__)
            return
        for chain, seals in report.sealed.items():
            if seals:
                log.info("%s: sealed %d rows", chain, sum(s.rows for s in seals))

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Runs on a daemon thread (development server); set the event to stop."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="privid-outbox", daemon=True)
        thread.start()
        return thread, stop
