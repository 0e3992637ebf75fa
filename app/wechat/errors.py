"""WeChat's errcodes as problems a person (or an app) can act on. Every
failure of WeChat itself keeps nothing but the spent ``state``."""

from __future__ import annotations

from app.errors import ServiceError
from app.wechat.client import BUSY, WeChatRefused

CODE_INVALID = (40029, 40163)  # invalid code; code already used
REFRESH_INVALID = (40030, 42002)  # invalid refresh token; refresh token expired
CREDENTIALS = (40001, 40013, 40125)  # wrong secret / access token; invalid appid
TOKEN_EXPIRED = 42001


def refused_problem(refused: WeChatRefused) -> ServiceError:
    code = refused.errcode
    if code in CODE_INVALID:
        return ServiceError(
            "wechat-code-invalid",
            400,
            "The WeChat sign-in did not go through",
            "WeChat did not accept this sign-in (the code is wrong, expired or was "
            "already used). Start again.",
            keep_changes=True,
        )
    if code in REFRESH_INVALID or code == TOKEN_EXPIRED:
        return ServiceError(
            "wechat-authorisation-expired",
            401,
            "The WeChat authorisation has expired",
            "WeChat's authorisation has expired. Sign in with WeChat again.",
            keep_changes=True,
        )
    if code in CREDENTIALS:
        return ServiceError(
            "wechat-misconfigured",
            502,
            "WeChat sign-in is not available",
            "WeChat refused this service's credentials. Sign in another way; we are on it.",
            keep_changes=True,
        )
    if code == BUSY:
        return wechat_busy()
    return ServiceError(
        "wechat-failed",
        502,
        "WeChat sign-in failed",
        f"WeChat answered with error {code}. Start again, or sign in another way.",
        keep_changes=True,
    )


def wechat_busy() -> ServiceError:
    return ServiceError(
        "wechat-busy",
        503,
        "WeChat is busy",
        "WeChat is busy right now. Try again in a moment.",
        keep_changes=True,
        headers={"Retry-After": "5"},
    )


def wechat_unavailable() -> ServiceError:
    return ServiceError(
        "wechat-unavailable",
        503,
        "WeChat cannot be reached",
        "WeChat did not answer in time. Try again in a moment, or sign in another way.",
        keep_changes=True,
        headers={"Retry-After": "5"},
    )


def state_invalid() -> ServiceError:
    return ServiceError(
        "wechat-state-invalid",
        400,
        "This WeChat sign-in cannot be finished",
        "The sign-in did not start in this browser, has expired or was already "
        "finished. Start again from the sign-in page.",
    )


def pending_invalid() -> ServiceError:
    return ServiceError(
        "wechat-link-invalid",
        400,
        "This WeChat sign-in has expired",
        "The step after WeChat has expired or was already finished. Sign in with WeChat again.",
    )


def flow_disabled() -> ServiceError:
    return ServiceError(
        "wechat-disabled",
        404,
        "WeChat sign-in is not available",
        "This service does not offer this way of signing in with WeChat.",
    )
