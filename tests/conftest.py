"""Test set-up: a migrated database (SQLite by default, PostgreSQL when
PRIVID_TEST_DATABASE_URL is set), rate limits in memory or Redis
(PRIVID_TEST_RATELIMIT_STORAGE_URI), real SMTP and SMS peers on loopback."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from app import build_runtime, create_app
from app.clock import FrozenClock, SystemClock
from app.extensions import limiter
from app.migrate import upgrade
from app.models import Base
from app.services.container import Runtime
from app.settings import Environment, Settings
from app.worker import OutboxWorker
from tests.fakes import Mailbox, SmsGateway, SmsOutbox, SmtpServer, free_port
from tests.helpers import privid_env, stop_process, wait_until_ready

# Property-based tests: "ci" (the default) is bounded and repeatable (a fixed
# seed, no example database); PRIVID_HYPOTHESIS_PROFILE=long searches further
# with fresh randomness each run. A test's own @settings still wins.
hypothesis_settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile(
    "long",
    max_examples=5000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
hypothesis_settings.load_profile(os.environ.get("PRIVID_HYPOTHESIS_PROFILE", "ci"))

PG_URL = os.environ.get("PRIVID_TEST_DATABASE_URL", "")
RATELIMIT_URI = os.environ.get("PRIVID_TEST_RATELIMIT_STORAGE_URI", "memory://")
# Cheap argon2 for the suite; bench/ measures the production parameters.
FAST_ARGON2 = {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "argon2_parallelism": 1}


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database at the latest migration: a SQLite file to copy, or PostgreSQL reset once."""
    if PG_URL:
        engine = create_engine(PG_URL)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        upgrade(PG_URL)
        return PG_URL
    path = tmp_path_factory.mktemp("template") / "privid.db"
    upgrade(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> Iterator[str]:
    if PG_URL:
        yield PG_URL
        _truncate_postgres(PG_URL)
        return
    target = tmp_path / "privid.db"
    shutil.copy(migrated_template, target)
    yield f"sqlite:///{target}"


def _truncate_postgres(url: str) -> None:
    """Empty every table between tests. The ledgers refuse TRUNCATE by trigger;
    the harness connects as a superuser and sets session_replication_role to
    'replica' for this one transaction, which skips ordinary triggers. The
    service never sets it (and its role should not be allowed to)."""
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sms_gateway() -> Iterator[SmsGateway]:
    gateway = SmsGateway().start()
    yield gateway
    gateway.stop()


@pytest.fixture
def mailbox(smtp_server: SmtpServer) -> Iterator[Mailbox]:
    smtp_server.mailbox.clear()
    yield smtp_server.mailbox
    smtp_server.mailbox.clear()


@pytest.fixture
def sms(sms_gateway: SmsGateway) -> Iterator[SmsOutbox]:
    sms_gateway.outbox.clear()
    yield sms_gateway.outbox
    sms_gateway.outbox.clear()


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Tests override settings by redefining this fixture or updating it."""
    return {}


@pytest.fixture
def settings(
    database_url: str,
    smtp_server: SmtpServer,
    sms_gateway: SmsGateway,
    settings_overrides: dict[str, object],
    tmp_path: Path,
) -> Settings:
    return suite_settings(database_url, smtp_server, sms_gateway, settings_overrides, tmp_path)


def suite_settings(
    database_url: str,
    smtp_server: SmtpServer,
    sms_gateway: SmsGateway,
    overrides: dict[str, object],
    folder: Path,
) -> Settings:
    """The suite's settings: its database, peers and cheap argon2, then ``overrides``;
    ``folder`` holds what the test may write (ledger checkpoints)."""
    values: dict[str, object] = {
        "env": Environment.TEST,
        "database_url": database_url,
        "ratelimit_storage_uri": RATELIMIT_URI,
        "email_backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_server.port,
        "sms_backend": "http",
        "sms_http_url": sms_gateway.url,
        "sms_http_token": sms_gateway.outbox.token,
        "public_url": "https://localhost",
        # Signed chain checkpoints: one folder per test, as the database is.
        "chain_checkpoint_dir": str(folder / "checkpoints"),
        **FAST_ARGON2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> SystemClock | FrozenClock:
    return SystemClock()


@pytest.fixture
def runtime(settings: Settings, clock: SystemClock) -> Runtime:
    return build_runtime(settings, clock=clock)


POLICY_VERSION = "2026-06"
POLICY_EFFECTIVE = datetime(2026, 6, 11, tzinfo=UTC)


class _Drain:
    """``runtime.dispatcher.drain()``, for tests written when messages were sent
    from threads: now one pass of the outbox worker."""

    def __init__(self, worker: OutboxWorker) -> None:
        self._worker = worker

    def drain(self, timeout: float = 10.0) -> None:
        self._worker.run_once()


@pytest.fixture
def app(runtime: Runtime, smtp_server: SmtpServer, sms_gateway: SmsGateway) -> Iterator[Flask]:
    with _test_app(runtime, smtp_server, sms_gateway) as app:
        yield app


@contextmanager
def _test_app(
    runtime: Runtime, smtp_server: SmtpServer, sms_gateway: SmsGateway
) -> Iterator[Flask]:
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    with app.app_context():
        limiter.reset()
        publish_test_policy(app)
    # Messages go out through the same worker code as in production: one pass
    # each time a test looks at the mailbox or the SMS gateway (tests/fakes.py).
    worker = OutboxWorker.for_app(app)
    smtp_server.mailbox.deliver = sms_gateway.outbox.deliver = worker.run_once
    runtime.dispatcher = _Drain(worker)  # type: ignore[attr-defined]
    try:
        yield app
    finally:
        smtp_server.mailbox.deliver = sms_gateway.outbox.deliver = None
        app.extensions["privid.engine"].dispose()


def publish_test_policy(app: Flask) -> None:
    from app.cli import unit_of_work
    from app.services.policies import NewPolicy

    with unit_of_work() as svc:
        svc.policies.publish(
            NewPolicy(
                version=POLICY_VERSION,
                effective_at=POLICY_EFFECTIVE,
                text="The test platform's privacy policy.",
                material=False,
                changes="First version.",
                affected_purposes=[],
            ),
            published_by="cli",
        )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    # The session cookie is Secure and __Host-: talk to the app over https.
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


@pytest.fixture
def frozen_clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))


# Browser tests (marker "browser"): the app served on a real port, Debian's
# Chromium driven by Playwright. They never skip: CI installs chromium.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The browser says localhost (WebAuthn needs a host name, and localhost is
    # a secure context, so Secure and __Host- cookies work over http); it
    # never asks a resolver.
    "--host-resolver-rules=MAP localhost 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class LiveServer:
    app: Flask
    url: str  # http://localhost:<port>, no trailing slash


@pytest.fixture
def live_server(
    settings: Settings,
    clock: SystemClock,
    smtp_server: SmtpServer,
    sms_gateway: SmsGateway,
) -> Iterator[LiveServer]:
    """The test app served by werkzeug's threaded server on 127.0.0.1; its
    public URL and WebAuthn origin are the origin the browser uses."""
    port = free_port()
    origin = f"http://localhost:{port}"
    live_settings = settings.model_copy(
        update={"public_url": origin, "webauthn_rp_id": "localhost", "webauthn_origins": origin}
    )
    runtime = build_runtime(live_settings, clock=clock)
    with _test_app(runtime, smtp_server, sms_gateway) as app:
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
        thread.start()
        try:
            yield LiveServer(app=app, url=origin)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


GUNICORN_WORKERS = 2


@pytest.fixture
def gunicorn_live_server(
    settings: Settings,
    clock: SystemClock,
    smtp_server: SmtpServer,
    sms_gateway: SmsGateway,
    tmp_path: Path,
) -> Iterator[LiveServer]:
    """The service as deployed: gunicorn (config/gunicorn.conf.py, two sync
    workers) on the suite's database and rate-limit storage, serving
    http://localhost:<port>. ``app`` is an in-process app on the same database
    and settings, for registering clients and reading rows; it also delivers
    the outbox the workers fill (mailbox and SMS stand-in). Use it as
    ``live_server`` in a module (``page`` then talks to gunicorn)."""
    port = free_port()
    origin = f"http://localhost:{port}"
    live_settings = settings.model_copy(
        update={"public_url": origin, "webauthn_rp_id": "localhost", "webauthn_origins": origin}
    )
    env = privid_env(
        live_settings, PUBLIC_URL=origin, WEBAUTHN_RP_ID="localhost", WEBAUTHN_ORIGINS=origin
    )
    root = Path(__file__).resolve().parent.parent
    log_path = tmp_path / "gunicorn.log"
    runtime = build_runtime(live_settings, clock=clock)
    with _test_app(runtime, smtp_server, sms_gateway) as app, log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "-c", str(root / "config" / "gunicorn.conf.py"),
                "--workers", str(GUNICORN_WORKERS), "--bind", f"127.0.0.1:{port}",
            ],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", process, log_path, "gunicorn")
            yield LiveServer(app=app, url=origin)
        finally:
            stop_process(process)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            # A fresh profile, nothing shared with anything else on the host.
            downloads_path=str(tmp_path_factory.mktemp("downloads")),
            timeout=30_000,
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_locale() -> str:
    """The browser's language (and so its Accept-Language); parametrize to change."""
    return "en"


@pytest.fixture
def page(
    browser: Browser, live_server: LiveServer, browser_locale: str, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A page in a new browser context (no cookies from other tests); when the
    test fails, its screenshot and HTML are kept in test-artifacts/<test id>/."""
    context = browser.new_context(locale=browser_locale, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
        report = getattr(request.node, "privid_call_report", None)
        if report is not None and report.failed:
            _save_artifacts(page, request.node.nodeid)
    finally:
        context.close()


def _save_artifacts(page: Page, nodeid: str) -> None:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    if len(name) > 120:  # long parameter ids: keep the start, and a hash to stay unique
        name = f"{name[:100]}-{hashlib.sha256(nodeid.encode()).hexdigest()[:12]}"
    folder = ARTIFACTS / name
    folder.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(folder / "screenshot.png"), full_page=True)
        (folder / "page.html").write_text(page.content(), encoding="utf-8")
    except PlaywrightError as error:  # a crashed page still fails the test
        (folder / "error.txt").write_text(str(error), encoding="utf-8")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    # Keeps the test body's outcome where the page fixture can see it at teardown.
    report = yield
    if report.when == "call":
        item.privid_call_report = report  # type: ignore[attr-defined]
    return report
