"""The outermost WSGI layer: gives each request its id (kept in the environ
for the access log, bound for the app's log lines, echoed in the answer) and
times it for the request histogram, labelled by the route rule the app
matched (app/access_log.py's ROUTE_KEY), never by the raw path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from app import metrics
from app.access_log import NO_ROUTE, ROUTE_KEY
from app.telemetry import request_id

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RequestTelemetry:
    def __init__(self, app: WsgiApp) -> None:
        self._app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        started = perf_counter()
        rid = request_id.accept(environ.get("HTTP_X_REQUEST_ID"))
        environ[request_id.ENVIRON_KEY] = rid
        status = 0

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = int(code[:3])
            headers.append((request_id.HEADER, rid))
            return start_response(code, headers, exc_info)

        with request_id.bound(rid):
            try:
                return self._app(environ, start)
            finally:
                metrics.request_finished(
                    environ.get(ROUTE_KEY, NO_ROUTE),
                    environ.get("REQUEST_METHOD", ""),
                    status,
                    perf_counter() - started,
                )
