"""What a first step leaves for the moment its sign-in completes.

A write that only the person's full sign-in may make (linking a WeChat
account found by a password or a phone code) must wait for the second factor
when one is owed: the first step names it (a registered name and JSON-able
data), the second-factor ticket carries it, and ``LoginService.finish`` runs
it just before the sign-in completes. Capabilities register theirs at start-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.models import User
from app.services.context import RequestContext

# (name, data): the data travels in a signed ticket, so nothing secret in clear.
Then = tuple[str, Any]
AfterSignIn = Callable[[User, Any, RequestContext], None]
_registered: dict[str, AfterSignIn] = {}


def register_after_sign_in(name: str, step: AfterSignIn) -> None:
    _registered[name] = step


def run(then: Then | list[Any] | None, user: User, context: RequestContext) -> None:
    if then is None:
        return
    name, data = then
    _registered[str(name)](user, data, context)
