"""Registration and sign-in through gunicorn with three workers and a `privid
worker` process sending the codes: any request can land on any worker, so no
flow may depend on one process's memory."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fakes import free_port
from tests.helpers import (
    baseline_consent,
    new_person,
    privid_command,
    privid_env,
    stop_process,
    wait_until_ready,
)

ROOT = Path(__file__).resolve().parent.parent
REQUEST_TIMEOUT = 10


@pytest.fixture
def gunicorn(app, settings, tmp_path):
    # `app` resets the shared rate-limit storage, so earlier runs do not count here.
    port = free_port()
    env = privid_env(settings)
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "-c", str(ROOT / "config" / "gunicorn.conf.py"),
                "--workers", "3", "--bind", f"127.0.0.1:{port}",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, log_path, "gunicorn")
        yield base, log_path
    finally:
        stop_process(process)


@pytest.fixture
def worker(app, settings, tmp_path, mailbox, sms):
    """`privid worker` in its own process sends what the web workers queue (the
    test's own worker passes are off, so only this process delivers)."""
    mailbox.deliver = sms.deliver = None
    with (tmp_path / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [privid_command(), "worker"],
            env=privid_env(settings, OUTBOX_POLL_SECONDS="0.1"),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop_process(process)


def test_flows_work_across_three_workers(gunicorn, worker, mailbox, sms):
    base, log_path = gunicorn
    person = new_person("Ada Lovelace")

    def post(path: str, body: dict, **kwargs) -> requests.Response:
        # A new connection for each request, so the kernel spreads them over workers.
        return requests.post(
            base + path,
            json=body,
            timeout=REQUEST_TIMEOUT,
            headers={"Connection": "close"},
            **kwargs,
        )

    started = post(
        "/api/v1/registration",
        {"email": person.email, "phone": person.phone, "full_name": person.full_name,
         "password": person.password, "consent": baseline_consent()},
    )  # fmt: skip
    assert started.status_code == 202, started.text
    flow = started.json()["flow_id"]
    assert (
        post(
            f"/api/v1/registration/{flow}/verify",
            {"channel": "email", "code": mailbox.last_code(person.email)},
        ).status_code
        == 200
    )
    done = post(
        f"/api/v1/registration/{flow}/verify",
        {"channel": "phone", "code": sms.last_code(person.phone), "token_delivery": "bearer"},
    )
    assert done.status_code == 201, done.text

    def sign_in(_: int) -> str:
        signed_in = post(
            "/api/v1/login/password",
            {"identifier": person.email, "password": person.password, "token_delivery": "bearer"},
        )
        assert signed_in.status_code == 200, signed_in.text
        return str(signed_in.json()["token"])

    def profile(token: str) -> str:
        me = requests.get(
            f"{base}/api/v1/me", timeout=REQUEST_TIMEOUT,
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        )  # fmt: skip
        assert me.status_code == 200, me.text
        return str(me.json()["full_name"])

    # Concurrent sign-ins keep workers busy, so others must take the next ones;
    # each session is then read back, wherever the request lands.
    with ThreadPoolExecutor(max_workers=6) as pool:
        tokens = list(pool.map(sign_in, range(6)))
        assert list(pool.map(profile, tokens)) == ["Ada Lovelace"] * 6

    time.sleep(0.5)  # let the access log flush
    pids = set(re.findall(r"\"pid\": (\d+)", log_path.read_text()))
    assert len(pids) >= 2, "all requests landed on one worker; the test proved nothing"
