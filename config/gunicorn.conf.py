"""Gunicorn settings for production: ``gunicorn -c config/gunicorn.conf.py``.

Sign-in is CPU-bound (argon2id), so sync workers, one or two per core, are the
right shape; every bit of shared state is in PostgreSQL or Redis, so any number
of workers or hosts give the same answers.
"""

import multiprocessing
import os

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
accesslog = "-"
access_log_format = '"%(m)s %({privid.route}e)s" %(s)s %(b)s %(L)ss pid=%(p)s'
errorlog = "-"
# gunicorn's error log names the peer of a request it cannot parse; this one does not.
logger_class = "app.access_log.AddresslessGunicornLogger"
limit_request_field_size = 8190
