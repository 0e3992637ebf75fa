"""Shared bench plumbing: a capturing sender, user set-up, gunicorn start-up,
worker memory sampling."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from flask.testing import FlaskClient

from app import build_runtime, create_app
from app.adapters.messages import OutgoingEmail, OutgoingSms
from app.cli import publish_development_policy
from app.migrate import upgrade
from app.settings import Environment, Settings
from app.worker import OutboxWorker

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"\b(\d{6})\b")


class Capture:
    """Keeps the last code sent to each address, in this process."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    def send(self, message: OutgoingEmail | OutgoingSms) -> None:
        text = message.body if isinstance(message, OutgoingEmail) else message.text
        found = CODE.search(text)
        if found:
            self.codes[message.to] = found.group(1)


def bench_settings(database_url: str, ratelimit_uri: str) -> Settings:
    return Settings(
        env=Environment.TEST,
        database_url=database_url,
        ratelimit_storage_uri=ratelimit_uri,
        # A benchmark measures the service, not the limits that protect it.
        limit_login_per_ip="1000000/minute",
        limit_login_per_account="1000000/minute",
        limit_registration_per_ip="1000000/minute",
        limit_code_send_per_destination="1000000/minute",
        limit_code_send_per_ip="1000000/minute",
        limit_reset_per_ip="1000000/minute",
        code_resend_cooldown_seconds=0,
    )


def register_users(
    settings: Settings, count: int, password: str, grant: tuple[str, ...] = ()
) -> list[str]:
    """Registers users through the API in-process; returns their emails."""
    return [email for email, _ in register_people(settings, count, password, grant)]


