"""Operating the service: JSON log lines with a request id on each and no
personal data, and Prometheus metrics at /metrics that count what happened,
in-process and through gunicorn with two workers and a `privid worker`."""

from __future__ import annotations

import base64
import io
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from sqlalchemy import update

from app import create_app
from app.cli import unit_of_work
from app.http.access import public
from app.models import DataSubjectRequest, RequestKind
from app.telemetry import request_id
from app.telemetry.logs import make_handler
from app.telemetry.redaction import redact
from tests.fakes import free_port
from tests.helpers import privid_command, privid_env, stop_process, wait_until_ready
from tests.oidc_helpers import SERVICE, add_client
from tests.telemetry_helpers import (
    METRICS_TOKEN,
    assert_ids_answered,
    assert_nothing_personal,
    full_flow,
    label_values,
    parse_lines,
    samples,
    value,
)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10
CLIENT_ADDRESS = "198.51.100.23"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"metrics_token": METRICS_TOKEN, "limit_password_check_per_ip": "2/minute"}


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger also writes through the service's JSON handler, into a buffer."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def in_process_send(client: Any):
    def send(method: str, path: str, *, json=None, data=None, headers=None, auth=None):
        headers = dict(headers or {})
        if auth:
            raw = f"{auth[0]}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        answer = client.open(path, method=method, json=json, data=data, headers=headers)
        return answer.status_code, answer.get_json(silent=True), dict(answer.headers)

    return send


def scrape_in_process(client: Any) -> dict[Any, float]:
    answer = client.get("/metrics", headers=SCRAPE)
    assert answer.status_code == 200, answer.data[:300]
    return samples(answer.get_data(as_text=True))


# -- redaction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "to grace.hopper+x@example.co.uk now",
        "sms to +8613912345678",
        "sms to +86 139 1234 5678",
        "called 13912345678 twice",
        "call +44 20 7946 0958",
        "Authorization: Bearer abc.def-123",
        "dpop KtA9_zz-1",
        "id_token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "session Xy7_kQ2mN9pL4vR8sT1uW3zA5bC6dE0f",
        "digest " + "ab12" * 16,
        "from 203.0.113.9 and 2001:db8::8a2e:370:7334 and fe80::1%eth0",
        # Resident identity card numbers (17 digits and a check digit or X).
        "id card 11010519491231002X on file",
        "id card 110105194912310021",
        # Full-width forms and invisible characters must not hide a value.
        "called １３９１２３４５６７８ twice",
        "mail grace＠example.com",
        "called 139\u200b1234\u200b5678 twice",
        # Any whitespace after the scheme, not just a space.
        "Authorization:Basic\tdXNlcjpwYXNz",
    ],
)
def test_redaction_masks_personal_data_and_tokens(text):
    masked = redact(text)
    assert re.search(r"<(email|phone|token|jwt|ip|id-number)>", masked), masked
    values = r"\S+[@＠]\S+|\+?\d[\d ]{8,}\d|\d+\.\d+\.\d+\.\d+|[0-9a-f:]{6,}"
    for secret in re.findall(values, text):
        assert secret.strip() not in masked, (secret, masked)
    assert "1234" not in masked and "１２３４" not in masked and "dXNlcjpwYXNz" not in masked


@pytest.mark.parametrize(
    "text",
    [
        "POST /api/v1/registration/<id:flow_id>/verify 201",
        "request 3f2b8c1e-9d4a-4e6b-8f7c-2a1b0c9d8e7f at 19:27:02.123",
        "request_id 1025b3b0e50aa422b164239279814acf took 13.39 ms, 151 bytes, pid 19729",
        "outbox: sent 2, retrying 0, abandoned 0, skipped 0",
        "unhandled RuntimeError at login.py:120 with_password",
        "credential_change_max_auth_age_seconds",
    ],
)
def test_redaction_leaves_operational_text_alone(text):
    assert redact(text) == text


# -- logs, in-process --------------------------------------------------------------


