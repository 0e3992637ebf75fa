"""What tests/test_fleet.py runs the fleet with: a database of its own on the
machine's PostgreSQL, its own PgBouncer in transaction mode in front of it,
gunicorn instances, and a client that spreads requests over the instances the
way a load balancer without sticky sessions would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from tests.helpers import privid_command, stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
PGBOUNCER = "/usr/sbin/pgbouncer"
REQUEST_TIMEOUT = 10
# The suite's PostgreSQL server when the PostgreSQL pass names one, else the
# machine's: this test needs PostgreSQL in the SQLite pass too.
SERVER_URL = os.environ.get(
    "PRIVID_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PRIVID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def fleet_database_url() -> URL:
    """Another database on the suite's server: ``<suite database>_fleet``."""
    suite = make_url(SERVER_URL)
    return suite.set(database=f"{suite.database or 'test'}_fleet")


@contextmanager
def fresh_database(url: URL) -> Iterator[None]:
    """Creates the database (dropping what an interrupted run left), and drops
    it afterwards; nothing may be connected to it by then."""
    admin = create_engine(
        url.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 10},
    )
    name = url.database
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def pgbouncer(database: URL, folder: Path) -> Iterator[URL]:
    """Debian's pgbouncer in transaction mode on a free port, in front of
    ``database``; yields the URL clients use instead."""
    from tests.fakes import free_port

    port = free_port()
    folder.mkdir(exist_ok=True)
    users = folder / "users.txt"
    users.write_text(f'"{database.username}" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{database.database} = host={database.host} port={database.port or 5432} "
        f"dbname={database.database} user={database.username}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        "pool_mode = transaction\n"
        # Few server connections, handed out in turn: consecutive transactions
        # of one client land on different ones, as they do under real load.
        "default_pool_size = 4\nserver_round_robin = 1\n"
        "max_client_conn = 200\n"
    )
    # pgbouncer refuses to run as root; started as root, it reads its files and
    # then drops to nobody.
    command = [PGBOUNCER, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(config)]
    log_path = folder / "pgbouncer.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log_path)
        yield database.set(host="127.0.0.1", port=port)
    finally:
        stop_process(process)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, f"pgbouncer exited:\n{log.read_text(errors='replace')}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"pgbouncer did not listen:\n{log.read_text(errors='replace')}")


@dataclass(frozen=True)
class Processes:
    bases: list[str]  # each instance's http://127.0.0.1:<port>
    logs: list[Path]  # the instances' logs, then the worker's


@contextmanager
def fleet_processes(env: dict[str, str], folder: Path, instances: int = 2) -> Iterator[Processes]:
    """``instances`` gunicorn instances (config/gunicorn.conf.py, one sync
    worker each: the machine is small), each on its own port, and one `privid
    worker`, the only sender of the outbox. All are stopped together."""
    from tests.fakes import free_port

    started: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    logs: list[Path] = []

    def start(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(process)
        logs.append(log_path)
        return process

    try:
        for index in range(instances):
            port = free_port()
            start(
                [
                    sys.executable, "-m", "gunicorn",
                    "-c", str(ROOT / "config" / "gunicorn.conf.py"),
                    "--workers", "1", "--bind", f"127.0.0.1:{port}",
                ],
                folder / f"instance-{index}.log",
            )  # fmt: skip
            bases.append(f"http://127.0.0.1:{port}")
        start([privid_command(), "worker"], folder / "worker.log")
        for base, process, log_path in zip(bases, started, logs, strict=False):
            wait_until_ready(base, process, log_path, f"instance at {base}")
        yield Processes(bases, logs)
    finally:
        for process in started:  # all told at once, then each awaited
            process.terminate()
        for process in started:
            stop_process(process)


@dataclass
class FleetResponse:
    """A response in the shape tests/helpers.py and tests/oidc_helpers.py read
    (Flask's test response): ``json`` is a property, ``data`` the bytes."""

    status_code: int
    headers: Any
    data: bytes
    served_by: str

    @property
    def json(self) -> Any:
        try:
            return requests.models.complexjson.loads(self.data)
        except ValueError:
            return None

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self.data.decode() if as_text else self.data


@dataclass
class FleetClient:
    """One browser or app talking to the fleet: each request goes to the next
    instance in turn. Its cookies are kept here, not by requests, which would
    hold the service's Secure cookies back from http://127.0.0.1 (the
    instances believe they are https://localhost, as behind the TLS proxy)."""

    bases: list[str]
    cookies: dict[str, str] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)
    _turn: int = 0

    def get(self, path: str, **kwargs: Any) -> FleetResponse:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> FleetResponse:
        return self.open("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> FleetResponse:
        return self.open("DELETE", path, **kwargs)

    def open(
        self,
        method: str,
        path: str,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> FleetResponse:
        base = self.bases[self._turn % len(self.bases)]
        self._turn += 1
        answer = requests.request(
            method,
            base + path,
            json=json,
            data=data,
            headers=headers,
            cookies=dict(self.cookies),
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )
        self._keep_cookies(answer)
        self.served.append(base)
        return FleetResponse(answer.status_code, answer.headers, answer.content, base)

    def _keep_cookies(self, answer: requests.Response) -> None:
        for header in answer.raw.headers.getlist("Set-Cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if _expired(morsel) or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value


def _expired(morsel: Any) -> bool:
    if morsel["max-age"] not in ("", None) and int(morsel["max-age"]) <= 0:
        return True
    if morsel["expires"]:
        return bool(parsedate_to_datetime(morsel["expires"]) <= datetime.now(UTC))
    return False
