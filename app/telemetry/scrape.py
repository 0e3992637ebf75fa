"""What a scrape of /metrics answers: the counters and histograms of
app/metrics.py (added up over every gunicorn worker's files when
PROMETHEUS_MULTIPROC_DIR is set) and the gauges read from the database at
scrape time, never per request: outbox backlog and overdue data-subject
requests."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from app import metrics
from app.clock import Clock
from app.services.outbox import backlog
from app.services.rights import overdue_count

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class DatabaseGauges(Collector):
    session_factory: sessionmaker[DbSession]
    clock: Clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "privid_metrics_database_up", "1 if the database answered this scrape's queries."
        )
        try:
            with self.session_factory() as db:
                now = self.clock.now()
                pending, oldest = backlog(db)
                overdue = overdue_count(db, now)
        except Exception as exc:  # a scrape must still answer while the database is away
            log.warning("metrics: database gauges unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "privid_outbox_pending_messages", "Messages waiting in the outbox.", value=pending
        )
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "privid_outbox_oldest_pending_age_seconds",
            "Age of the oldest message waiting in the outbox (0 when none waits).",
            value=max(0.0, age),
        )
        yield GaugeMetricFamily(
            "privid_data_subject_requests_overdue",
            "Open data-subject requests past their due date.",
            value=overdue,
        )


class _Scrape:
    """A registry-like pair for generate_latest: the event metrics and the
    database gauges."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def event_metrics() -> Collector:
    """This process's metrics, or every worker's when running multi-process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return metrics.REGISTRY


def exposition(session_factory: sessionmaker[DbSession], clock: Clock) -> bytes:
    return generate_latest(_Scrape(event_metrics(), DatabaseGauges(session_factory, clock)))
