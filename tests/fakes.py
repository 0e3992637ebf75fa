"""Real network peers on 127.0.0.1 for the tests: an SMTP server and an SMS gateway.

Messages reach them only through the outbox worker. While a test's app is up,
its fixture sets ``deliver`` on both: every look at the mailbox or the SMS
gateway first runs one worker pass, so a test sees what its requests queued
(and an assertion that nothing arrived is checked after delivery, not before).
A test that wants to run the worker itself sets ``deliver`` to None."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

CODE_RE = re.compile(r"\b(\d{6})\b")
ANGLE_ADDR_RE = re.compile(r"<([^>]*)>")
Deliver = Callable[[], object]
WAIT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(predicate: Any, what: str, timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Mailbox:
    """Messages an aiosmtpd server on loopback received."""

    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    deliver: Deliver | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        if self.deliver is not None:
            self.deliver()
        return self.received(address)

    def received(self, address: str) -> list[Message]:
        """What the server holds for ``address`` now, without running the worker."""
        with self.lock:
            return [m for m in self.messages if address in m["X-Envelope-To"]]

    def wait_for(self, address: str, count: int = 1) -> Message:
        return _wait_for(lambda: (self.to(address)[count - 1 :] or [None])[0], f"mail to {address}")

    def last_code(self, address: str, count: int = 1) -> str:
        body = self.wait_for(address, count).get_payload(decode=True).decode()
        match = CODE_RE.search(body)
        assert match, f"no code in {body!r}"
        return match.group(1)

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


class LiteralRecipientSmtp(SMTP):
    """Keeps each RCPT TO address exactly as the client sent it. aiosmtpd parses
    it with Python's header parser, which decodes RFC 2047 encoded words; a real
    mail server does not, so the tests must see what was really asked for."""

    async def smtp_RCPT(self, arg: str | None) -> None:
        accepted_before = len(self.envelope.rcpt_tos) if self.envelope else 0
        await super().smtp_RCPT(arg)
        literal = ANGLE_ADDR_RE.search(arg or "")
        if self.envelope and literal and len(self.envelope.rcpt_tos) > accepted_before:
            self.envelope.rcpt_tos[-1] = literal.group(1)


class LiteralRecipientController(Controller):
    def factory(self) -> SMTP:
        return LiteralRecipientSmtp(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """Can be stopped and started again, on the same port with the same mailbox
    (a mail server that was down and came back)."""

    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self._controller: LiteralRecipientController | None = None

    def start(self) -> SmtpServer:
        # A stopped controller cannot start again (its event loop is closed).
        self._controller = LiteralRecipientController(
            self.mailbox, hostname="127.0.0.1", port=self.port
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class SmsOutbox:
    token: str
    messages: list[dict[str, str]] = field(default_factory=list)
    # Guards messages; notified whenever one arrives.
    lock: threading.Condition = field(default_factory=threading.Condition)
    fail_next: int = 0
    deliver: Deliver | None = None
    # Per number, how many of its messages a reader has taken (``take_code``).
    taken: dict[str, int] = field(default_factory=dict)

    def to(self, number: str) -> list[dict[str, str]]:
        if self.deliver is not None:
            self.deliver()
        return self.received(number)

    def received(self, number: str) -> list[dict[str, str]]:
        """What the gateway holds for ``number`` now, without running the worker."""
        with self.lock:
            return [m for m in self.messages if m["to"] == number]

    def wait_for(self, number: str, count: int = 1) -> dict[str, str]:
        return _wait_for(lambda: (self.to(number)[count - 1 :] or [None])[0], f"SMS to {number}")

    def last_code(self, number: str, count: int = 1) -> str:
        text = self.wait_for(number, count)["text"]
        match = CODE_RE.search(text)
        assert match, f"no code in {text!r}"
        return match.group(1)

    def take_code(self, number: str, wait: float) -> str | None:
        """The code in the newest message to ``number`` that no reader took yet,
        waiting up to ``wait`` seconds for one; older untaken ones are passed
        over (a reader that gave up on a code has moved on to a new one)."""

        def untaken() -> list[dict[str, str]]:
            mine = [m for m in self.messages if m["to"] == number]
            return mine[self.taken.get(number, 0) :]

        with self.lock:
            if not self.lock.wait_for(lambda: bool(untaken()), timeout=wait):
                return None
            newest = untaken()[-1]
            self.taken[number] = len([m for m in self.messages if m["to"] == number])
        match = CODE_RE.search(newest["text"])
        return match.group(1) if match else None

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.taken.clear()


# How long GET /codes waits for a code before answering 404.
CODE_WAIT_SECONDS = 10.0


class SmsGateway:
    """Speaks the gateway protocol app.adapters.sms_http expects: bearer-authenticated
    POST of {"to", "text"}, answered by {"id"}. A reader in another process (the
    benchmark's load generator, reading its phone as a user would) gets each
    number's newest code with GET /codes?to=<number>."""

    def __init__(self, token: str = "test-gateway-token") -> None:
        self.outbox = SmsOutbox(token)
        outbox = self.outbox

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {outbox.token}":
                    self._reply(401, {"error": "unauthorized"})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    data = json.loads(self.rfile.read(length))
                    to, text = data["to"], data["text"]
                except (ValueError, KeyError, TypeError):
                    self._reply(400, {"error": "bad request"})
                    return
                if not (isinstance(to, str) and to.startswith("+")):
                    self._reply(400, {"error": "to must be E.164"})
                    return
                with outbox.lock:
                    if outbox.fail_next:
                        outbox.fail_next -= 1
                        self._reply(503, {"error": "unavailable"})
                        return
                    outbox.messages.append({"to": to, "text": text})
                    message_id = len(outbox.messages)
                    outbox.lock.notify_all()
                self._reply(200, {"id": f"msg-{message_id}"})

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                if urlparse(self.path).path != "/codes" or not query.get("to"):
                    self._reply(404, {"error": "not found"})
                    return
                code = outbox.take_code(query["to"][0], CODE_WAIT_SECONDS)
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

    @property
    def url(self) -> str:
        return f"{self.base}/messages"

    def start(self) -> SmsGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SmsGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HangingSmtpServer:
    """Accepts connections and never answers: a send to it blocks in the greeting."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)
            self.connected.set()

    def start(self) -> HangingSmtpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()
