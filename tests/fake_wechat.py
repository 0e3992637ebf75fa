"""A WeChat stand-in on 127.0.0.1, written from the protocol: the
authorisation pages (``/connect/qrconnect``, ``/connect/oauth2/authorize``:
the person "scans and approves" at once and is sent back with ``code`` and
``state``) and the /sns/ API (``oauth2/access_token``, ``userinfo``,
``oauth2/refresh_token``, ``auth``), errors as HTTP 200 with
``errcode``/``errmsg``. Codes work once. ``fail_next`` makes the next calls
of a path go wrong: WeChat busy (-1), any errcode, too slow, malformed JSON,
or an HTML error page."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

TOKEN_SECONDS = 7200


@dataclass
class Person:
    name: str
    unionid: str | None
    nickname: str


@dataclass
class Fault:
    mode: str  # "busy" | "errcode" | "slow" | "malformed" | "html"
    errcode: int = 0
    seconds: float = 0.0


@dataclass
class FakeWeChatState:
    # appid -> secret of every app the platform registered
    apps: dict[str, str] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    # Who approves on the next authorisation page; None: the person declines.
    approving: str | None = "alice"
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def openid(self, appid: str, person: str) -> str:
        # Per app, as WeChat's: the same person has another openid in each app.
        return "o" + hashlib.sha256(f"{appid}/{person}".encode()).hexdigest()[:27]

    def issue_code(self, appid: str, person: str, scope: str) -> str:
        """What an SDK or an authorisation page hands out after approval."""
        code = secrets.token_hex(16)
        with self.lock:
            self.codes[code] = {"appid": appid, "person": person, "scope": scope, "used": False}
        return code

    def fail_next(self, path: str, mode: str, *, errcode: int = 0, seconds: float = 0.0,
                  times: int = 1) -> None:  # fmt: skip
        with self.lock:
            self.faults.setdefault(path, []).extend(
                Fault(mode, errcode, seconds) for _ in range(times)
            )

    def calls_to(self, path: str) -> int:
        return sum(1 for called, _ in self.calls if called == path)

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.tokens.values():
                token["expires"] = 0.0


class FakeWeChat:
    def __init__(self) -> None:
        self.state = FakeWeChatState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with state.lock:
                    state.calls.append((parts.path, query))
                    queued = state.faults.get(parts.path)
                    fault = queued.pop(0) if queued else None
                if fault is not None and self._fault(fault):
                    return
                route = ROUTES.get(parts.path)
                if route is None:
                    self._raw(404, "text/html", b"<html><body>404 Not Found</body></html>")
                    return
                route(self, query)

            def _fault(self, fault: Fault) -> bool:
                """True when the fault is the whole answer."""
                if fault.mode == "slow":
                    time.sleep(fault.seconds)
                    return False  # then the normal answer, too late
                if fault.mode == "busy":
                    self.json({"errcode": -1, "errmsg": "system error"})
                elif fault.mode == "errcode":
                    self.json({"errcode": fault.errcode, "errmsg": "fault"})
                elif fault.mode == "malformed":
                    self._raw(200, "application/json", b'{"access_token": "abc", ')
                else:  # html
                    page = b"<html><head><title>502 Bad Gateway</title></head></html>"
                    self._raw(502, "text/html", page)
                return True

            def json(self, body: dict[str, Any]) -> None:
                # WeChat says text/plain even for JSON; clients must not care.
                self._raw(200, "text/plain", json.dumps(body).encode())

            def error(self, errcode: int, errmsg: str) -> None:
                self.json({"errcode": errcode, "errmsg": errmsg})

            def redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _raw(self, status: int, kind: str, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        def authorize(handler: Handler, query: dict[str, str], scopes: tuple[str, ...]) -> None:
            appid, redirect_uri = query.get("appid", ""), query.get("redirect_uri", "")
            if appid not in state.apps or query.get("scope") not in scopes:
                handler._raw(200, "text/html", "<html><body>参数错误</body></html>".encode())
                return
            back = {"state": query.get("state", "")}
            if state.approving is not None:
                back["code"] = state.issue_code(appid, state.approving, query["scope"])
            handler.redirect(f"{redirect_uri}?{urlencode(back)}")

        def qrconnect(handler: Handler, query: dict[str, str]) -> None:
            authorize(handler, query, ("snsapi_login",))

        def oauth2_authorize(handler: Handler, query: dict[str, str]) -> None:
            authorize(handler, query, ("snsapi_base", "snsapi_userinfo"))

        def grant(appid: str, person: str, scope: str) -> dict[str, Any]:
            access, refresh = secrets.token_hex(20), secrets.token_hex(20)
            openid = state.openid(appid, person)
            state.tokens[access] = {
                "openid": openid, "person": person, "scope": scope,
                "expires": time.time() + TOKEN_SECONDS,
            }  # fmt: skip
            state.refresh_tokens[refresh] = {"appid": appid, "person": person, "scope": scope}
            body = {
                "access_token": access, "expires_in": TOKEN_SECONDS, "refresh_token": refresh,
                "openid": openid, "scope": scope,
            }  # fmt: skip
            unionid = state.people[person].unionid
            if unionid is not None:
                body["unionid"] = unionid
            return body

        def access_token(handler: Handler, query: dict[str, str]) -> None:
            appid = query.get("appid", "")
            if appid not in state.apps:
                handler.error(40013, "invalid appid")
                return
            if query.get("secret") != state.apps[appid]:
                handler.error(40001, "invalid credential, access_token is invalid or not latest")
                return
            if query.get("grant_type") != "authorization_code":
                handler.error(40002, "invalid grant_type")
                return
            with state.lock:
                code = state.codes.get(query.get("code", ""))
                if code is None or code["appid"] != appid:
                    handler.error(40029, "invalid code")
                    return
                if code["used"]:
                    handler.error(40163, "code been used")
                    return
                code["used"] = True
                body = grant(appid, code["person"], code["scope"])
            handler.json(body)

        def refresh_token(handler: Handler, query: dict[str, str]) -> None:
            with state.lock:
                found = state.refresh_tokens.get(query.get("refresh_token", ""))
                if found is None or found["appid"] != query.get("appid"):
                    handler.error(40030, "invalid refresh_token")
                    return
                body = grant(found["appid"], found["person"], found["scope"])
            handler.json(body)

        def live_token(handler: Handler, query: dict[str, str]) -> dict[str, Any] | None:
            token = state.tokens.get(query.get("access_token", ""))
            if token is None or token["openid"] != query.get("openid"):
                handler.error(40001, "invalid credential")
                return None
            if token["expires"] < time.time():
                handler.error(42001, "access_token expired")
                return None
            return token

        def userinfo(handler: Handler, query: dict[str, str]) -> None:
            token = live_token(handler, query)
            if token is None:
                return
            if token["scope"] not in ("snsapi_userinfo", "snsapi_login"):
                handler.error(48001, "api unauthorized")
                return
            person = state.people[token["person"]]
            body = {"openid": token["openid"], "nickname": person.nickname, "sex": 0}
            if person.unionid is not None:
                body["unionid"] = person.unionid
            handler.json(body)

        def auth(handler: Handler, query: dict[str, str]) -> None:
            if live_token(handler, query) is not None:
                handler.error(0, "ok")

        ROUTES = {
            "/connect/qrconnect": qrconnect,
            "/connect/oauth2/authorize": oauth2_authorize,
            "/sns/oauth2/access_token": access_token,
            "/sns/oauth2/refresh_token": refresh_token,
            "/sns/userinfo": userinfo,
            "/sns/auth": auth,
        }

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeWeChat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