def test_a_full_flow_logs_json_with_request_ids_and_nothing_personal(
    app, client, mailbox, sms, json_log
):
    failing_log = logging.getLogger("app.test_failing_view")

    @public()
    def failing_view() -> str:
        # Personal data written by mistake, and in an exception's text: the
        # redaction backstop and the error handler keep both out.
        failing_log.warning("about to fail for %s at +8613900000001", "leak@example.com")
        raise RuntimeError("no grace.hopper@example.com, Bearer abc123, 198.51.100.23")

    app.add_url_rule("/failing", "failing_view", failing_view)
    client.environ_base["REMOTE_ADDR"] = CLIENT_ADDRESS
    rp = add_client(app, SERVICE, scopes=())
    send = in_process_send(client)
    record = full_flow(send, mailbox.last_code, sms.last_code, (rp.client_id, rp.secret))
    answer = client.get("/failing")
    assert answer.status_code == 500
    failing_id = answer.headers["X-Request-Id"]

    text = json_log.getvalue()
    # The test's own SMTP stand-in (aiosmtpd, "mail.log") logs here too; it is not the service.
    lines = [line for line in parse_lines(text) if not line["logger"].startswith("mail.")]
    assert lines, "nothing was logged"
    # Every line was written during a request (or an outbox pass), and says which.
    assert all(line["request_id"] for line in lines), text
    of_failure = [line for line in lines if line["request_id"] == failing_id]
    messages = [line["message"] for line in of_failure]
    assert messages[0] == "about to fail for <email> at <phone>", messages
    assert any(m.startswith("unhandled RuntimeError at ") for m in messages), messages
    assert "leak@example.com" not in text and "+8613900000001" not in text
    assert "grace.hopper@example.com" not in text and "abc123" not in text
    assert_nothing_personal(text, record, CLIENT_ADDRESS)
    assert_ids_answered(record)


# -- metrics, in-process ------------------------------------------------------------


def test_metrics_count_the_flow_with_bounded_labels(app, client, mailbox, sms):
    rp = add_client(app, SERVICE, scopes=())
    before = scrape_in_process(client)
    record = full_flow(
        in_process_send(client), mailbox.last_code, sms.last_code, (rp.client_id, rp.secret)
    )
    scrape = client.get("/metrics", headers=SCRAPE)
    assert scrape.headers["Content-Type"].startswith("text/plain; version=")
    text = scrape.get_data(as_text=True)
    after = samples(text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("privid_sign_ins_total", method="pwd", outcome="success") == 1
    assert moved("privid_sign_ins_total", method="pwd", outcome="failure") == 1
    assert moved("privid_codes_sent_total", channel="email", purpose="register_email") == 1
    assert moved("privid_codes_sent_total", channel="sms", purpose="register_phone") == 1
    assert moved("privid_oauth_tokens_issued_total", grant_type="client_credentials") == 1
    assert moved("privid_rate_limit_refusals_total", kind="requests") == 1
    latency = "privid_http_request_duration_seconds_count"
    login = {"route": "/api/v1/login/password", "method": "POST"}
    assert moved(latency, **login, status="2xx") == 1
    assert moved(latency, **login, status="4xx") == 2  # the wrong password, the bad body
    assert moved(latency, route="/api/v1/password/check", method="POST", status="4xx") == 1
    assert moved(latency, route="<no route>", method="GET", status="4xx") == 1
    verify = {"route": "/api/v1/registration/<id:flow_id>/verify", "method": "POST"}
    assert moved(latency, **verify, status="2xx") == 2

    # Labels name rules, never paths: no id, address or name of the flow.
    routes = {rule.rule for rule in app.url_map.iter_rules()} | {"<no route>"}
    # (The registry is the process's: other tests' routes are in it too.)
    changed = {key: v for key, v in after.items() if before.get(key) != v}
    assert label_values(changed, "route") <= routes
    assert_nothing_personal(text, record, CLIENT_ADDRESS)
    assert "/api/v1/nothing" not in text


def test_database_gauges_are_read_at_scrape_time(app, client, runtime):
    from tests.helpers import start_registration

    scrape = scrape_in_process(client)
    assert value(scrape, "privid_metrics_database_up") == 1
    assert value(scrape, "privid_outbox_pending_messages") == 0
    assert value(scrape, "privid_data_subject_requests_overdue") == 0

    from tests.helpers import new_person

    assert start_registration(client, new_person()).status_code == 202
    with app.app_context(), unit_of_work() as svc:
        user_id = "00000000-0000-0000-0000-0000000000aa"
        late = svc.rights.receive(user_id, RequestKind.DELETION, {"categories": ["other"]})
        svc.rights.receive(user_id, RequestKind.RECTIFICATION, {"categories": ["other"]})
        svc.db.execute(
            update(DataSubjectRequest)
            .where(DataSubjectRequest.id == late.id)
            .values(due_at=runtime.clock.now() - timedelta(days=1))
        )
    time.sleep(1.1)
    scrape = scrape_in_process(client)
    assert value(scrape, "privid_outbox_pending_messages") == 2  # the two codes
    assert value(scrape, "privid_outbox_oldest_pending_age_seconds") >= 1
    assert value(scrape, "privid_data_subject_requests_overdue") == 1


def test_metrics_need_the_token_and_are_off_without_one(app, client, runtime):
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 48})
    assert wrong.status_code == 401 and wrong.json["type"].endswith("/metrics-token-required")
    assert (
        client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}).status_code
        == 401
    )

    off = runtime.settings.model_copy(update={"metrics_token": SecretStr("")})
    other = create_app(off).test_client()
    try:
        assert other.get("/metrics", headers=SCRAPE).status_code == 404
    finally:
        other.application.extensions["privid.engine"].dispose()


