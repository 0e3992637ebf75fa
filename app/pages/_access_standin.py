"""A stand-in for the access gate (app/http/gate.py, written concurrently).

Views import ``public`` from here only, so the gate is swapped in by changing
this one import; delete the module then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


def public() -> Callable[[F], F]:
    """Anyone may see the page (the gate's ``public()``); here it changes nothing."""

    def decorate(view: F) -> F:
        return view

    return decorate