def register_people(
    settings: Settings, count: int, password: str, grant: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """Registers users through the API in-process; returns their (email, phone)."""
    capture = Capture()
    runtime = build_runtime(settings, email_sender=capture, sms_sender=capture)
    app = create_app(runtime=runtime)
    publish_development_policy(app)
    consent = {
        "policy_version": "dev-1",
        "decisions": [
            {
                "purpose": p.code,
                "decision": "granted" if p.required or p.code in grant else "refused",
            }
            for p in runtime.catalogue.decided_at_sign_in()
        ],
    }
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    people = []
    worker = OutboxWorker.for_app(app)
    stamp = int(time.time() * 1000) % 10**6
    for n in range(count):
        email, phone = f"bench{stamp}-{n}@example.com", f"+86139{stamp % 10**4:04d}{n:04d}"
        started = client.post(
            "/api/v1/registration",
            json={
                "email": email,
                "phone": phone,
                "full_name": "Bench",
                "password": password,
                "consent": consent,
            },
        )
        assert started.status_code == 202, started.json
        flow = started.json["flow_id"]
        worker.run_once()  # the codes reach `capture` through the outbox
        for channel, address in (("email", email), ("phone", phone)):
            done = client.post(
                f"/api/v1/registration/{flow}/verify",
                json={"channel": channel, "code": capture.codes[address]},
            )
            assert done.status_code in (200, 201), done.json
        people.append((email, phone))
    app.extensions["privid.engine"].dispose()
    return people


@contextmanager
def in_process_app(
    password: str, grant: tuple[str, ...] = (), **overrides: object
) -> Iterator[tuple[str, FlaskClient]]:
    """One registered user and an https test client on a fresh SQLite file,
    with cheap argon2 (these benchmarks measure what comes after the password)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = bench_settings(url, "memory://").model_copy(
            update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, **overrides}
        )
        email = register_users(settings, 1, password, grant=grant)[0]
        app = create_app(runtime=build_runtime(settings))
        client = app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"
        try:
            yield email, client
        finally:
            app.extensions["privid.engine"].dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ}
    for name, value in settings.model_dump().items():
        # Unset stays unset: the string "None" is not a valid optional number.
        if value is not None:
            env[f"PRIVID_{name.upper()}"] = str(value)
    return env


@contextmanager
def privid_worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """`privid worker` sending the outbox, as in production."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("privid")), "worker"],
        cwd=ROOT, env=settings_env(settings),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


@dataclass(frozen=True)
class Served:
    base: str
    # The server's main process; its children are the workers.
    pid: int


# The service itself; a benchmark may serve another WSGI app the same way.
PRIVID_APP = "app:create_app()"
# The servers a benchmark can put the app under (`served(server=...)`).
SERVERS = ("gunicorn", "granian")


def server_command(
    server: str, wsgi_app: str, workers: int, port: int, threads: int | None = None
) -> list[str]:
    """The command line serving `wsgi_app` ("module:attr" or "module:factory()")
    with `workers` worker processes on 127.0.0.1:`port`: gunicorn with the
    production config (sync workers), or granian's WSGI interface with
    `threads` blocking threads per worker (None: granian's default, half its
    per-worker backpressure, 256 with 2 workers)."""
    if server == "gunicorn":
        if threads:
            raise ValueError("gunicorn runs sync workers: one request at a time each")
        return [
            sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config/gunicorn.conf.py"),
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
            "--access-logfile", "/dev/null", wsgi_app,
        ]  # fmt: skip
    if server == "granian":
        target, factory = wsgi_app.removesuffix("()"), wsgi_app.endswith("()")
        return [
            sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", str(workers),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning", *(["--factory"] if factory else []),
            *(["--blocking-threads", str(threads)] if threads else []), target,
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}; one of {SERVERS}")


@contextmanager
def served(
    settings: Settings,
    workers: int,
    wsgi_app: str = PRIVID_APP,
    server: str = "gunicorn",
    threads: int | None = None,
) -> Iterator[Served]:
    """`server` (gunicorn by default, see `server_command`) with `workers`
    workers, serving `wsgi_app` (which must answer GET /readyz), ready when
    this yields."""
    port = free_port()
    env = settings_env(settings)
    process = subprocess.Popen(
        server_command(server, wsgi_app, workers, port, threads),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{server} exited with {process.returncode}")
            try:
                if requests.get(f"{base}/readyz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{server} did not start")
        # Every worker up before any load: granian's answer on /readyz may
        # come from the first one while the others still import the app.
        while len(worker_pids(process.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        yield Served(base, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def gunicorn(settings: Settings, workers: int) -> Iterator[str]:
    with served(settings, workers) as server:
        yield server.base


def worker_pids(master: int) -> list[int]:
    """The processes whose parent is `master` (gunicorn's workers)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:  # gone since the glob
            continue
        if re.search(rf"^PPid:\s+{master}$", text, re.MULTILINE):
            pids.append(int(status.parent.name))
    return sorted(pids)


def rss_kib(pid: int) -> int:
    try:
        found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return 0
    return int(found.group(1)) if found else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    try:
        # Fields after the command name, which may hold spaces: utime, stime are 14, 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Where a run's CPU went besides the service's workers, by process name.
_PART_OF_COMMAND = {"postgres": "postgres", "redis-server": "redis", "wrk": "loader"}
PARTS = ("workers", "postgres", "redis", "loader", "other")


def machine_busy_seconds() -> float:
    """CPU time every core has spent not idle since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    # user nice system idle iowait irq softirq: steal is time the hypervisor
    # gave to others, and guest time is already counted in user time.
    return (sum(fields[:7]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(workers: list[int], loader: int | None = None) -> dict[int, tuple[str, float]]:
    """Each process of a named part (the service's workers, PostgreSQL, Redis,
    the load generator: wrk, or the Python loader's pid) with the CPU seconds
    it has used so far."""
    found: dict[int, tuple[str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        if pid in workers:
            part: str | None = "workers"
        elif pid == loader:
            part = "loader"
        else:
            try:
                text = stat.read_text()
            except OSError:  # gone since the glob
                continue
            part = _PART_OF_COMMAND.get(text[text.index("(") + 1 : text.rindex(")")])
        if part is not None:
            found[pid] = (part, cpu_seconds(pid))
    return found


def cpu_spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each part spent between two `cpu_by_process` readings,
    process by process (one born in between counts from zero; one gone by
    the end is not in `after`, and its share lands in "other")."""
    spent = dict.fromkeys(PARTS[:-1], 0.0)
    for pid, (part, used) in after.items():
        spent[part] += max(used - before.get(pid, (part, 0.0))[1], 0.0)
    return spent


class WorkerSampler:
    """While a load runs: each gunicorn worker's peak resident memory, sampled
    from /proc every `interval` seconds, the CPU time the workers spent, and
    where the machine's CPU went (`cpu_by_part`: workers, PostgreSQL, Redis,
    the loader and the rest; Linux only)."""

    def __init__(self, master: int, interval: float = 0.1, loader: int | None = None) -> None:
        self._master = master
        self._interval = interval
        self._loader = loader
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_kib: dict[int, int] = {}
        self._cpu_at_start: dict[int, float] = {}
        self._processes_at_start: dict[int, tuple[str, float]] = {}
        self._machine_at_start = 0.0
        self.cpu_used = 0.0
        self.cpu_by_part: dict[str, float] = {}

    def _sample(self) -> None:
        for pid in worker_pids(self._master):
            self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), rss_kib(pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> WorkerSampler:
        workers = worker_pids(self._master)
        self._cpu_at_start = {pid: cpu_seconds(pid) for pid in workers}
        self._processes_at_start = cpu_by_process(workers, self._loader)
        self._machine_at_start = machine_busy_seconds()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        workers = worker_pids(self._master)
        # A worker that was replaced during the run counts from zero.
        self.cpu_used = sum(cpu_seconds(pid) - self._cpu_at_start.get(pid, 0.0) for pid in workers)
        spent = cpu_spent(self._processes_at_start, cpu_by_process(workers, self._loader))
        spent["machine"] = machine_busy_seconds() - self._machine_at_start
        spent["workers"] = self.cpu_used
        spent["other"] = max(spent["machine"] - sum(spent[k] for k in PARTS[:-1]), 0.0)
        self.cpu_by_part = spent

    def peak_mib(self) -> float:
        """The largest worker's peak, in MiB."""
        return round(max(self.peak_kib.values(), default=0) / 1024, 1)