# -- through gunicorn: two workers and `privid worker` ------------------------------


@pytest.fixture
def deployed(app, settings, tmp_path, mailbox, sms) -> Iterator[tuple[str, Path, Path]]:
    """gunicorn with two workers and a `privid worker` process, JSON logs to files."""
    mailbox.deliver = sms.deliver = None  # only the worker process delivers
    env = privid_env(
        settings,
        METRICS_TOKEN=METRICS_TOKEN,
        LIMIT_PASSWORD_CHECK_PER_IP="2/minute",
        OUTBOX_POLL_SECONDS="0.1",
        LOG_FORMAT="json",
    )
    port = free_port()
    server_log, worker_log = tmp_path / "gunicorn.log", tmp_path / "worker.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.conf.py"),
                "--workers", "2", "--bind", f"127.0.0.1:{port}",
            ],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [privid_command(), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, server, server_log, "gunicorn")
        yield base, server_log, worker_log
    finally:
        stop_process(server)
        stop_process(worker)


def http_send(base: str):
    def send(method: str, path: str, *, json=None, data=None, headers=None, auth=None):
        # A new connection each time, so the kernel spreads requests over the workers.
        headers = {"Connection": "close", **(headers or {})}
        answer = requests.request(
            method, base + path, json=json, data=data, headers=headers, auth=auth, timeout=TIMEOUT
        )
        try:
            body = answer.json()
        except ValueError:
            body = None
        return answer.status_code, body, dict(answer.headers)

    return send


