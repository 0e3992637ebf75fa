"""What the identity verification tests share: the sandbox's test identities
as the API takes them, granting the purpose, and a fake provider on 127.0.0.1
that speaks the protocol verification/http_provider.py expects (signed
requests, signed answers) and misbehaves on demand: mismatches, slow answers,
500s, malformed JSON, bad answer signatures, an outage."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import bearer, register
from verification.signing import answer_signature, request_signature, same

# Sandbox test identities (verification/sandbox.py).
ZHANG = {"full_name": "张三", "document_type": "cn_resident_id_card"}
ZHANG_NUMBER = "11010519491231002X"
CHILD = {
    "full_name": "王小明",
    "document_type": "cn_resident_id_card",
    "document_number": "110105201803010047",
}
POLICY_VERSION = "2026-06"  # published by the app fixture

REQUEST_KEY = b"fake-provider-request-key-000000"
ANSWER_KEY = b"fake-provider-answer-key-0000000"
KEY_ID = "privid-test"
LIVENESS_PASS = "fake-liveness-ok"


def grant(client: Any, token: str, purpose: str = "identity_verification") -> None:
    """The separate consent, through the consent API."""
    answer = client.post(
        f"/api/v1/me/consent/{purpose}/grant",
        json={"policy_version": POLICY_VERSION},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.json


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@dataclass
class ProviderState:
    # (name, document type, number) the institution holds.
    identities: set[tuple[str, str, str]] = field(default_factory=set)
    # "ok", "slow", "500", "malformed", "bad-signature", "down"
    mode: str = "ok"
    # With mode "500": answer 500 this many times, then normally.
    failures_left: int = 0
    slow_seconds: float = 2.0
    # Every request that reached the server, as received (for idempotency checks).
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeProvider:
    def __init__(self) -> None:
        self.state = state = ProviderState()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                nonce = self.headers.get("X-Privid-Nonce", "")
                expected = request_signature(
                    REQUEST_KEY,
                    "POST",
                    self.path,
                    self.headers.get("X-Privid-Timestamp", ""),
                    nonce,
                    body,
                )
                with state.lock:
                    state.requests.append(
                        {
                            "idempotency_key": self.headers.get("Idempotency-Key"),
                            "key_id": self.headers.get("X-Privid-Key-Id"),
                            "signed": same(expected, self.headers.get("X-Privid-Signature")),
                        }
                    )
                    mode = state.mode
                    if mode == "500" and state.failures_left > 0:
                        state.failures_left -= 1
                    elif mode == "500":
                        mode = "ok"
                if not same(expected, self.headers.get("X-Privid-Signature")):
                    self._reply(401, b'{"error": "bad signature"}', nonce)
                    return
                if mode in ("500", "down"):
                    self._reply(500, b'{"error": "internal"}', nonce)
                    return
                if mode == "slow":
                    time.sleep(state.slow_seconds)
                if mode == "malformed":
                    self._reply(200, b'{"match": tru', nonce)
                    return
                data = json.loads(body)
                identity = (data["name"], data["document_type"], data["document_number"])
                token = data.get("liveness_token")
                answer = {
                    "match": identity in state.identities,
                    "liveness": None if token is None else token == LIVENESS_PASS,
                    "reference": f"fake-{len(state.requests)}",
                    "checked_at": datetime.now(UTC).isoformat(),
                }
                self._reply(200, json.dumps(answer).encode(), nonce, forged=mode == "bad-signature")

            def _reply(self, status: int, payload: bytes, nonce: str, forged: bool = False) -> None:
                stamp = str(int(time.time()))
                key = b"someone-else-key" if forged else ANSWER_KEY
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Provider-Timestamp", stamp)
                self.send_header(
                    "X-Provider-Signature", answer_signature(key, status, stamp, nonce, payload)
                )
                self.end_headers()
                # A slow answer the client stopped waiting for goes nowhere.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        with self.state.lock:
            self.state.identities.clear()
            self.state.requests.clear()
            self.state.mode, self.state.failures_left = "ok", 0

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def verified_browser(client: Any, mailbox: Any, sms: Any) -> str:
    """A cookie session in ``client`` (for the authorisation pages) and a
    bearer token of the same account (for the API), verified at L1."""
    person, _ = register(client, mailbox, sms, token_delivery="cookie")
    answer = client.post(
        "/api/v1/login/password",
        json={"identifier": person.email, "password": person.password, "token_delivery": "bearer"},
    )
    token = answer.json["token"]
    grant(client, token)
    verified = client.post(
        "/api/v1/me/identity-verification",
        json={**ZHANG, "document_number": ZHANG_NUMBER},
        headers=bearer(token),
    )
    assert verified.status_code == 201, verified.json
    return str(token)
