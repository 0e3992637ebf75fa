"""Servers a fault test starts, stops and restarts itself, on 127.0.0.1 and
free ports: a PostgreSQL cluster in a temporary folder, a redis-server,
gunicorn. Never the machine's own PostgreSQL or Redis. Every start has a
deadline, and each class's ``close`` stops what it started (call it in a
finally, or use the context managers)."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.fakes import free_port
from tests.helpers import stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30


def _postgres_bin() -> Path:
    """The folder of initdb and pg_ctl: on PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0]),
    )
    if not found:
        raise AssertionError("no PostgreSQL server binaries (initdb) on this machine")
    return Path(found[-1]).parent


class PostgresCluster:
    """A throw-away cluster: initdb into a temporary folder, its socket in the
    same folder, TCP on 127.0.0.1 only, no fsync (nothing here must survive a
    power cut). initdb refuses to run as root, so as root every server command
    runs as the ``postgres`` system user, which then owns the folder."""

    def __init__(self) -> None:
        self.port = free_port()
        self._bin = _postgres_bin()
        self._folder = Path(tempfile.mkdtemp(prefix="privid-faults-pg-"))
        self._data = self._folder / "data"
        self._log = self._folder / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise AssertionError("as root, a cluster needs the postgres system user") from None
            shutil.chown(self._folder, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=START_SECONDS, check=False
        )
        assert done.returncode == 0, f"{tool} failed:\n{done.stdout}\n{done.stderr}\n{self.log()}"

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self._folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self._data), "-l", str(self._log), "-o", self._options(),
            "-w", "-t", str(START_SECONDS), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (their transactions roll back) and
        stops cleanly; ``immediate`` is a crash (recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self._data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self._data / "postmaster.pid").exists()

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


class RedisServer:
    """redis-server without persistence on a port of its own, so it can be
    stopped and started again at the same address."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                assert self._process.poll() is None, "redis-server exited"
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Gunicorn:
    """The service under gunicorn as production runs it (config/gunicorn.conf.py,
    sync workers), with the environment it is given."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn",
                    "-c", str(ROOT / "config" / "gunicorn.conf.py"),
                    "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
                ],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait_ready(self) -> None:
        wait_until_ready(self.base, self.process, self.log_path, "gunicorn")

    def worker_pids(self) -> set[int]:
        """The master's children now (its workers)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def wait_for_workers(self, count: int, not_among: set[int] | None = None) -> set[int]:
        """Waits until the master has ``count`` workers not in ``not_among``."""
        deadline = time.monotonic() + START_SECONDS
        while True:
            pids = self.worker_pids() - (not_among or set())
            if len(pids) >= count:
                return pids
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no {count} new workers:\n{self.log()}"
            time.sleep(0.05)

    def served_by(self) -> set[int]:
        """Workers that answered a request so far (the access log names them)."""
        # The access log's JSON lines carry the worker's pid (app/access_log.py).
        return {int(pid) for pid in re.findall(r'"pid": (\d+)', self.log())}

    def wait_until_serving(self, pids: set[int]) -> None:
        """Until one of ``pids`` has answered a request (a new worker is up)."""
        deadline = time.monotonic() + START_SECONDS
        while not pids & self.served_by():
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"none of {pids} answered:\n{self.log()}"
            time.sleep(0.05)

    def computing_worker(self, within: float) -> int | None:
        """A worker that has served requests and is on a CPU right now (its
        /proc state is R: mid-request, hashing a password as often as not),
        polled for up to ``within`` seconds; None if none was."""
        deadline = time.monotonic() + within
        # Read once: scanning the growing log every poll would slow the load.
        served = self.served_by()
        while time.monotonic() < deadline:
            for pid in sorted(self.worker_pids() & served):
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:  # gone since
                    continue
                if stat.rsplit(")", 1)[1].split()[0] == "R":
                    return pid
            time.sleep(0.002)
        return None

    def kill_worker(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        stop_process(self.process)


@contextmanager
def gunicorn(env: dict[str, str], log_path: Path, workers: int = 2) -> Iterator[Gunicorn]:
    server = Gunicorn(env, log_path, workers)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