def test_through_gunicorn_logs_are_json_and_metrics_add_up_over_workers(
    app, deployed, mailbox, sms
):
    base, server_log, worker_log = deployed
    rp = add_client(app, SERVICE, scopes=())
    record = full_flow(http_send(base), mailbox.last_code, sms.last_code, (rp.client_id, rp.secret))
    health = 30

    def healthz(_: int) -> int:
        answer = requests.get(f"{base}/healthz", headers={"Connection": "close"}, timeout=TIMEOUT)
        return answer.status_code

    # Side by side, so one worker is busy while the other takes the next: one
    # at a time, a single worker can win every accept.
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(healthz, range(health))) == {200}
    assert requests.get(f"{base}/metrics", timeout=TIMEOUT).status_code == 401
    scrapes = [
        requests.get(f"{base}/metrics", headers={**SCRAPE, "Connection": "close"}, timeout=TIMEOUT)
        for _ in range(2)
    ]
    time.sleep(0.5)  # the access lines of the last requests

    lines = parse_lines(server_log.read_text())
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    served_by = {line["pid"] for line in access}
    assert len(served_by) == 2, "one worker served everything; nothing was added up"
    # Each answer's id is on its access line, and every line of a request carries it.
    by_id = {line["request_id"]: line for line in access}
    for method, path, status, rid in record.answers:
        assert by_id[rid]["status"] == status and by_id[rid]["method"] == method, (path, rid)
    refused = next(rid for _, path, status, rid in record.answers if status == 429)
    refusal_lines = [line for line in lines if line["request_id"] == refused]
    assert {line["logger"] for line in refusal_lines} == {"flask-limiter", "gunicorn.access"}
    # Lines outside any request are the server's own (start, workers, stop).
    assert {line["logger"] for line in lines if not line["request_id"]} <= {"gunicorn.error"}

    worker_lines = parse_lines(worker_log.read_text())
    sent = [line for line in worker_lines if line["message"].startswith("outbox: sent")]
    assert sent and all(line["request_id"] for line in sent), worker_lines
    assert_nothing_personal(server_log.read_text() + worker_log.read_text(), record, "127.0.0.1")
    assert_ids_answered(record)

    # Whichever worker answered, the counts are both workers' together.
    for scrape in scrapes:
        assert scrape.status_code == 200, scrape.text
        counts = samples(scrape.text)
        latency = "privid_http_request_duration_seconds_count"
        assert value(counts, latency, route="/healthz", method="GET", status="2xx") == health
        assert value(counts, "privid_sign_ins_total", method="pwd", outcome="success") == 1
        assert value(counts, "privid_sign_ins_total", method="pwd", outcome="failure") == 1
        assert (
            value(counts, "privid_oauth_tokens_issued_total", grant_type="client_credentials") == 1
        )
        assert value(counts, "privid_rate_limit_refusals_total", kind="requests") == 1
        assert (
            value(counts, "privid_codes_sent_total", channel="sms", purpose="register_phone") == 1
        )
        assert value(counts, "privid_outbox_pending_messages") == 0


def test_the_text_format_is_readable_and_redacted_too():
    stream = io.StringIO()
    handler = make_handler("text", stream)
    log = logging.getLogger("app.test_text_format")
    log.addHandler(handler)
    log.propagate = False
    try:
        with request_id.bound("0123456789abcdef"):
            log.warning("sent to %s", "grace@example.com", extra={"channel": "email"})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    line = stream.getvalue().strip()
    assert line.endswith(
        "WARNING app.test_text_format [0123456789abcdef] sent to <email> channel=email"
    ), line


def test_made_up_methods_do_not_grow_the_process_memory(client):
    """A caller chooses the request method: each made-up one must fall into the
    "other" label and reuse its child, not add an entry per name (memory that
    grows with every distinct method an attacker sends)."""
    from app import metrics

    client.open("/api/v1/nothing", method="MADEUP0")
    before = len(metrics._request_children)
    for n in range(1, 60):
        assert client.open("/api/v1/nothing", method=f"MADEUP{n}").status_code == 404
    assert len(metrics._request_children) == before


def test_redaction_of_a_very_long_value_stays_cheap():
    # Every log line is redacted in the request's thread: a long run of word
    # characters before an "@" (an exception quoting a caller's value) must
    # not cost time growing with the square of its length.
    long_value = "a" * 40_000 + "@ and grace.hopper@example.com"
    started = time.perf_counter()
    masked = redact(long_value)
    assert time.perf_counter() - started < 0.5
    assert "grace.hopper" not in masked and "<email>" in masked


def test_operator_commands_log_json_and_redacted_lines_too(settings):
    """`flask …` commands (chain sealing from cron, retention) build the app
    without `privid`'s entry point: their lines must still be redacted JSON."""
    script = (
        "import logging; from app import create_app; create_app(); "
        "logging.getLogger('app.sealer').warning('sealing for grace.hopper@example.com failed')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=privid_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), done.stderr
    assert "grace.hopper" not in done.stderr and "<email>" in done.stderr
