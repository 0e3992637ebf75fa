"""Slow clients against gunicorn's sync workers, with and without the proxy.

A sync worker serves one request at a time and reads it from the socket itself,
so a client that sends its headers, or its headers and half its body, then
waits, holds that worker until gunicorn's 30 s timeout. Behind nginx with
request buffering (config/nginx-privid.conf, as README documents) nginx holds
such clients instead and gunicorn sees only complete requests.

Both tests start gunicorn with config/gunicorn.conf.py and three workers. The
second one shows the first would fail without the proxy: the same slow clients
sent straight to gunicorn stop it answering.

nginx: .ci/run installs it (Debian's nginx-light). Where it is missing outside
CI the proxied test is skipped with the command that installs it; in CI
(CI=true) a missing nginx fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from app.settings import Settings
from tests.fakes import free_port
from tests.helpers import stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 3
QUICK = 2.0  # seconds: what "still answers quickly" means here
PATIENCE = 4.0  # seconds a normal request waits before we call the service stuck
LOGIN = "/api/v1/login/password"


def _half_body(port: int) -> socket.socket:
    """Headers sent, then 16 of the 400 bytes the body announced."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"POST {LOGIN} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 400\r\n\r\n".encode()
        + b'{"identifier": "'
    )
    return sock


def _half_headers(port: int) -> socket.socket:
    """The request line and part of a header, never the blank line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"POST {LOGIN} HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".encode())
    return sock


@contextmanager
def slow_clients(port: int) -> Iterator[list[socket.socket]]:
    """Twice as many stalled clients as there are workers, of both kinds."""
    with ExitStack() as stack:
        socks = []
        for opener in (_half_body, _half_headers) * WORKERS:
            sock = opener(port)
            stack.callback(sock.close)
            socks.append(sock)
        time.sleep(1.0)  # every worker has taken its connection by now
        yield socks


def _readyz_took(base: str) -> float:
    """Seconds GET /readyz took (it reads the database and the rate-limit store)."""
    started = time.monotonic()
    response = requests.get(f"{base}/readyz", timeout=PATIENCE, headers={"Connection": "close"})
    assert response.status_code == 200, response.text
    return time.monotonic() - started


@contextmanager
def _running(command: list[str], log: Path, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        stop_process(process)


@pytest.fixture
def gunicorn(app, settings: Settings, tmp_path: Path) -> Iterator[str]:
    """gunicorn as production runs it (config/gunicorn.conf.py, sync workers)."""
    port = free_port()
    env = {
        **os.environ,
        "PRIVID_ENV": "test",
        "PRIVID_DATABASE_URL": settings.database_url,
        "PRIVID_RATELIMIT_STORAGE_URI": settings.ratelimit_storage_uri,
        "PRIVID_ARGON2_MEMORY_KIB": str(settings.argon2_memory_kib),
        "PRIVID_ARGON2_TIME_COST": str(settings.argon2_time_cost),
    }
    command = [
        sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.conf.py"),
        "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    log = tmp_path / "gunicorn.log"
    with _running(command, log, cwd=ROOT, env=env) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, process, log, "gunicorn")
        yield base


def _nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing; .ci/run installs it (apt-get install nginx-light)")
        pytest.skip("nginx is not installed: apt-get install -y nginx-light")
    return found


@pytest.fixture
def proxy(gunicorn: str, tmp_path: Path) -> Iterator[str]:
    """nginx on loopback with the shipped proxy configuration in front of gunicorn."""
    nginx = _nginx()
    port, upstream = free_port(), gunicorn.removeprefix("http://")
    temp = tmp_path / "nginx"
    temp.mkdir()
    # As root, nginx's workers would otherwise drop to a user that cannot
    # write the temporary directories under pytest's tmp_path.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
{user}
worker_processes 1;
daemon off;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream privid {{ server {upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        include {ROOT / "config" / "nginx-privid.conf"};
    }}
}}
"""
    )
    log = tmp_path / "nginx.log"
    with _running([nginx, "-c", str(conf), "-p", str(temp)], log) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, process, log, "nginx")
        yield base


def test_behind_the_buffering_proxy_slow_clients_do_not_hold_the_workers(proxy: str):
    assert _readyz_took(proxy) < QUICK
    with slow_clients(int(proxy.rsplit(":", 1)[1])):
        took = [_readyz_took(proxy) for _ in range(WORKERS + 1)]
        assert max(took) < QUICK, took
        # A whole request still goes through while they wait.
        signed = requests.post(
            proxy + LOGIN, json={"identifier": "x@example.com", "password": "y"}, timeout=PATIENCE
        )
        assert signed.status_code in (401, 422), signed.text
    assert _readyz_took(proxy) < QUICK


def test_without_the_proxy_slow_clients_hold_every_sync_worker(gunicorn: str):
    """The control: what the proxy is for. Straight to gunicorn, the same
    clients take every worker and a normal request gets no answer."""
    assert _readyz_took(gunicorn) < QUICK
    with slow_clients(int(gunicorn.rsplit(":", 1)[1])), pytest.raises(requests.ReadTimeout):
        _readyz_took(gunicorn)
    # Once they hang up, the workers are free again.
    deadline = time.monotonic() + 20
    while True:
        try:
            assert _readyz_took(gunicorn) < PATIENCE
            break
        except requests.RequestException:
            assert time.monotonic() < deadline, "gunicorn did not recover"
