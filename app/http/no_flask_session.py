"""Flask's own session (a signed cookie) is switched off: the service keeps
its browser state in its own cookies (app/http/cookies.py) backed by rows it
can revoke. Opening Flask's session anyway costs every request a signing
serializer and a cookie parse for nothing; with this interface ``flask.session``
is a NullSession, which refuses any write, so nobody starts keeping state in
an irrevocable cookie by accident."""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SessionInterface, SessionMixin


class NoFlaskSession(SessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # None: Flask puts a NullSession in its place.
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None
