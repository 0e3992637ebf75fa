"""Full client addresses are never kept: not in rate-limit keys (Redis holds
them for up to an hour), not on any line the processes log. The database keeps
only the /24 or /48 prefix, and only with the security purpose (tested elsewhere)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.extensions import limiter
from tests.fakes import free_port
from tests.helpers import (
    assert_problem,
    login,
    new_person,
    privid_env,
    register,
    start_registration,
    stop_process,
    wait_until_ready,
)

ROOT = Path(__file__).resolve().parent.parent
IPV4 = "203.0.113.77"
IPV6 = "2001:db8:77:1:aaaa:bbbb:cccc:dddd"
# Loopback has all of 127/8: the servers listen on 127.0.0.1 and the client
# speaks from this address, so finding it in a log means a client address leaked.
CLIENT_LOOPBACK = "127.0.0.73"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"limit_login_per_ip": "4/minute", "code_resend_cooldown_seconds": 0}


def limiter_keys(app, uri: str) -> list[str]:
    """Every key the rate limiter holds right now, from Redis or from memory."""
    if uri.startswith("redis"):
        import redis

        connection = redis.Redis.from_url(uri)
        try:
            return [k.decode("utf-8", "replace") for k in connection.scan_iter("*")]
        finally:
            connection.close()
    with app.app_context():
        storage: Any = limiter.storage
        return [*storage.storage.keys(), *storage.events.keys()]


def test_rate_limit_keys_hold_no_client_address(app, client, mailbox, sms, settings):
    person, _ = register(client, mailbox, sms)
    for address in (IPV4, IPV6):
        client.environ_base["REMOTE_ADDR"] = address
        for _ in range(4):
            assert login(client, new_person().email, "not-the-password-x").status_code == 401
        # Per-address limits still work on the keyed hash.
        assert_problem(login(client, person.email, person.password), 429, "rate-limited")
        assert start_registration(client, new_person()).status_code == 202
        client.post("/api/v1/password-reset", json={"identifier": person.phone})

    keys = limiter_keys(app, settings.ratelimit_storage_uri)
    assert len(keys) >= 6, keys  # the limiter did count, so the search below means something
    for key in keys:
        for clear in (IPV4, "203.0.113.", IPV6, "2001:db8:77", "2001:0db8"):
            assert clear not in key, f"rate-limit key holds a client address: {key}"

    # A neighbour in the same /24 has its own budget: the key is per address.
    client.environ_base["REMOTE_ADDR"] = "203.0.113.78"
    assert login(client, person.email, person.password).status_code == 200


# -- the real processes' logs ------------------------------------------------------


def _process_env(settings) -> dict[str, str]:
    env = privid_env(settings, LIMIT_LOGIN_PER_IP="2/minute")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _request(port: int, method: str, path: str, body: bytes | None = None) -> int:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(CLIENT_LOOPBACK, 0)
    )
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


# A registration flow's id: what a path must never leave in a log.
FLOW_ID = "3f2b8c1e-9d4a-4e6b-8f7c-2a1b0c9d8e7f"


def _malformed_request(port: int) -> None:
    with __import__("socket").create_connection(
        ("127.0.0.1", port), timeout=10, source_address=(CLIENT_LOOPBACK, 0)
    ) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        raw.recv(1024)


def _exercise_and_read_log(command: list[str], env: dict[str, str], log_path: Path) -> str:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process, log_path)
        assert _request(port, "GET", "/readyz?who=me") == 200
        assert _request(port, "GET", "/no-such-page") == 404
        assert _request(port, "GET", f"/signup/{FLOW_ID}") == 404
        login = b'{"identifier": "nobody@example.com", "password": "x", "token_delivery": "bearer"}'
        statuses = [_request(port, "POST", "/api/v1/login/password", login) for _ in range(3)]
        assert statuses[-1] == 429, statuses
        _malformed_request(port)
        time.sleep(0.5)
    finally:
        stop_process(process)
    return log_path.read_text(errors="replace")


def test_privid_serve_logs_requests_without_the_client_address(app, settings, tmp_path):
    output = _exercise_and_read_log(
        [sys.executable, "-c", "from app.cli import main; main()", "serve", "--port", "{port}"],
        _process_env(settings),
        tmp_path / "serve.log",
    )
    assert "GET /readyz" in output, output  # the access log is there...
    for line in output.splitlines():  # as JSON lines (PRIVID_LOG_FORMAT's default)
        assert isinstance(json.loads(line), dict), line
    assert CLIENT_LOOPBACK not in output, output  # ...without whom it served
    assert "who=me" not in output, output  # nor the query string
    assert FLOW_ID not in output and "GET /signup/<id:flow_id>" in output, output  # nor ids
    assert "GET <no route>" in output and "no-such-page" not in output, output


def test_gunicorn_logs_requests_without_the_client_address(app, settings, tmp_path):
    output = _exercise_and_read_log(
        [
            sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.conf.py"),
            "--workers", "1", "--bind", "127.0.0.1:{port}",
        ],
        _process_env(settings),
        tmp_path / "gunicorn.log",
    )  # fmt: skip
    assert "GET /readyz" in output, output
    assert CLIENT_LOOPBACK not in output, output
    assert "who=me" not in output, output
    assert FLOW_ID not in output and "GET /signup/<id:flow_id>" in output, output
    assert "GET <no route>" in output and "no-such-page" not in output, output
    # A request the rate limit refused still names its route.
    assert "POST /api/v1/login/password 429" in output, output
