"""Declaring an endpoint once: its body schema validates requests and documents
the endpoint in /openapi.json (pydantic emits JSON Schema 2020-12, the dialect
of OpenAPI 3.1, so the document and the validator cannot drift apart)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from app.errors import FieldError, ServiceError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: a value in this answer is what another operation takes
    (clients and the stateful fuzzer follow it from one call to the next)."""

    operation_id: str  # the target's "<blueprint.view>.<method>", as /openapi.json names it
    # The target's path parameter -> a runtime expression ("$response.body#/id").
    parameters: dict[str, str]
    description: str = ""


Links = dict[int, dict[str, Link]]  # per documented status, links by name


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    responses: dict[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    # A larger body than the service-wide limit (a policy text, for instance).
    max_body_bytes: int | None = None
    links: Links = field(default_factory=dict)


def operation(
    summary: str,
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    responses: dict[int, tuple[str, type[BaseModel] | None]] | None = None,
    max_body_bytes: int | None = None,
    links: Links | None = None,
) -> Callable[[F], F]:
    """Attach the endpoint's contract; with ``body``, the view gets ``body=``
    parsed. Who may call it is declared apart (app/http/access.py) and checked
    by the gate before this runs: 401/403 come before 400/422."""
    op = Operation(summary, tag, body, responses or {}, max_body_bytes, links or {})
    if not op.links.keys() <= op.responses.keys():
        # A link hangs on a documented answer; on any other it would vanish.
        raise ValueError(f"{summary}: links on undocumented statuses {set(op.links)}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if op.body is not None:
                kwargs["body"] = parse_body(op.body, op.max_body_bytes)
            return view(*args, **kwargs)

        wrapper.openapi_operation = op  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _bad_request(
    slug: str, title: str, detail: str, status: int = 400, pointer: str | None = None
) -> ServiceError:
    errors = [FieldError(pointer, detail)] if pointer is not None else []
    return ServiceError(slug, status, title, detail, errors=errors)


def _pointer_token(token: object) -> str:
    """One reference token of a JSON Pointer (RFC 6901): escape "~" and "/"."""
    return str(token).replace("~", "~0").replace("/", "~1")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_strings(value: Any, pointer: str = "#") -> None:
    """Refuse lone surrogates and NUL: they survive json.loads but not storage."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad_request(
                "bad-unicode", "Bad text", f"{pointer} contains a NUL character.", pointer=pointer
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_request(
                "bad-unicode", "Bad text", f"{pointer} is not valid Unicode text.", pointer=pointer
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, pointer)
            _check_strings(item, f"{pointer}/{_pointer_token(key)}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_strings(item, f"{pointer}/{i}")


def parse_body(model: type[BaseModel], max_bytes: int | None = None) -> BaseModel:
    if request.mimetype != "application/json":
        raise _bad_request(
            "unsupported-media-type",
            "Unsupported media type",
            "Send the request body as application/json.",
            415,
        )
    limit = max_bytes or current_app.extensions["privid.settings"].max_request_bytes
    request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    # MAX_CONTENT_LENGTH is one byte above the limit: a streamed (chunked) body is
    # cut there silently rather than refused, so a body that reaches it is too large.
    if len(raw) > limit:
        raise RequestEntityTooLarge()
    try:
        text = raw.decode("utf-8")
        data = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad_request(
            "malformed-json", "Malformed JSON", "The request body is not valid JSON."
        ) from None
    if not isinstance(data, dict):
        raise _bad_request("malformed-json", "Malformed JSON", "The body must be a JSON object.")
    try:
        _check_strings(data)
    except RecursionError:
        raise _bad_request(
            "malformed-json", "Malformed JSON", "The body is nested too deeply."
        ) from None
    try:
        # JSON mode: strict types as JSON has them (ISO 8601 strings are datetimes).
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = [
            FieldError("#/" + "/".join(_pointer_token(p) for p in err["loc"]), _message(err))
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ServiceError(
            "validation-error",
            422,
            "Your request has invalid fields",
            "; ".join(f"{e.pointer}: {e.detail}" for e in errors),
            errors=errors,
        ) from None


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "This field is not accepted here."
    if err["type"] == "missing":
        return "This field is required."
    return str(err["msg"])
