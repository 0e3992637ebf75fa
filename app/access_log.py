"""Request logs without client addresses, query strings or the ids in paths,
for both servers that run the app: werkzeug (``privid serve``) and gunicorn
(production).

The service keeps a client's address only truncated and only with the
security purpose; a log line holding the full address would undo that. A
path can hold a registration flow, a session or a passkey id: the log names
the route it matched (``/signup/<id:flow_id>``), which the app leaves in the
WSGI environ under ``ROUTE_KEY``; a request that matched no route is logged
as ``<no route>``."""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger
from werkzeug.serving import WSGIRequestHandler

# gunicorn names the peer of a request it could not parse: "... from ip=1.2.3.4: why".
_GUNICORN_PEER = re.compile(r"\bip=[0-9A-Fa-f:.%\w]+?(?=: |$)")
WITHHELD = "ip=<withheld>"
# Lower case: gunicorn's access-log atoms name environ keys in lower case.
ROUTE_KEY = "privid.route"
NO_ROUTE = "<no route>"


def record_route(environ: dict[str, Any], rule: str | None) -> None:
    """Called by the app for every request it routes (app/http/gate.py)."""
    environ[ROUTE_KEY] = rule or NO_ROUTE


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
        # The route, never the path (ids) or its query; a malformed request line
        # is not echoed.
        route = environ.get(ROUTE_KEY, NO_ROUTE)
        line = f"{command} {route}" if command else "<malformed request>"
        self.log("info", '"%s" %s %s', line, code, size)

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
    """gunicorn's logger; its error log withholds the peer of a bad request.
    The access log format (config/gunicorn.conf.py) has no address either."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_WithholdPeer())
