"""Load from threads against a running server, every answer kept with the
moments it was asked and answered, so a fault test can say what was answered
while a server was down and what after it came back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

REQUEST_TIMEOUT = 10
# One step of a flow: sends one request and returns its answer (a flow with
# several steps keeps its own state between calls).
Step = Callable[[], requests.Response]


@dataclass(frozen=True)
class Answer:
    kind: str
    started: float
    ended: float
    status: int | None  # None: no answer (connection refused, reset or timed out)
    media_type: str = ""
    body: Any = None
    retry_after: str | None = None

    def is_problem(self, status: int, slug: str) -> bool:
        """An RFC 9457 document of this status and type."""
        return (
            self.status == status
            and self.media_type == "application/problem+json"
            and isinstance(self.body, dict)
            and self.body.get("type") == f"https://privid.dev/problems/{slug}"
            and self.body.get("status") == status
        )


def answer_of(kind: str, started: float, response: requests.Response) -> Answer:
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    try:
        body = response.json() if "json" in media_type else None
    except ValueError:
        body = None
    return Answer(
        kind, started, time.monotonic(), response.status_code, media_type, body,
        response.headers.get("Retry-After"),
    )  # fmt: skip


class Load:
    """Runs each step in a loop on a thread of its own until ``stop``."""

    def __init__(self, steps: dict[str, Step]) -> None:
        self._steps = steps
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, args=(kind, step), name=f"load-{kind}", daemon=True)
            for kind, step in steps.items()
        ]

    def _run(self, kind: str, step: Step) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = answer_of(kind, started, step())
            except requests.RequestException:
                answer = Answer(kind, started, time.monotonic(), None)
            except Exception as error:  # a broken step fails the test, not the thread silently
                with self._lock:
                    self.errors.append(f"{kind}: {type(error).__name__}: {error}")
                return
            with self._lock:
                self.answers.append(answer)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)
        assert not any(t.is_alive() for t in self._threads), "a load thread did not stop"

    def between(self, start: float, end: float, kind: str | None = None) -> list[Answer]:
        """Answers to requests asked and answered within [start, end]."""
        with self._lock:
            return [
                a
                for a in self.answers
                if start <= a.started and a.ended <= end and (kind is None or a.kind == kind)
            ]

    def broken(self) -> list[Answer]:
        """Answers no fault excuses: none at all, or a 5xx other than 503."""
        with self._lock:
            return [
                a for a in self.answers if a.status is None or (a.status >= 500 and a.status != 503)
            ]

    def wait_for(self, kind: str, count: int, since: float, timeout: float = 10.0) -> None:
        """Until ``count`` answers of ``kind`` asked after ``since`` have come."""
        deadline = time.monotonic() + timeout
        while len(self.between(since, time.monotonic(), kind)) < count:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"fewer than {count} {kind} answers"
            time.sleep(0.02)
