"""One database transaction per request, committed because the service calls
succeeded, never because of the status code.

A failed service call (a ``ServiceError`` reaching an error handler, or one a
page catches with ``attempt`` to re-render its form) marks the request failed:
everything it flushed is rolled back, and with it every message it queued in
the outbox. An error that says the attempt must count (``keep_changes``: a
wrong password, a spent code) is committed all the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Response, g

from app.errors import ServiceError
from app.services.container import Services

T = TypeVar("T")


def record_failure(*, keep_changes: bool = False) -> None:
    if not keep_changes:
        g.privid_failed = True


def attempt(call: Callable[[], T]) -> T | ServiceError:
    """Run one service call for a view that answers a failure itself (a form
    shown again with its error): the failure is returned, and recorded."""
    try:
        return call()
    except ServiceError as error:
        record_failure(keep_changes=error.keep_changes)
        return error


def install_unit_of_work(app: Flask) -> None:
    @app.after_request
    def _finish(response: Response) -> Response:
        svc: Services | None = g.pop("privid_services", None)
        if svc is None:
            return response
        try:
            if g.get("privid_failed"):
                svc.db.rollback()
            else:
                svc.db.commit()
        finally:
            svc.db.close()
        return response

    @app.teardown_request
    def _cleanup(_exc: BaseException | None) -> None:
        svc: Services | None = g.pop("privid_services", None)
        if svc is not None:
            svc.db.rollback()
            svc.db.close()
