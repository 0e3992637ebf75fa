"""Request logs without client addresses, query strings or the ids in paths,
for both servers that run the app: werkzeug (``privid serve``) and gunicorn
(production).

The service keeps a client's address only truncated and only with the
security purpose; a log line holding the full address would undo that. A
path can hold a registration flow, a session or a passkey id: the log names
the route it matched (``/signup/<id:flow_id>``), which the app leaves in the
WSGI environ under ``ROUTE_KEY``; a request that matched no route is logged
as ``<no route>``.

Each access line is one record (JSON by default, app/telemetry/logs.py) with
the fields method, route, status, bytes, duration_ms and request_id; its
message reads ``METHOD route status``."""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger
from werkzeug.serving import WSGIRequestHandler

from app.telemetry import request_id
from app.telemetry.logs import dress

# gunicorn names the peer of a request it could not parse: "... from ip=1.2.3.4: why".
_GUNICORN_PEER = re.compile(r"\bip=[0-9A-Fa-f:.%\w]+?(?=: |$)")
WITHHELD = "ip=<withheld>"
# Lower case: gunicorn's access-log atoms name environ keys in lower case.
ROUTE_KEY = "privid.route"
NO_ROUTE = "<no route>"


def record_route(environ: dict[str, Any], rule: str | None) -> None:
    """Called by the app for every request it routes (app/http/gate.py)."""
    environ[ROUTE_KEY] = rule or NO_ROUTE


def log_access(
    logger: logging.Logger,
    environ: dict[str, Any],
    status: int | str,
    size: int | str | None,
    seconds: float | None,
) -> None:
    """One access line; both servers write theirs here."""
    method = environ.get("REQUEST_METHOD", "-")
    route = environ.get(ROUTE_KEY, NO_ROUTE)
    logger.info(
        "%s %s %s",
        method,
        route,
        status,
        extra={
            "method": method,
            "route": route,
            "status": status,
            "bytes": size,
            "duration_ms": None if seconds is None else round(seconds * 1000, 2),
            "pid": os.getpid(),
            # The request's context has ended by now; the environ keeps its id.
            "request_id": environ.get(request_id.ENVIRON_KEY),
        },
    )


class AddresslessRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, logging method, path and status only."""

    def log(self, type: str, message: str, *args: Any) -> None:
        # werkzeug prefixes every line with the client address; leave it out.
        logging.getLogger("werkzeug").log(
            logging.ERROR if type == "error" else logging.INFO, message, *args
        )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        command = getattr(self, "command", None)
        environ = getattr(self, "environ", None) or {}
        if not command:  # a malformed request line is not echoed
            self.log("info", "<malformed request> %s", code)
            return
        # The route, never the path (ids) or its query.
        log_access(logging.getLogger("werkzeug"), environ, code, size, None)

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("code ") and args:
            # "code 400, message Bad request syntax ('<the request line>')": the
            # quoted line is client input; the status says enough.
            self.log("error", "request refused: code %s", args[0])
            return
        self.log("error", format, *args)


class _WithholdPeer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ip=" in message:
            record.msg, record.args = _GUNICORN_PEER.sub(WITHHELD, message), ()
        return True


class AddresslessGunicornLogger(GunicornLogger):
    """gunicorn's logger; its error log withholds the peer of a bad request,
    its access log writes log_access's record (no address, no path), and both,
    like the app's loggers in every worker, write PRIVID_LOG_FORMAT lines that
    are redacted and carry request ids."""

    def setup(self, cfg: Any) -> None:
        from app.settings import Settings
        from app.telemetry.logs import configure_logging

        super().setup(cfg)
        self.error_log.addFilter(_WithholdPeer())
        settings = Settings()
        for handler in [*self.error_log.handlers, *self.access_log.handlers]:
            dress(handler, settings.log_format)
        # The app's own loggers (and libraries') propagate to the root.
        configure_logging(settings.log_format, settings.log_level)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.cfg.accesslog:
            return
        status = str(resp.status).split(None, 1)[0]
        seconds = request_time.total_seconds()
        log_access(self.access_log, environ, int(status) if status.isdigit() else status,
                   getattr(resp, "sent", None), seconds)  # fmt: skip
