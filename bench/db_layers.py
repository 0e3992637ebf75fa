"""What one unit of work of plain reads costs at each layer the service could
run it through, on PostgreSQL: an ORM session on the service's engine (late
transactions), the same on an engine that opens a transaction at the first
statement, a Core connection, and psycopg alone.

    PRIVID_BENCH_DATABASE_URL=postgresql+psycopg://… .venv/bin/python -m bench.db_layers

One thread, one connection per layer, runs interleaved so a noisy machine
affects every layer alike. Reports the median wall and client CPU time per
unit of work in microseconds; the difference between wall and CPU is what the
client waited on the server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

from app.db import make_engine

QUERY = "SELECT relname FROM pg_class WHERE oid = :oid"
# pg_class rows every PostgreSQL has: reads that find something, touch no table
# of the service and need no schema.
OIDS = (1259, 1247)


def _orm(engine: Engine) -> Callable[[], None]:
    def unit() -> None:
        with Session(engine) as db:
            for oid in OIDS:
                db.execute(text(QUERY), {"oid": oid}).all()
            db.commit()

    return unit


def _core(engine: Engine) -> Callable[[], None]:
    def unit() -> None:
        with engine.connect() as connection:
            for oid in OIDS:
                connection.execute(text(QUERY), {"oid": oid}).all()
            connection.commit()

    return unit


def _driver(url: str) -> Callable[[], None]:
    parsed = make_url(url)
    connection = psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username,
        password=parsed.password, dbname=parsed.database, autocommit=True,
    )  # fmt: skip
    statement = QUERY.replace(":oid", "%s")

    def unit() -> None:
        for oid in OIDS:
            connection.execute(statement, (oid,)).fetchall()

    return unit


def measure(url: str, rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    late = make_engine(url)
    eager = create_engine(url)
    layers = {
        "orm_session_late_transaction": _orm(late),
        "orm_session_transaction_first": _orm(eager),
        "core_connection_late_transaction": _core(late),
        "psycopg": _driver(url),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in layers}
    for unit in layers.values():
        unit()  # connect and warm up
    for _ in range(rounds):
        for name, unit in layers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                unit()
            samples[name].append(
                (
                    (time.perf_counter() - wall) / per_round * 1e6,
                    (time.process_time() - cpu) / per_round * 1e6,
                )
            )
    late.dispose()
    eager.dispose()
    return {
        name: {
            "wall_us": round(statistics.median(s[0] for s in runs), 1),
            "client_cpu_us": round(statistics.median(s[1] for s in runs), 1),
        }
        for name, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=300)
    args = parser.parse_args()
    url = os.environ.get("PRIVID_BENCH_DATABASE_URL", "")
    if not url.startswith("postgresql+psycopg"):
        parser.error("set PRIVID_BENCH_DATABASE_URL to a postgresql+psycopg:// database")
    print(json.dumps(measure(url, args.rounds, args.per_round), indent=2))


if __name__ == "__main__":
    main()
