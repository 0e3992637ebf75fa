"""Gunicorn settings for production: ``gunicorn -c config/gunicorn.conf.py``.

Sign-in is CPU-bound (argon2id), so sync workers, one or two per core, are the
right shape; every bit of shared state is in PostgreSQL or Redis, so any number
of workers or hosts give the same answers.
"""

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

wsgi_app = "app:create_app()"
bind = os.environ.get("PRIVID_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 2
# Only proxies we run may set X-Forwarded-*; the app trusts PRIVID_TRUSTED_PROXY_COUNT hops.
forwarded_allow_ips = os.environ.get("PRIVID_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Access log without client addresses, query strings, headers or the ids in
# paths (the route the app matched stands for the path: app/access_log.py): the
# service keeps IP addresses only truncated, and only with the security purpose.
# Lines are JSON (PRIVID_LOG_FORMAT), with the request's id.
accesslog = "-"
errorlog = "-"
# gunicorn's error log names the peer of a request it cannot parse; this one does not.
logger_class = "app.access_log.AddresslessGunicornLogger"
limit_request_field_size = 8190

# Metrics (GET /metrics): each worker writes its counts to files in
# PROMETHEUS_MULTIPROC_DIR and a scrape, whichever worker answers it, adds up
# every file. Set before any worker imports prometheus_client; a folder of our
# own when the operator names none (then removed at exit).
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="privid-metrics-")
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server):
    # A previous run's files would add its counts to this run's.
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    # A dead worker's counters stay (counts must never go down); its live
    # gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
