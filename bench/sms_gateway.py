"""A tiny SMS gateway on loopback for the SMS sign-in scenario: it takes
messages as app.adapters.sms_http sends them (bearer-authenticated JSON POST of
{"to", "text"}, answered by {"id"}) and hands each number's newest code to whoever
asks for it with GET /codes?to=<number> (the load generator, reading its
phone as a user would), waiting up to a few seconds for it to arrive."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

CODE = re.compile(r"\b(\d{6})\b")
# How long GET /codes waits for a code before answering 404.
WAIT_SECONDS = 10.0


class SmsGateway:
    def __init__(self, token: str) -> None:
        self.token = token
        self.received = 0
        self._codes: defaultdict[str, deque[str]] = defaultdict(deque)
        self._arrived = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {gateway.token}":
                    self._reply(401, {"error": "unauthorized"})
                    return
                try:
                    data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    to, text = str(data["to"]), str(data["text"])
                except (ValueError, KeyError, TypeError):
                    self._reply(400, {"error": "bad request"})
                    return
                found = CODE.search(text)
                with gateway._arrived:
                    gateway.received += 1
                    if found:
                        gateway._codes[to].append(found.group(1))
                        gateway._arrived.notify_all()
                self._reply(200, {"id": f"msg-{gateway.received}"})

            def do_GET(self) -> None:
                to = parse_qs(urlparse(self.path).query).get("to", [""])[0]
                code = gateway.take(to, WAIT_SECONDS)
                if code is None:
                    self._reply(404, {"error": "no code"})
                else:
                    self._reply(200, {"code": code})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def take(self, to: str, wait: float) -> str | None:
        """The newest code sent to `to` that nobody took yet, waiting up to
        `wait` seconds for one; older ones are dropped (a load thread that
        gave up on a code has moved on to a new flow)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: bool(self._codes[to]), timeout=wait):
                return None
            newest = self._codes[to].pop()
            self._codes[to].clear()
            return newest

    def __enter__(self) -> SmsGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
