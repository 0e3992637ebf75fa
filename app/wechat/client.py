"""WeChat's OAuth 2.0 endpoints (the /sns/ API), over stdlib urllib.

WeChat answers errors as HTTP 200 with ``errcode`` and ``errmsg``; they come
out of here as ``WeChatRefused`` with the code, and every other failure
(timeout, connection, broken HTTP, HTML page, malformed JSON) as ``WeChatUnavailable``.
Retries are bounded and only on "system busy" (-1) and network failures, and
never for a code exchange: a code works once, so a retry after an answer that
was lost would burn it and hide the first outcome. The app secret travels in
the query string WeChat requires; no message or log line here carries a URL."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from app.json_object import json_object

BUSY = -1
# How long to wait before retry n (seconds): short, the person is waiting.
BACKOFF = (0.1, 0.3, 0.6, 1.0, 1.0)


class WeChatUnavailable(Exception):
    """No usable answer: network failure, timeout, or not WeChat's JSON."""


class WeChatRefused(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat errcode {errcode}")
        self.errcode, self.errmsg = errcode, errmsg


@dataclass(frozen=True)
class Grant:
    """What /sns/oauth2/access_token (or refresh_token) answered."""

    access_token: str
    refresh_token: str
    openid: str
    scope: str
    unionid: str | None
    expires_in: int

    def __repr__(self) -> str:  # tokens never reach a log line through repr
        return f"Grant(openid=…, scope={self.scope!r}, unionid={'set' if self.unionid else None})"


@dataclass(frozen=True)
class WeChatProfile:
    openid: str
    unionid: str | None
    nickname: str | None


class WeChatApi(Protocol):
    def exchange_code(self, appid: str, secret: str, code: str) -> Grant: ...
    def refresh(self, appid: str, refresh_token: str) -> Grant: ...
    def user_info(self, access_token: str, openid: str) -> WeChatProfile: ...
    def check_token(self, access_token: str, openid: str) -> bool: ...


class HttpWeChatApi:
    def __init__(self, base_url: str, *, timeout: float, retries: int) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError("the WeChat API URL must be http(s)")
        self._base, self._timeout, self._retries = base_url.rstrip("/"), timeout, retries

    def __repr__(self) -> str:
        return f"HttpWeChatApi({self._base!r})"

    def exchange_code(self, appid: str, secret: str, code: str) -> Grant:
        query = {
            "appid": appid,
            "secret": secret,
            "code": code,
            "grant_type": "authorization_code",
        }
        return _grant(self._get("/sns/oauth2/access_token", query, retry=False))

    def refresh(self, appid: str, refresh_token: str) -> Grant:
        query = {"appid": appid, "grant_type": "refresh_token", "refresh_token": refresh_token}
        return _grant(self._get("/sns/oauth2/refresh_token", query, retry=True))

    def user_info(self, access_token: str, openid: str) -> WeChatProfile:
        query = {"access_token": access_token, "openid": openid, "lang": "zh_CN"}
        answer = self._get("/sns/userinfo", query, retry=True)
        return WeChatProfile(
            openid=_text(answer, "openid"),
            unionid=_optional(answer, "unionid"),
            nickname=_optional(answer, "nickname"),
        )

    def check_token(self, access_token: str, openid: str) -> bool:
        """/sns/auth: errcode 0 for a live token; 42001 or 40001 otherwise."""
        try:
            self._get("/sns/auth", {"access_token": access_token, "openid": openid}, retry=True)
        except WeChatRefused as refused:
            if refused.errcode in (40001, 42001, 40003):
                return False
            raise
        return True

    def _get(self, path: str, query: Mapping[str, str], *, retry: bool) -> dict[str, Any]:
        attempts = 1 + (self._retries if retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                answer = self._once(path, query)
            except WeChatUnavailable:
                if last:
                    raise
            else:
                errcode = answer.get("errcode", 0)
                if errcode in (0, None):
                    return answer
                if errcode != BUSY or last:
                    raise WeChatRefused(_int(errcode), str(answer.get("errmsg", "")))
            time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            f"{self._base}{path}?{urlencode(query)}", headers={"Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read(64 * 1024)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            # The exception's text may hold the URL, and so the secret: only its type.
            raise WeChatUnavailable(type(exc).__name__) from None
        answer = json_object(body)
        if answer is None:
            raise WeChatUnavailable("not a JSON object")
        return answer


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _text(answer: Mapping[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value or len(value) > 128:
        raise WeChatUnavailable(f"no usable {key}")
    return value


def _optional(answer: Mapping[str, Any], key: str) -> str | None:
    value = answer.get(key)
    return value if isinstance(value, str) and value and len(value) <= 128 else None


def _grant(answer: Mapping[str, Any]) -> Grant:
    expires = answer.get("expires_in")
    return Grant(
        access_token=_text(answer, "access_token"),
        refresh_token=_text(answer, "refresh_token"),
        openid=_text(answer, "openid"),
        scope=str(answer.get("scope", "")),
        unionid=_optional(answer, "unionid"),
        expires_in=expires if isinstance(expires, int) else 0,
    )
