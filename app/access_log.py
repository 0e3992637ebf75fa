"""Request logs without client addresses or query strings, for both servers
that run the app: werkzeug (``privid serve``) and gunicorn (production).

The service keeps a client's address only truncated and only with the
security purpose; a log line holding the full address would undo that."""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger
from werkzeug.serving import WSGIRequestHandler

# gunicorn names the peer of a request it could not parse: "... from ip=1.2.3.4: why".
_GUNICORN_PEER = re.compile(r"\bip=[0-9A-Fa-f:.%\w]+?(?=: |$)")
WITHHELD = "ip=<withheld>"


class AddresslessRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, logging method, path and status only."""

    def log(self, type: str, message: str, *args: Any) -> None:
        # werkzeug prefixes every line with the client address; leave it out.
        logging.getLogger("werkzeug").log(
            logging.ERROR if type == "error" else logging.INFO, message, *args
        )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        command = getattr(self, "command", None)
        path = getattr(self, "path", None)
        # A query string can carry anything; a malformed request line is not echoed.
        line = f"{command} {path.split('?', 1)[0]}" if command and path else "<malformed request>"
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
