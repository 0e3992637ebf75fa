"""The service's browser cookies: host-only (``__Host-`` names), Secure,
HttpOnly, SameSite=Lax, path /."""

from __future__ import annotations

from werkzeug.wrappers import Response

from app.http.scope import runtime
from app.services.sessions import IssuedSession, Transport


def _set(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Lax"
    )


def _clear(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="Lax")


def attach_session_cookie(response: Response, issued: IssuedSession) -> None:
    if issued.session.transport != Transport.COOKIE:
        return
    settings = runtime().settings
    _set(
        response,
        settings.session_cookie_name,
        issued.token,
        settings.session_absolute_timeout_seconds,
    )


def attach_device_cookie(response: Response, cookie: str | None) -> None:
    """A browser's device cookie (only ever issued with the security purpose)."""
    if cookie is None:
        return
    settings = runtime().settings
    _set(response, settings.device_cookie_name, cookie, settings.device_cookie_max_age_seconds)


def clear_device_cookie(response: Response) -> None:
    _clear(response, runtime().settings.device_cookie_name)


def clear_session_cookie(response: Response) -> None:
    _clear(response, runtime().settings.session_cookie_name)


def set_browser_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    """Any other cookie of the service's own (pre-session CSRF, language)."""
    _set(response, name, value, max_age)
